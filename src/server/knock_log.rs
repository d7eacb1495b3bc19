//! Log budgets of the knock path. Anyone can make the server lock a source
//! out (one wrong knock from a spoofed address), and anyone who sniffed
//! the sequence can make it grant; one info line each let 1.69 M spoofed
//! wrong knocks write 189 MB of log in 30 s (issue 9, item 7). Lockouts
//! and grants (granted, renewed, expired) each get a [`LogBudget`] of info
//! lines per window; the rest go to debug, and a summary line says how
//! many were demoted: before the next info line, once the window has ended
//! (the expiry task wakes for it), and on the way out.

use std::time::{Duration, Instant};

use tracing::info;

use crate::log_budget::{Admit, LogBudget};

/// Window of the knock path's budgets.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Info lines per window for lockouts ("wrong knock: locked out").
pub const LOCKOUT_LINES: u32 = 20;
/// Info lines per window for grants, renewals and expiries together: more
/// than for lockouts, since each is a real client's audit trail.
pub const GRANT_LINES: u32 = 50;

/// Which budget an event falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A wrong knock locked a source out.
    Lockout,
    /// Access granted, renewed or expired.
    Grant,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lockout => "lockout",
            Kind::Grant => "grant",
        }
    }
}

/// The budgets of the knock path.
#[derive(Debug)]
pub struct KnockLogs {
    lockouts: LogBudget,
    grants: LogBudget,
}

impl Default for KnockLogs {
    fn default() -> Self {
        KnockLogs {
            lockouts: LogBudget::new(WINDOW, LOCKOUT_LINES),
            grants: LogBudget::new(WINDOW, GRANT_LINES),
        }
    }
}

impl KnockLogs {
    fn budget(&mut self, kind: Kind) -> &mut LogBudget {
        match kind {
            Kind::Lockout => &mut self.lockouts,
            Kind::Grant => &mut self.grants,
        }
    }

    /// Whether an event of `kind` at `now` goes to info (true) or debug;
    /// logs the summary of what was demoted before it, if anything.
    pub fn admit(&mut self, kind: Kind, now: Instant) -> bool {
        match self.budget(kind).admit(now) {
            Admit::Info { demoted_before } => {
                summary(kind, demoted_before);
                true
            }
            Admit::Debug => false,
        }
    }

    /// Logs the summaries whose window has ended by `now`.
    pub fn summaries_due(&mut self, now: Instant) {
        for kind in [Kind::Lockout, Kind::Grant] {
            if let Some(demoted) = self.budget(kind).summary_due(now) {
                summary(kind, demoted);
            }
        }
    }

    /// When the next summary is due (None: nothing demoted).
    pub fn next_summary(&self) -> Option<Instant> {
        match (self.lockouts.summary_at(), self.grants.summary_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Logs what was demoted and not yet reported (on the way out).
    pub fn flush(&mut self) {
        for kind in [Kind::Lockout, Kind::Grant] {
            let demoted = self.budget(kind).take_demoted();
            summary(kind, demoted);
        }
    }
}

/// One summary line, if anything was demoted.
fn summary(kind: Kind, demoted: u64) {
    if demoted > 0 {
        info!(
            kind = kind.name(),
            demoted,
            window_secs = WINDOW.as_secs(),
            "log budget exceeded: lines logged at debug only"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use crate::counters::Counters;
    use crate::server::{Engine, ServerSettings};

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// The engine's own expiry task writes the summary once the window
    /// has ended, with no further knock to carry it (paused clock; the
    /// subscriber is this thread's, and so is the runtime).
    #[tokio::test(start_paused = true)]
    async fn the_expiry_task_summarises_a_lockout_flood_when_its_window_ends() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let (changes, _queue) = tokio::sync::mpsc::channel(16);
        let settings = ServerSettings {
            rules: crate::config::KnockRules::default(),
            protected_port: 2222,
            max_grants: crate::grants::DEFAULT_MAX_GRANTS,
            doors: Vec::new(),
        };
        let engine = Arc::new(Engine::new(&settings, changes, Arc::new(Counters::new())));
        let (stop, stop_rx) = crate::shutdown::Shutdown::new();
        let (_failed_tx, failed) = tokio::sync::mpsc::unbounded_channel();
        let expiry = tokio::spawn({
            let engine = engine.clone();
            async move { engine.run_expiry(stop_rx, failed).await }
        });
        // The sequence's second port as a first knock: a wrong knock each.
        let wrong = settings.rules.sequence.ports()[1];
        for i in 0..100u8 {
            engine.handle_knock([127, 1, 0, i].into(), wrong).await;
        }
        tokio::time::sleep(WINDOW - Duration::from_millis(500)).await;
        let text = captured.text();
        assert_eq!(
            text.matches("wrong knock: locked out").count(),
            20,
            "{text}"
        );
        assert!(!text.contains("log budget exceeded"), "too early:\n{text}");

        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = captured.text();
        let summary = text
            .lines()
            .find(|l| l.contains("log budget exceeded"))
            .unwrap_or_else(|| panic!("no summary:\n{text}"));
        assert!(
            summary.contains("kind=\"lockout\"") && summary.contains("demoted=80"),
            "{summary}"
        );
        stop.stop();
        expiry.await.unwrap();
    }

    #[test]
    fn lockouts_and_grants_have_budgets_of_their_own() {
        let t0 = Instant::now();
        let mut logs = KnockLogs::default();
        for _ in 0..LOCKOUT_LINES {
            assert!(logs.admit(Kind::Lockout, t0));
        }
        assert!(!logs.admit(Kind::Lockout, t0), "over the lockout budget");
        assert!(
            logs.admit(Kind::Grant, t0),
            "a lockout flood leaves grants at info"
        );
        assert_eq!(logs.next_summary(), Some(t0 + WINDOW));
        logs.summaries_due(t0 + WINDOW);
        assert_eq!(logs.next_summary(), None);
        assert!(logs.admit(Kind::Lockout, t0 + WINDOW));
    }
}
