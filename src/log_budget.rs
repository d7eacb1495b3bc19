//! A log budget: at most so many info lines per window for events anyone
//! can trigger (SPA packets that do not authenticate, wrong knocks that
//! lock a source out, grants from spoofed sequences); the rest go to
//! debug, and the next admitted line, or a summary once the window has
//! ended, reports how many were demoted. Why: one info line per spoofed
//! packet let a flood write 189 MB of log in 30 s (issue 9). Pure: `now`
//! is passed in.

use std::time::{Duration, Instant};

/// Default window of the budget.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Default info lines per window.
pub const DEFAULT_LINES: u32 = 20;

/// At what level to log the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within budget: log at info; first report `demoted_before` (events
    /// demoted to debug since the last info line) if non-zero.
    Info {
        /// Events demoted to debug before this one.
        demoted_before: u64,
    },
    /// Over budget: log at debug.
    Debug,
}

/// A fixed-window budget of info lines.
#[derive(Debug, Clone)]
pub struct LogBudget {
    window: Duration,
    lines: u32,
    started: Option<Instant>,
    used: u32,
    demoted: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new(DEFAULT_WINDOW, DEFAULT_LINES)
    }
}

impl LogBudget {
    /// `lines` info lines per `window`.
    pub fn new(window: Duration, lines: u32) -> Self {
        LogBudget {
            window,
            lines,
            started: None,
            used: 0,
            demoted: 0,
        }
    }

    /// Decides the level of an event at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let expired = self
            .started
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.started = Some(now);
            self.used = 0;
        }
        if self.used >= self.lines {
            self.demoted += 1;
            return Admit::Debug;
        }
        self.used += 1;
        Admit::Info {
            demoted_before: std::mem::take(&mut self.demoted),
        }
    }

    /// When a summary of the demoted events is due: the end of the window
    /// they were demoted in (None: nothing demoted).
    pub fn summary_at(&self) -> Option<Instant> {
        match (self.demoted, self.started) {
            (0, _) | (_, None) => None,
            (_, Some(start)) => Some(start + self.window),
        }
    }

    /// The number of events demoted in a window that has ended by `now`,
    /// for a summary line; taking it starts a fresh window. None while the
    /// window runs or when nothing was demoted.
    pub fn summary_due(&mut self, now: Instant) -> Option<u64> {
        let due = self.summary_at()?;
        if now < due {
            return None;
        }
        self.started = None;
        self.used = 0;
        Some(std::mem::take(&mut self.demoted))
    }

    /// The number of events demoted since the last report, window or not
    /// (for a last summary on the way out).
    pub fn take_demoted(&mut self) -> u64 {
        std::mem::take(&mut self.demoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_events_are_demoted_and_counted_in_the_next_window() {
        let t0 = Instant::now();
        let mut budget = LogBudget::new(Duration::from_secs(10), 2);
        let info0 = Admit::Info { demoted_before: 0 };
        assert_eq!(budget.admit(t0), info0);
        assert_eq!(budget.admit(t0), info0);
        for _ in 0..5 {
            assert_eq!(budget.admit(t0 + Duration::from_secs(9)), Admit::Debug);
        }
        assert_eq!(
            budget.admit(t0 + Duration::from_secs(10)),
            Admit::Info { demoted_before: 5 }
        );
        assert_eq!(budget.admit(t0 + Duration::from_secs(11)), info0);
        assert_eq!(budget.admit(t0 + Duration::from_secs(12)), Admit::Debug);
    }

    #[test]
    fn a_summary_is_due_at_the_end_of_the_window_that_demoted() {
        let t0 = Instant::now();
        let mut budget = LogBudget::new(Duration::from_secs(10), 1);
        assert_eq!(budget.summary_at(), None);
        assert_eq!(budget.admit(t0), Admit::Info { demoted_before: 0 });
        assert_eq!(budget.summary_at(), None, "nothing demoted yet");
        for _ in 0..3 {
            assert_eq!(budget.admit(t0 + Duration::from_secs(1)), Admit::Debug);
        }
        let end = t0 + Duration::from_secs(10);
        assert_eq!(budget.summary_at(), Some(end));
        assert_eq!(budget.summary_due(end - Duration::from_millis(1)), None);
        assert_eq!(budget.summary_due(end), Some(3));
        assert_eq!(budget.summary_due(end), None, "reported once");
        assert_eq!(budget.summary_at(), None);
        // A fresh window: the next event is at info with nothing before it.
        assert_eq!(
            budget.admit(end + Duration::from_secs(1)),
            Admit::Info { demoted_before: 0 }
        );
    }

    #[test]
    fn take_demoted_reports_the_count_once_mid_window() {
        let t0 = Instant::now();
        let mut budget = LogBudget::new(Duration::from_secs(10), 0);
        budget.admit(t0);
        budget.admit(t0);
        assert_eq!(budget.take_demoted(), 2);
        assert_eq!(budget.take_demoted(), 0);
        assert_eq!(budget.summary_at(), None);
    }

    #[test]
    fn a_zero_budget_demotes_everything() {
        let mut budget = LogBudget::new(Duration::from_secs(1), 0);
        assert_eq!(budget.admit(Instant::now()), Admit::Debug);
    }
}
