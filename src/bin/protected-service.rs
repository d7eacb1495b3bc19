//! `protected-service`: the demo service behind the knock.
//!
//! Thin: flags -> [`ServiceSettings`] -> listeners -> [`service::run`] with a
//! shutdown future fed by SIGINT/SIGTERM. Everything else lives in the library.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portknock::config::{DEFAULT_FLAG, DEFAULT_PROTECTED_PORT, parse_duration, parse_port};
use portknock::service::{self, DEFAULT_MAX_CONNECTIONS, ServiceSettings, format_seconds};

/// The protected TCP service: greets, sends the flag, closes after a delay.
///
/// Run it behind knock-server (with a kernel firewall backend) or on its own.
#[derive(Debug, Parser)]
#[command(name = "protected-service", version)]
struct Cli {
    /// TCP port to listen on (1-65535).
    #[arg(long, default_value_t = DEFAULT_PROTECTED_PORT, value_parser = parse_port)]
    port: u16,

    /// Address to listen on; repeat for several. Default: every IPv4 and
    /// every IPv6 address (0.0.0.0 and ::).
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,

    /// The flag sent to every connection.
    #[arg(long, env = "FLAG", default_value = DEFAULT_FLAG, hide_env_values = true)]
    flag: String,

    /// Seconds a connection stays open after the greeting (3, 0.5, 250ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "3", value_parser = parse_duration,
          allow_hyphen_values = true)]
    close_after: Duration,

    /// Cap on concurrent connections; beyond it new ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = service::parse_max_connections)]
    max_connections: usize,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[path = "shared/docs.rs"]
mod docs;

fn main() -> ExitCode {
    if let Some(code) = docs::generate(<Cli as clap::CommandFactory>::command) {
        return code;
    }
    let cli = Cli::parse();
    portknock::cli::init_tracing(cli.verbose, "info");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stderr loses the line, never panics.
            let _ = writeln!(std::io::stderr(), "protected-service: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let addrs = if cli.bind.is_empty() {
        service::default_bind_addrs()
    } else {
        cli.bind
    };
    let listeners = service::bind_listeners(&addrs, cli.port).context("starting the service")?;
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .map(|addr| addr.to_string())
        .collect();
    let settings = ServiceSettings {
        flag: cli.flag,
        close_after: cli.close_after,
        max_connections: cli.max_connections,
    };
    tracing::info!(
        listen = %bound.join(", "),
        close_after = %format_seconds(settings.close_after),
        max_connections = settings.max_connections,
        "protected service started"
    );
    // Tests wait for this line; a closed stdout must not stop the service.
    let _ = writeln!(
        std::io::stdout(),
        "protected-service listening on {}",
        bound.join(", ")
    );
    service::run(listeners, settings, portknock::cli::signal_shutdown())
        .await
        .context("serving")
}
