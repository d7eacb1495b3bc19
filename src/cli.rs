//! Glue shared by the three binaries: logging set-up, the shutdown signal,
//! and exit codes. Nothing here is used by the library's own logic.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Exit code: everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: the work was done but failed (a check failed, a socket broke).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or bad input; nothing was started.
pub const EXIT_USAGE: u8 = 2;

/// Installs the log subscriber on stderr. `RUST_LOG` wins when set;
/// otherwise `info`, `debug` with `-v`, `trace` with `-vv`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("stop signal received");
}

/// Prints an error chain on one line, prefixed with the program's name, and
/// returns `code`.
pub fn fail(program: &str, err: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("{program}: error: {err:#}");
    ExitCode::from(code)
}
