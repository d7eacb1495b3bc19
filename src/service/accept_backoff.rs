//! Backing off a failing accept loop.
//!
//! Why: when the process runs out of file descriptors (EMFILE, ENFILE) or
//! the kernel out of memory for sockets (ENOBUFS, ENOMEM), the connection
//! that could not be accepted stays in the listen backlog, so the listener
//! is readable again at once and a loop that retries immediately spins a
//! core (issue 9 item 10: the stats endpoint at 92 % of a core). Such
//! errors wait, exponentially longer up to [`MAX_DELAY`], until an accept
//! succeeds again. Errors about one connection only (it was aborted or
//! reset before we took it) are retried at once: the next one is fine.
//!
//! Logs are budgeted too: the first failure of a streak is a warning, a
//! streak that lasts is summarised every [`REPORT_EVERY`], and the recovery
//! says how many accepts failed. Every accept loop of the crate (the gate,
//! the protected service, the stats endpoint) uses this one policy.
//!
//! The decisions are pure ([`AcceptBackoff::failed`] and
//! [`AcceptBackoff::succeeded`] take `now`); [`AcceptBackoff::on_error`] and
//! [`AcceptBackoff::on_success`] are the async shell that logs and sleeps.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// Wait after the first resource failure of a streak.
pub const FIRST_DELAY: Duration = Duration::from_millis(10);
/// Longest wait between two attempts: how late a recovered loop notices.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// How often a lasting streak of failures is summarised in the log.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// How long to wait before the next accept (zero: at once).
    pub delay: Duration,
    /// What to log, if anything beyond debug.
    pub report: Report,
}

/// A log line the accept loop owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Nothing above debug.
    Quiet,
    /// The first failure of a streak: warn with the error.
    StreakStarted,
    /// The streak goes on: warn with how many accepts failed so far.
    StillFailing {
        /// Failed accepts in this streak.
        failures: u64,
    },
}

/// A streak of failures that ended with a successful accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Failed accepts in the streak.
    pub failures: u64,
    /// From the first failure to the success.
    pub lasted: Duration,
}

/// The backoff state of one accept loop.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    /// The wait of the last resource failure; `None` outside a streak.
    delay: Option<Duration>,
    failures: u64,
    started: Option<Instant>,
    reported: Option<Instant>,
}

/// Whether `err` concerns one connection only, so the next accept may
/// succeed at once.
pub fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || err.raw_os_error() == Some(libc::EPROTO)
}

impl AcceptBackoff {
    /// A loop with no failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides the wait and the log line after `err` at `now`.
    pub fn failed(&mut self, err: &io::Error, now: Instant) -> Failed {
        if is_connection_error(err) {
            return Failed {
                delay: Duration::ZERO,
                report: Report::Quiet,
            };
        }
        self.failures += 1;
        let delay = match self.delay {
            None => FIRST_DELAY,
            Some(last) => (last * 2).min(MAX_DELAY),
        };
        self.delay = Some(delay);
        let report = match (self.started, self.reported) {
            (None, _) => {
                self.started = Some(now);
                self.reported = Some(now);
                Report::StreakStarted
            }
            (Some(_), Some(at)) if now.saturating_duration_since(at) < REPORT_EVERY => {
                Report::Quiet
            }
            _ => {
                self.reported = Some(now);
                Report::StillFailing {
                    failures: self.failures,
                }
            }
        };
        Failed { delay, report }
    }

    /// Ends a streak (if one was running) after a successful accept.
    pub fn succeeded(&mut self, now: Instant) -> Option<Recovered> {
        let started = self.started.take()?;
        let recovered = Recovered {
            failures: self.failures,
            lasted: now.saturating_duration_since(started),
        };
        *self = Self::default();
        Some(recovered)
    }

    /// Logs `err` as the policy says and waits before the next accept.
    /// `what` names the listener in the log ("gate", "stats endpoint").
    pub async fn on_error(&mut self, what: &'static str, err: &io::Error) {
        let failed = self.failed(err, Instant::now());
        match failed.report {
            Report::Quiet => tracing::debug!(listener = what, error = %err, "accept failed"),
            Report::StreakStarted => tracing::warn!(
                listener = what, error = %err,
                "accept failing (out of file descriptors or socket memory?): backing off up to {}s",
                MAX_DELAY.as_secs_f64()
            ),
            Report::StillFailing { failures } => tracing::warn!(
                listener = what, error = %err, failures,
                "accept still failing"
            ),
        }
        if !failed.delay.is_zero() {
            tokio::time::sleep(failed.delay).await;
        }
    }

    /// Notes a successful accept; logs the end of a streak.
    pub fn on_success(&mut self, what: &'static str) {
        if let Some(recovered) = self.succeeded(Instant::now()) {
            tracing::info!(
                listener = what,
                failures = recovered.failures,
                lasted_ms = recovered.lasted.as_millis() as u64,
                "accept works again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn resource_errors_wait_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::new();
        let delays: Vec<Duration> = (0..10)
            .map(|_| backoff.failed(&emfile(), t0).delay)
            .collect();
        let ms: Vec<u64> = delays.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        assert_eq!(backoff.failed(&enfile, t0).delay, MAX_DELAY);
    }

    #[test]
    fn a_success_resets_the_wait_and_reports_the_streak() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::new();
        assert_eq!(backoff.succeeded(t0), None);
        for _ in 0..3 {
            backoff.failed(&emfile(), t0);
        }
        let recovered = backoff.succeeded(t0 + Duration::from_millis(70));
        assert_eq!(
            recovered,
            Some(Recovered {
                failures: 3,
                lasted: Duration::from_millis(70)
            })
        );
        assert_eq!(backoff.succeeded(t0), None);
        assert_eq!(backoff.failed(&emfile(), t0).delay, FIRST_DELAY);
    }

    #[test]
    fn connection_errors_are_retried_at_once_and_do_not_start_a_streak() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::new();
        for err in [
            io::Error::from(io::ErrorKind::ConnectionAborted),
            io::Error::from_raw_os_error(libc::ECONNABORTED),
            io::Error::from_raw_os_error(libc::EPROTO),
        ] {
            let failed = backoff.failed(&err, t0);
            assert_eq!(failed.delay, Duration::ZERO, "{err}");
            assert_eq!(failed.report, Report::Quiet);
        }
        assert_eq!(backoff.succeeded(t0), None);
    }

    #[test]
    fn a_lasting_streak_is_logged_once_then_summarised_per_period() {
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::new();
        assert_eq!(backoff.failed(&emfile(), t0).report, Report::StreakStarted);
        let mut lines = 0;
        // Two minutes of failures, one a second (the capped wait).
        for s in 1..=120 {
            let at = t0 + Duration::from_secs(s);
            match backoff.failed(&emfile(), at).report {
                Report::Quiet => {}
                Report::StillFailing { failures } => {
                    lines += 1;
                    assert_eq!(failures, s + 1);
                }
                Report::StreakStarted => panic!("a second start in one streak"),
            }
        }
        assert_eq!(lines, 2);
    }
}
