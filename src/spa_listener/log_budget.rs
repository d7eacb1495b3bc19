//! A log budget: at most so many info lines per window for events anyone
//! can trigger (SPA packets that do not authenticate); the rest go to debug,
//! and the next admitted line reports how many were demoted. Pure: `now` is
//! passed in.

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
    fn a_zero_budget_demotes_everything() {
        let mut budget = LogBudget::new(Duration::from_secs(1), 0);
        assert_eq!(budget.admit(Instant::now()), Admit::Debug);
    }
}
