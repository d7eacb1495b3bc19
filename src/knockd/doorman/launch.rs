//! Running a door's command on a blocking thread, and logging how it
//! ended (knockd's messages where it has one).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::commands::runner::{self, Ending, Report};
use crate::commands::{PendingStop, Template};

/// A command that ended.
pub(super) enum Done {
    Start {
        door: usize,
        ip: IpAddr,
        report: Report,
    },
    Stop {
        door: String,
        ip: String,
        report: Report,
    },
}

/// Milliseconds since the epoch `after` from now.
pub(super) fn due(after: Duration) -> u64 {
    crate::commands::pending::unix_ms(SystemTime::now() + after)
}

pub(super) fn spawn_run(
    template: Template,
    ip: &str,
    limit: Duration,
    door: String,
    done: mpsc::UnboundedSender<Done>,
    wrap: impl FnOnce(String, Report) -> Done + Send + 'static,
) {
    let argv = template.argv(ip);
    info!("{door}: running command: {}", argv.join(" "));
    tokio::task::spawn_blocking(move || {
        let report = runner::run(&argv, limit);
        let _ = done.send(wrap(door, report));
    });
}

pub(super) fn spawn_argv(stop: PendingStop, limit: Duration, done: mpsc::UnboundedSender<Done>) {
    info!("{}: running command: {}", stop.door, stop.argv.join(" "));
    tokio::task::spawn_blocking(move || {
        let report = runner::run(&stop.argv, limit);
        let _ = done.send(Done::Stop {
            door: stop.door,
            ip: stop.ip,
            report,
        });
    });
}

pub(super) fn log_report(door: &str, report: &Report) {
    let stderr = report.stderr.trim();
    let took_ms = report.took.as_millis() as u64;
    match &report.ending {
        Ending::Exited(0) => info!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "command succeeded"
        ),
        Ending::Exited(code) => warn!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "{door}: command returned non-zero status code ({code})"
        ),
        Ending::Signalled(signal) => warn!(
            door,
            took_ms, stderr, "{door}: command killed by signal {signal}"
        ),
        Ending::TimedOut => warn!(
            door,
            took_ms,
            stderr,
            dropped_bytes = report.dropped,
            "{door}: command timed out: its process group was killed"
        ),
        Ending::NotStarted(why) => error!(door, "{door}: command could not start: {why}"),
    }
}
