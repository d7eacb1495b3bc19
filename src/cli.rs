//! Glue shared by the three binaries: logging set-up, the shutdown signal,
//! and exit codes. Nothing here is used by the library's own logic.
//!
//! Why logging drops output on error: a daemon's stderr is a pipe (journald,
//! `2>&1 | head`, a terminal) whose reader may go away. Rust ignores
//! SIGPIPE, so writes then fail with EPIPE, and `eprintln!` (which
//! tracing-subscriber uses to report its own write errors) panics on that,
//! killing whichever task happened to log. A lost log line is better than a
//! half-alive server, so nothing here ever panics on a failed write.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::shutdown::Shutdown;

/// Exit code: everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: the work was done but failed (a check failed, a socket broke).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or bad input; nothing was started.
pub const EXIT_USAGE: u8 = 2;

/// Installs the log subscriber on stderr. `RUST_LOG` wins when set;
/// otherwise `quiet_level` (`info` for daemons, `warn` for the client),
/// `debug` with `-v`, `trace` with `-vv`.
pub fn init_tracing(verbose: u8, quiet_level: &str) {
    init_tracing_as(verbose, quiet_level, false);
}

/// [`init_tracing`], with `json`: one JSON object per event on each line
/// (`--log-format json`), for journald, Loki or a SIEM. The field names
/// are stable: `timestamp`, `level`, `message`, and the event's own
/// fields flattened beside them (`ip`, `door`, `port`, `reason`, ...),
/// the same names the text lines show. The code never puts secrets or
/// raw packet bytes in a field, in either format.
pub fn init_tracing_as(verbose: u8, quiet_level: &str, json: bool) {
    let default = match verbose {
        0 => quiet_level,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr)
        .log_internal_errors(false)
        .with_target(false);
    let _ = match json {
        true => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        false => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Standard error that drops what it cannot write (a closed pipe, a full
/// disk) instead of failing: the log writer of every binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

/// Completes on the first signal that asks the program to stop: SIGINT,
/// SIGTERM, and the other fatal signals that can be caught (SIGQUIT,
/// SIGUSR1, SIGUSR2), so each of them goes through the caller's teardown
/// instead of killing the process with its firewall rules in place. The
/// log says which signal it was. (SIGHUP is the server's reload; it is
/// handled where the reloads are.)
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ];
        let mut streams = Vec::new();
        for (kind, name) in kinds {
            match signal(kind) {
                Ok(stream) => streams.push((stream, name)),
                Err(err) => tracing::warn!("cannot handle {name}: {err}"),
            }
        }
        if streams.is_empty() {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stop signal received (SIGINT)");
            return;
        }
        let name = std::future::poll_fn(|cx| {
            for (stream, name) in streams.iter_mut() {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        tracing::info!("stop signal received ({name})");
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop signal received");
    }
}

/// A [`Shutdown`] stopped by the first of [`shutdown_signal`]'s signals:
/// how the binaries hand their stop to the library. Spawns the wait on
/// the current tokio runtime (call it inside one).
pub fn signal_shutdown() -> Shutdown {
    let (stopper, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.stop();
    });
    shutdown
}

/// Prints an error chain on one line, prefixed with the program's name, and
/// returns `code`. A closed stderr loses the line, never panics.
///
/// Takes any error (an `anyhow::Error` in a binary gives `err.as_ref()`),
/// so the library needs no error crate of the binaries'.
pub fn fail(program: &str, err: &dyn std::error::Error, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{program}: error: {}", chain(err));
    ExitCode::from(code)
}

/// An error and its sources on one line, `outer: inner: ...`, as
/// `anyhow`'s `{:#}` prints them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key file")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_chain_prints_on_one_line_outer_first() {
        let err = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&err), "cannot read key file: disk on fire");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
