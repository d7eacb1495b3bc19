//! `knock-client`: knock the sequence, optionally check the protected port.
//!
//! Thin: flags -> a validated [`Plan`] -> `portknock::client` calls, with
//! the printing here. Exit codes: 0 success, 1 the check failed (or the
//! network failed us), 2 bad usage or bad input, so
//! `knock-client --target H && nc H 2222` does what it says.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portknock::client::{self, ClientError, PortState, report};
use portknock::config::{
    ConfigError, DEFAULT_PROTECTED_PORT, DEFAULT_SEQUENCE, Sequence, check_protected_port,
    parse_duration, parse_port,
};
use tracing_subscriber::EnvFilter;

/// Sends a port-knock sequence (UDP) and optionally checks that the
/// protected TCP port opened.
#[derive(Debug, Parser)]
#[command(name = "knock-client", version)]
struct Cli {
    /// Host to knock: a name, an IPv4 or an IPv6 address.
    #[arg(short, long, value_name = "HOST")]
    target: String,

    /// Knock ports in order, comma-separated (1-65535 each).
    #[arg(short, long, default_value = DEFAULT_SEQUENCE)]
    sequence: Sequence,

    /// The TCP port the knock opens (1-65535, not a knock port).
    #[arg(short, long, default_value_t = DEFAULT_PROTECTED_PORT, value_parser = parse_port)]
    protected_port: u16,

    /// Pause between knocks (seconds, or with a unit: 0.5, 250ms; 0 for none).
    #[arg(long, value_name = "DURATION", default_value = "0.5",
          value_parser = client::parse_delay, allow_hyphen_values = true)]
    delay: Duration,

    /// After knocking, check that the protected port opened (exit 1 if not).
    #[arg(short, long)]
    check: bool,

    /// Pause between the last knock and the check (0 for none).
    #[arg(long, value_name = "DURATION", default_value = "1",
          value_parser = client::parse_delay, allow_hyphen_values = true)]
    wait: Duration,

    /// How long the check waits for an answer before calling the port filtered.
    #[arg(long, value_name = "DURATION", default_value = "2",
          value_parser = parse_duration, allow_hyphen_values = true)]
    timeout: Duration,

    /// Send a wrong sequence, show the port stays closed, then send the right
    /// one during the lockout and show it is still closed (exit 1 if it opens).
    #[arg(long)]
    test_wrong: bool,

    /// Local address to knock and check from (e.g. 127.0.0.2 for a second
    /// client on loopback). Default: chosen by the system.
    #[arg(long, value_name = "ADDR")]
    source: Option<IpAddr>,

    /// Print nothing but failures and errors (for scripts).
    #[arg(short, long)]
    quiet: bool,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// What to do, validated: nothing after this sees clap types.
struct Plan {
    host: String,
    sequence: Sequence,
    protected_port: u16,
    delay: Duration,
    check: bool,
    wait: Duration,
    timeout: Duration,
    test_wrong: bool,
    source: Option<IpAddr>,
    quiet: bool,
}

impl TryFrom<Cli> for Plan {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        check_protected_port(&cli.sequence, cli.protected_port)?;
        Ok(Self {
            host: cli.target,
            sequence: cli.sequence,
            protected_port: cli.protected_port,
            delay: cli.delay,
            check: cli.check,
            wait: cli.wait,
            timeout: cli.timeout,
            test_wrong: cli.test_wrong,
            source: cli.source,
            quiet: cli.quiet,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let plan = match Plan::try_from(cli) {
        Ok(plan) => plan,
        Err(err) => return fail(&err.into(), 2),
    };
    match run(&plan) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            let bad_input = err
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_bad_input);
            fail(&err, if bad_input { 2 } else { 1 })
        }
    }
}

fn fail(err: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("knock-client: error: {err:#}");
    ExitCode::from(code)
}

/// Runs the plan; `Ok(false)` when a check did not come out as expected.
#[tokio::main(flavor = "current_thread")]
async fn run(plan: &Plan) -> anyhow::Result<bool> {
    let ip = client::resolve(&plan.host, plan.source).await?;
    if let Some(source) = plan.source {
        client::check_source(source)?;
    }
    let say = |line: &str| {
        if !plan.quiet {
            println!("{line}");
        }
    };
    say(report::BANNER);
    say(&report::sending_line(&report::target_label(&plan.host, ip)));
    let protected = SocketAddr::new(ip, plan.protected_port);

    if plan.test_wrong {
        let wrong = client::wrong_sequence(&plan.sequence);
        say(&report::wrong_sequence_line(&wrong));
        knock(plan, ip, &wrong).await?;
        let state = check(plan, protected).await?;
        let line = report::after_wrong_line(plan.protected_port, state);
        if state == PortState::Open {
            return Ok(verdict(plan, &line, false));
        }
        say(&line);
        say(report::during_lockout_line());
        say(&report::sequence_line(plan.sequence.ports()));
        knock(plan, ip, plan.sequence.ports()).await?;
        let state = check(plan, protected).await?;
        let line = report::lockout_line(plan.protected_port, ip, state);
        return Ok(verdict(plan, &line, state != PortState::Open));
    }

    say(&report::sequence_line(plan.sequence.ports()));
    knock(plan, ip, plan.sequence.ports()).await?;
    if !plan.check {
        say(&report::hint_line(&plan.host, plan.protected_port));
        return Ok(true);
    }
    let state = check(plan, protected).await?;
    let line = report::check_line(plan.protected_port, state, plan.timeout);
    Ok(verdict(plan, &line, state == PortState::Open))
}

/// Prints a verdict line (failures even when quiet, on stderr) and returns `ok`.
fn verdict(plan: &Plan, line: &str, ok: bool) -> bool {
    match (ok, plan.quiet) {
        (true, true) => {}
        (true, false) | (false, false) => println!("{line}"),
        (false, true) => eprintln!("{line}"),
    }
    ok
}

async fn knock(plan: &Plan, ip: IpAddr, ports: &[u16]) -> Result<(), ClientError> {
    let total = ports.len();
    client::send_knocks(ip, ports, plan.delay, plan.source, |index, port| {
        if !plan.quiet {
            println!("{}", report::knock_line(index, total, port));
        }
    })
    .await?;
    if !plan.quiet {
        println!("{}", report::completed_line());
    }
    Ok(())
}

async fn check(plan: &Plan, protected: SocketAddr) -> Result<PortState, ClientError> {
    if !plan.quiet {
        println!("{}", report::waiting_line(plan.wait, plan.protected_port));
    }
    tokio::time::sleep(plan.wait).await;
    let state = client::check_port(protected, plan.source, plan.timeout).await?;
    tracing::debug!(%protected, %state, "check");
    Ok(state)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
