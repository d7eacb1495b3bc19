//! `knock-client`: knock the sequence (or send one fwknop-compatible SPA
//! packet with `--spa`), optionally check the protected port.
//!
//! Thin: flags -> a validated [`Plan`] -> `portknock::client` calls, with
//! the printing here. Exit codes: 0 success, 1 the check failed (or the
//! network failed us), 2 bad usage or bad input, so
//! `knock-client --target H && nc H 2222` does what it says.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use portknock::client::knocks::Knocks;
use portknock::client::printer::Printer;
use portknock::client::spa::{self as spa_client, SpaClientError, SpaFlags, SpaPlan};
use portknock::client::{self, ClientError, PortState, report};
use portknock::config::{
    DEFAULT_PROTECTED_PORT, DEFAULT_SEQUENCE, KnockPort, check_protected_port, parse_duration,
    parse_port,
};
use portknock::spa::{DigestType, EncodeError, GeneratedKeys, PortSpec, SpaRequest};

/// Sends a port-knock sequence (UDP, or TCP SYNs) and optionally checks that the
/// protected TCP port opened.
#[derive(Debug, Parser)]
#[command(name = "knock-client", version)]
struct Cli {
    /// Host to knock: a name, an IPv4 or an IPv6 address (with --spa, the rc
    /// stanza's SPA_SERVER when not given).
    #[arg(short, long, value_name = "HOST")]
    target: Option<String>,

    /// Knocks in order, comma-separated: PORT (UDP), PORT:udp or PORT:tcp
    /// (a SYN, as Debian's knock sends), PORT from 1 to 65535.
    #[arg(short, long, default_value = DEFAULT_SEQUENCE)]
    sequence: Knocks,

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

    /// Do not knock: only check the protected port now (exit 0 if open, 1 if
    /// closed or filtered). Shows what a stranger sees.
    #[arg(long, conflicts_with_all = ["check", "test_wrong"])]
    check_only: bool,

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

    /// Send one SPA packet (fwknop-compatible Single Packet Authorization)
    /// instead of the knock sequence. With --check, the first tcp port of
    /// --access is checked.
    #[arg(long, conflicts_with = "test_wrong", help_heading = "SPA")]
    spa: bool,

    /// Ports to open, comma-separated proto/port (e.g. tcp/2222); default:
    /// the rc stanza's ACCESS.
    #[arg(long, value_name = "LIST", requires = "spa", help_heading = "SPA")]
    access: Option<String>,

    /// Encryption key, base64 (as printed by --keygen).
    #[arg(
        long,
        value_name = "B64",
        env = "PORTKNOCK_SPA_KEY_BASE64",
        hide_env_values = true,
        requires = "spa",
        help_heading = "SPA"
    )]
    key_base64: Option<String>,

    /// HMAC key, base64 (as printed by --keygen).
    #[arg(
        long,
        value_name = "B64",
        env = "PORTKNOCK_SPA_HMAC_KEY_BASE64",
        hide_env_values = true,
        requires = "spa",
        help_heading = "SPA"
    )]
    hmac_key_base64: Option<String>,

    /// HMAC digest for --hmac-key-base64 (md5, sha1, sha256, sha384,
    /// sha512, sha3_256, sha3_512).
    #[arg(
        long,
        value_name = "DIGEST",
        default_value = "sha256",
        requires = "spa",
        help_heading = "SPA"
    )]
    hmac_digest: DigestType,

    /// fwknop rc file with the keys and defaults [default: ~/.fwknoprc when
    /// --name is given].
    #[arg(long, value_name = "FILE", requires = "spa", help_heading = "SPA")]
    rc_file: Option<PathBuf>,

    /// Stanza of the rc file to use [default: default].
    #[arg(long, value_name = "NAME", requires = "spa", help_heading = "SPA")]
    name: Option<String>,

    /// IPv4 address the server should open, or `source` to let it use the
    /// packet's source address [default: the address this host sends from].
    #[arg(long, value_name = "IP|source", requires = "spa", help_heading = "SPA")]
    allow_ip: Option<String>,

    /// UDP port of the SPA server [default: the rc stanza's, else 62201].
    #[arg(long, value_name = "PORT", value_parser = parse_port, requires = "spa",
          help_heading = "SPA")]
    server_port: Option<u16>,

    /// Ask for this access time in seconds (the server caps it with
    /// MAX_FW_TIMEOUT); default: the server's FW_ACCESS_TIMEOUT.
    #[arg(long, value_name = "SECS", requires = "spa", help_heading = "SPA")]
    timeout_request: Option<u32>,

    /// Username in the packet (the server may REQUIRE_USERNAME) [default:
    /// the rc stanza's SPOOF_USER, else $USER].
    #[arg(long, value_name = "NAME", requires = "spa", help_heading = "SPA")]
    spa_user: Option<String>,

    /// Print a fresh SPA key pair, for ~/.fwknoprc and for access.conf, and
    /// exit; with FILE, write a new rotating door key there (mode 0600).
    #[arg(long, exclusive = true, value_name = "FILE", num_args = 0..=1)]
    keygen: Option<Option<PathBuf>>,

    /// Knock a rotating door: derive the current sequence from this key
    /// file (as the server's `sequence = { rotate = FILE, ... }`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["spa", "sequence"], help_heading = "Rotating door")]
    door_key: Option<PathBuf>,

    /// The rotating door's name (part of the derivation).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        requires = "door_key",
        help_heading = "Rotating door"
    )]
    door: String,

    /// The rotating door's period.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration,
          allow_hyphen_values = true, requires = "door_key", help_heading = "Rotating door")]
    period: Duration,

    /// Knocks per rotating sequence.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        requires = "door_key",
        help_heading = "Rotating door"
    )]
    length: usize,

    /// The rotating door's port range.
    #[arg(
        long,
        value_name = "LOW-HIGH",
        default_value = "20000-60000",
        requires = "door_key",
        help_heading = "Rotating door"
    )]
    ports: String,

    /// Seconds added to this host's clock for the derivation (may be
    /// negative): shows the server's one-period skew tolerance, or knocks
    /// the next period's sequence.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        allow_hyphen_values = true,
        requires = "door_key",
        help_heading = "Rotating door"
    )]
    clock_offset: i64,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// What to do, validated: nothing after this sees clap types.
struct Plan {
    spa: Option<SpaPlan>,
    host: String,
    sequence: Knocks,
    protected_port: u16,
    delay: Duration,
    check: bool,
    check_only: bool,
    wait: Duration,
    timeout: Duration,
    test_wrong: bool,
    source: Option<IpAddr>,
    quiet: bool,
}

impl TryFrom<Cli> for Plan {
    type Error = anyhow::Error;

    fn try_from(mut cli: Cli) -> anyhow::Result<Self> {
        let spa = match cli.spa {
            true => Some(spa_plan(&cli)?),
            false => None,
        };
        if cli.target.is_none() {
            cli.target = spa.as_ref().and_then(|s| s.server.clone());
        }
        if let Some(key) = &cli.door_key {
            let flags = client::rotating::RotatingFlags {
                key,
                door: &cli.door,
                period: cli.period,
                length: cli.length,
                ports: &cli.ports,
                clock_offset: cli.clock_offset,
            };
            let (ports, _) = client::rotating::current_sequence(&flags)?;
            let text: Vec<String> = ports.iter().map(u16::to_string).collect();
            cli.sequence = text.join(",").parse()?;
        }
        let protected_port = match &spa {
            Some(spa) => spa.check_port.unwrap_or(cli.protected_port),
            None => {
                check_protected_port(&cli.sequence.sequence(), cli.protected_port)?;
                cli.protected_port
            }
        };
        let host = cli.target.ok_or_else(|| {
            anyhow!("no target: give --target HOST (or SPA_SERVER in the rc stanza)")
        })?;
        if cli.check && spa.as_ref().is_some_and(|s| s.check_port.is_none()) {
            return Err(anyhow!("--check needs a tcp port in --access to check"));
        }
        Ok(Self {
            spa,
            host,
            sequence: cli.sequence,
            protected_port,
            delay: cli.delay,
            check: cli.check,
            check_only: cli.check_only,
            wait: cli.wait,
            timeout: cli.timeout,
            test_wrong: cli.test_wrong,
            source: cli.source,
            quiet: cli.quiet,
        })
    }
}

#[path = "shared/docs.rs"]
mod docs;

fn main() -> ExitCode {
    if let Some(code) = docs::generate(<Cli as clap::CommandFactory>::command) {
        return code;
    }
    let cli = Cli::parse();
    portknock::cli::init_tracing(cli.verbose, "warn");
    if let Some(Some(path)) = &cli.keygen {
        return match portknock::rotate::write_new_key(path) {
            Ok(()) => {
                portknock::stdout::print(&format!(
                    "wrote a new door key to {} (mode 0600)\n",
                    path.display()
                ));
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err.into(), 2),
        };
    }
    if cli.keygen.is_some() {
        return match GeneratedKeys::generate() {
            Ok(keys) => {
                portknock::stdout::print(&keys.render());
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err.into(), 1),
        };
    }
    let plan = match Plan::try_from(cli) {
        Ok(plan) => plan,
        Err(err) => return fail(&err, 2),
    };
    match run(&plan) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            let bad_input = err
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_bad_input)
                || err.is::<SpaClientError>()
                || err.is::<EncodeError>();
            fail(&err, if bad_input { 2 } else { 1 })
        }
    }
}

fn fail(err: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("knock-client: error: {err:#}");
    ExitCode::from(code)
}

/// The SPA flags, for the library to validate.
fn spa_plan(cli: &Cli) -> Result<SpaPlan, SpaClientError> {
    SpaPlan::from_flags(SpaFlags {
        access: cli.access.clone(),
        key_base64: cli.key_base64.clone(),
        hmac_key_base64: cli.hmac_key_base64.clone(),
        hmac_digest: cli.hmac_digest,
        rc_file: cli.rc_file.clone(),
        name: cli.name.clone(),
        allow_ip: cli.allow_ip.clone(),
        server_port: cli.server_port,
        timeout_request: cli.timeout_request,
        user: cli.spa_user.clone(),
    })
}

/// Runs the plan; `Ok(false)` when a check did not come out as expected.
#[tokio::main(flavor = "current_thread")]
async fn run(plan: &Plan) -> anyhow::Result<bool> {
    let ip = client::resolve(&plan.host, plan.source).await?;
    if let Some(source) = plan.source {
        client::check_source(source)?;
    }
    let out = Printer::for_stdout(plan.quiet);
    out.banner();
    let label = report::target_label(&plan.host, ip);
    let protected = SocketAddr::new(ip, plan.protected_port);

    let ok = if let (Some(spa), false) = (&plan.spa, plan.check_only) {
        send_spa(plan, &out, spa, ip, &label).await?
    } else if plan.check_only {
        out.say(&report::check_only_line(&label, plan.protected_port));
        out.say(&report::attempting_line(plan.protected_port));
        let state = client::check_port(protected, plan.source, plan.timeout).await?;
        let line = report::check_only_result_line(plan.protected_port, state);
        out.verdict(&line, state == PortState::Open)
    } else if plan.test_wrong {
        test_wrong(plan, &out, ip, &label).await?
    } else {
        out.say(&report::sending_line(&label));
        out.say(&report::sequence_line(plan.sequence.knocks()));
        knock(plan, &out, ip, plan.sequence.knocks()).await?;
        check_or_hint(plan, &out, protected).await?
    };
    out.close();
    Ok(ok)
}

/// The wrong sequence, then the right one during the lockout: both checks
/// must find the port shut.
async fn test_wrong(plan: &Plan, out: &Printer, ip: IpAddr, label: &str) -> anyhow::Result<bool> {
    let protected = SocketAddr::new(ip, plan.protected_port);
    out.say(&report::sending_line(label));
    let wrong = plan.sequence.wrong();
    out.say(&report::wrong_sequence_line(&wrong));
    knock(plan, out, ip, &wrong).await?;
    let state = check(plan, out, protected).await?;
    let line = report::after_wrong_line(plan.protected_port, state);
    if !out.verdict(&line, state != PortState::Open) {
        return Ok(false);
    }
    out.blank();
    out.say(report::during_lockout_line());
    out.say(&report::sequence_line(plan.sequence.knocks()));
    knock(plan, out, ip, plan.sequence.knocks()).await?;
    let state = check(plan, out, protected).await?;
    // Name this client's address, as the server sees it, not the target's.
    let me = client::sending_address(protected, plan.source).unwrap_or(ip);
    let line = report::lockout_line(plan.protected_port, me, state);
    Ok(out.verdict(&line, state != PortState::Open))
}

/// Knocks `ports` in order, a line each, between blank lines.
async fn knock(
    plan: &Plan,
    out: &Printer,
    ip: IpAddr,
    ports: &[KnockPort],
) -> Result<(), ClientError> {
    let total = ports.len();
    out.blank();
    client::send_knocks(ip, ports, plan.delay, plan.source, |index, port| {
        out.say(&report::knock_line(index, total, port));
    })
    .await?;
    out.blank();
    out.say(report::completed_line());
    out.blank();
    Ok(())
}

/// Waits, then checks the protected port.
async fn check(
    plan: &Plan,
    out: &Printer,
    protected: SocketAddr,
) -> Result<PortState, ClientError> {
    out.say(&report::waiting_line(plan.wait));
    tokio::time::sleep(plan.wait).await;
    out.say(&report::attempting_line(plan.protected_port));
    let state = client::check_port(protected, plan.source, plan.timeout).await?;
    tracing::debug!(%protected, %state, "check");
    Ok(state)
}

/// With `--check`, the check and its verdict; without, the hint.
async fn check_or_hint(
    plan: &Plan,
    out: &Printer,
    protected: SocketAddr,
) -> Result<bool, ClientError> {
    if !plan.check {
        out.say(&report::hint_line(&plan.host, plan.protected_port));
        return Ok(true);
    }
    let state = check(plan, out, protected).await?;
    let line = report::check_line(plan.protected_port, state, plan.timeout);
    Ok(out.verdict(&line, state == PortState::Open))
}

/// Sends the SPA packet, then checks like after a sequence.
async fn send_spa(
    plan: &Plan,
    out: &Printer,
    spa: &SpaPlan,
    ip: IpAddr,
    label: &str,
) -> anyhow::Result<bool> {
    let target = SocketAddr::new(ip, spa.server_port);
    out.say(&report::spa_sending_line(label, spa.server_port));
    let allow = spa_client::allow_address(spa.allow, target, plan.source)?;
    let access: Vec<String> = spa.access.iter().map(PortSpec::to_string).collect();
    out.say(&report::spa_access_line(
        &access.join(","),
        allow,
        spa.client_timeout,
    ));
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let request = SpaRequest {
        client_timeout: spa.client_timeout,
        ..SpaRequest::new(&spa.username, allow, spa.access.clone(), timestamp)
    };
    let packet = portknock::spa::encode(&request, &spa.keys)?;
    let sent = spa_client::send_packet(target, packet.as_bytes(), plan.source).await?;
    out.blank();
    out.say(&report::spa_sent_line(sent));
    out.blank();
    let protected = SocketAddr::new(ip, plan.protected_port);
    Ok(check_or_hint(plan, out, protected).await?)
}
