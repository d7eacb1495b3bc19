//! knock-server: listens for knock sequences (and, with `--spa`, for
//! fwknop-compatible SPA packets) and opens the protected port for the
//! source that knocked right. See `knock-server --help`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use tracing::{error, info, warn};

use portknock::cli::{self, EXIT_FAILURE, EXIT_USAGE};
use portknock::config::{self, KnockRules, Sequence};
use portknock::counters::Counters;
use portknock::firewall::instance::{Instance, InstanceError, InstanceLock};
use portknock::firewall::userspace::AccessList;
use portknock::firewall::{
    Firewall, FirewallError, FirewallKind, FirewallOptions, Position, select,
};
use portknock::gate::{self, GateSettings, GateTarget};
use portknock::net;
use portknock::server::{self, Listener, ServerSettings};
use portknock::service::ServiceSettings;
use portknock::spa::DEFAULT_SPA_PORT;
use portknock::spa_listener::{self, SpaListener, SpaOptions, SpaSetup};

/// Port-knocking server: keeps a TCP port closed until a client knocks the
/// secret sequence of UDP ports, then opens it for that client's IP only.
#[derive(Debug, Parser)]
#[command(name = "knock-server", version, about, long_about = None)]
struct Args {
    /// Knock sequence: comma-separated UDP ports, knocked in this order
    /// (repeats allowed).
    #[arg(long, default_value = config::DEFAULT_SEQUENCE, value_parser = parse_sequence)]
    sequence: Sequence,

    /// TCP port that stays closed until a correct knock.
    #[arg(long, default_value_t = config::DEFAULT_PROTECTED_PORT, value_parser = config::parse_port)]
    protected_port: u16,

    /// Time allowed from the first knock to the last (seconds, or with a
    /// unit: 500ms, 10s, 1m).
    #[arg(long, default_value = "10", value_parser = config::parse_duration)]
    window: Duration,

    /// How long the protected port stays open after a correct sequence.
    #[arg(long, default_value = "30", value_parser = config::parse_duration)]
    access_duration: Duration,

    /// How long an IP is ignored after a wrong knock.
    #[arg(long, default_value = "5", value_parser = config::parse_duration)]
    lockout: Duration,

    /// Address to listen on; repeat for several [default: 0.0.0.0 and ::].
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,

    /// Firewall backend. auto: nftables where usable, else iptables, else
    /// the userspace gate (no privileges needed).
    #[arg(long, value_enum, default_value_t = FirewallKind::Auto)]
    firewall: FirewallKind,

    /// Kernel backends: do not keep connections opened during a grant once
    /// it ends (by default they survive, as with knockd and SSH).
    #[arg(long)]
    no_keep_established: bool,

    /// Userspace gate only: proxy granted connections to this HOST:PORT
    /// instead of serving the built-in protected service.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: Option<String>,

    /// Flag served by the built-in protected service (userspace gate).
    #[arg(long, env = "FLAG", default_value = config::DEFAULT_FLAG, hide_env_values = true)]
    flag: String,

    /// Built-in service: seconds before a served connection is closed.
    #[arg(long, default_value = "3", value_parser = config::parse_duration)]
    close_after: Duration,

    /// Bound on tracked source IPs (knocks in progress and lockouts); when
    /// full, evicted progress is kept compactly and resumes.
    #[arg(long, default_value_t = config::DEFAULT_MAX_TRACKED, value_parser = config::parse_max_tracked)]
    max_tracked: usize,

    /// Bound on open grants (knock and SPA); at it, new grants are refused
    /// (counted, logged) and open ones are never evicted.
    #[arg(long, default_value_t = portknock::grants::DEFAULT_MAX_GRANTS, value_parser = portknock::grants::parse_max_grants)]
    max_grants: usize,

    /// Userspace gate: cap on connections served at once.
    #[arg(long, default_value_t = gate::DEFAULT_MAX_CONNECTIONS, value_parser = portknock::service::parse_max_connections)]
    max_connections: usize,

    /// Userspace gate: cap on connections one client IP holds at once.
    #[arg(long, default_value_t = gate::DEFAULT_MAX_CONNECTIONS_PER_IP, value_parser = gate::parse_max_connections_per_ip)]
    max_connections_per_ip: usize,

    /// Userspace gate with --upstream: close a proxied connection after this
    /// long without a byte either way (e.g. 90s, 5m, 1h; at most 24h).
    #[arg(long, default_value = "5m", value_parser = config::parse_duration)]
    upstream_idle_timeout: Duration,

    /// Turn on the SPA listener: fwknop-compatible Single Packet
    /// Authorization packets (encrypted, HMAC'd, timestamped) open access.
    #[arg(long, requires = "spa_access", help_heading = "SPA")]
    spa: bool,

    /// Do not listen for the knock sequence (SPA only).
    #[arg(long, requires = "spa", help_heading = "SPA")]
    no_sequence: bool,

    /// UDP port of the SPA listener.
    #[arg(long, default_value_t = DEFAULT_SPA_PORT, value_parser = config::parse_port,
          requires = "spa", help_heading = "SPA")]
    spa_port: u16,

    /// fwknop access.conf with the SPA keys and policy (SOURCE, KEY_BASE64,
    /// HMAC_KEY_BASE64, OPEN_PORTS, FW_ACCESS_TIMEOUT, MAX_FW_TIMEOUT...).
    #[arg(long, value_name = "FILE", requires = "spa", help_heading = "SPA")]
    spa_access: Option<PathBuf>,

    /// Accept access.conf stanzas without an HMAC key (fwknop's legacy,
    /// unauthenticated mode; such packets can be tampered with).
    #[arg(long, requires = "spa", help_heading = "SPA")]
    spa_allow_no_hmac: bool,

    /// Refuse SPA packets whose timestamp is further than this from now
    /// (whole seconds).
    #[arg(long, value_name = "SECS", default_value = "120",
          value_parser = spa_listener::parse_max_age, requires = "spa", help_heading = "SPA")]
    spa_max_age: u64,

    /// Only open access for the packet's own source address (fwknop opens
    /// the address named inside the packet).
    #[arg(long, requires = "spa", help_heading = "SPA")]
    spa_require_source_match: bool,

    /// Replay cache file (digests of accepted packets; survives restarts).
    #[arg(long, value_name = "PATH", default_value = spa_listener::DEFAULT_REPLAY_CACHE,
          requires = "spa", help_heading = "SPA")]
    spa_replay_cache: PathBuf,
    /// Serve the counters as one JSON line per TCP connection on this
    /// loopback IP:PORT (e.g. 127.0.0.1:9920); off by default.
    #[arg(long, value_name = "IP:PORT", value_parser = portknock::stats::parse_stats_addr)]
    stats_listen: Option<std::net::SocketAddr>,

    /// Name of this server's firewall instance: its own nftables table
    /// (inet portknock-NAME) and iptables chain (PORTKNOCK-NAME), so two
    /// servers can run side by side; one live server per instance.
    #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_instance)]
    instance: Instance,

    /// iptables: where the jump to our chain goes in INPUT. first: a grant
    /// wins over the admin's later INPUT rules; last: the admin's own
    /// INPUT rules (e.g. a DROP of an address) win.
    #[arg(long, value_enum, default_value_t = Position::First)]
    iptables_position: Position,

    /// More logs: -v for every knock, -vv for everything (RUST_LOG wins).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_instance(text: &str) -> Result<Instance, InstanceError> {
    text.parse()
}

fn parse_sequence(text: &str) -> Result<Sequence, config::ConfigError> {
    text.parse()
}

/// An error and the exit code it maps to.
struct Failure {
    error: anyhow::Error,
    code: u8,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            code: EXIT_FAILURE,
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        error: error.into(),
        code: EXIT_USAGE,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_tracing(args.verbose, "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return cli::fail("knock-server", &err.into(), EXIT_FAILURE),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => cli::fail("knock-server", &failure.error, failure.code),
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    // Before the firewall is touched: SIGHUP must not kill us untorn-down.
    cli::survive_hangups().map_err(|err| anyhow!(err).context("cannot handle SIGHUP"))?;
    config::check_protected_port(&args.sequence, args.protected_port).map_err(usage)?;
    let binds = if args.bind.is_empty() {
        net::WILDCARDS.to_vec()
    } else {
        args.bind.clone()
    };
    let rules = KnockRules {
        sequence: args.sequence.clone(),
        window: args.window,
        access: args.access_duration,
        lockout: args.lockout,
        max_tracked: args.max_tracked,
    };
    let spa = match &args.spa_access {
        Some(path) if args.spa => Some(load_spa(&args, path)?),
        _ => None,
    };
    let mut protected_ports = vec![args.protected_port];
    if let Some(spa) = &spa {
        protected_ports.extend(spa_listener::open_tcp_ports(spa.verifier.stanzas()));
    }
    let access = AccessList::new();
    let (firewall, gate) = choose_firewall(&args, &access, protected_ports.clone())?;
    // A kernel backend owns its instance's rules: refuse a second owner
    // before touching anything. Held until after teardown.
    let _instance_lock = match gate {
        None => Some(InstanceLock::acquire(&args.instance)?),
        Some(_) => None,
    };
    if gate.is_some() {
        let unguarded: Vec<u16> = protected_ports
            .iter()
            .copied()
            .filter(|&p| p != args.protected_port)
            .collect();
        if !unguarded.is_empty() {
            warn!(
                ports = ?unguarded,
                "userspace gate guards tcp/{} only: SPA grants for these OPEN_PORTS are recorded but nothing enforces or serves them (use a kernel backend)",
                args.protected_port
            );
        }
    }

    // Bind everything before touching the firewall: a busy port fails the
    // start with nothing applied.
    let mut sockets = Vec::new();
    let sequence_ports = match args.no_sequence {
        true => Vec::new(),
        false => args.sequence.distinct_ports(),
    };
    for port in sequence_ports {
        let bound = net::bind_each(&binds, port, net::udp_socket).map_err(|(addr, err)| {
            anyhow!(err).context(format!("cannot listen for knocks on udp {addr}"))
        })?;
        sockets.extend(bound);
    }
    let gate_listeners = match &gate {
        Some(_) => net::bind_each(&binds, args.protected_port, net::tcp_listener).map_err(
            |(addr, err)| {
                anyhow!(err).context(format!("cannot listen on the protected port tcp {addr}"))
            },
        )?,
        None => Vec::new(),
    };

    let mut listeners = Vec::new();
    let mut spa_counters = None;
    if let Some(spa) = spa {
        let bound =
            net::bind_each(&binds, args.spa_port, net::udp_socket).map_err(|(addr, err)| {
                anyhow!(err).context(format!("cannot listen for SPA packets on udp {addr}"))
            })?;
        let listener = SpaListener::new(bound, spa.verifier, spa.replay);
        spa_counters = Some(listener.counters());
        listeners.push(listener.into_listener());
    }
    let stats_listener = match args.stats_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|err| {
            anyhow!(err).context(format!("cannot listen for stats on tcp {addr}"))
        })?),
        None => None,
    };

    let settings = ServerSettings {
        rules,
        protected_port: args.protected_port,
        max_grants: args.max_grants,
        doors: Vec::new(),
    };
    let counters = Arc::new(Counters::new());
    // The gate and the stats endpoint run as the server's listeners, so
    // the server stops (with teardown) if either ends early.
    if let Some(gate_settings) = gate {
        listeners.push(Listener::new("gate", move |_, stop| {
            let gate = gate::run(gate_listeners, access, gate_settings, stopped(stop));
            async move {
                if let Err(err) = gate.await {
                    error!(error = %err, "userspace gate failed");
                }
            }
        }));
    }
    if let Some(listener) = stats_listener {
        let counters = counters.clone();
        listeners.push(Listener::new("stats", move |_, stop| {
            portknock::stats::serve(listener, counters, spa_counters, stopped(stop))
        }));
    }
    let shutdown = cli::shutdown_signal();
    let result = server::run_with(settings, sockets, listeners, firewall, counters, shutdown).await;
    result.map_err(|err| match err {
        server::ServerError::Setup(
            FirewallError::NeedsPrivilege { .. } | FirewallError::ToolMissing { .. },
        ) => usage(err),
        other => other.into(),
    })
}

/// Completes when the server's stop signal turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stopped| stopped).await;
}

/// Loads the access file and the replay cache, and checks the SPA port
/// against the knock ports; reports what the access file ignores.
fn load_spa(args: &Args, path: &std::path::Path) -> Result<SpaSetup, Failure> {
    if !args.no_sequence && args.sequence.ports().contains(&args.spa_port) {
        return Err(usage(anyhow!(
            "--spa-port {} is also in the knock sequence: the SPA port and the knock ports must differ",
            args.spa_port
        )));
    }
    let opts = SpaOptions {
        access: path.to_path_buf(),
        allow_no_hmac: args.spa_allow_no_hmac,
        max_age_secs: args.spa_max_age,
        require_source_match: args.spa_require_source_match,
        replay_cache: args.spa_replay_cache.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let setup = SpaSetup::load(&opts, now).map_err(usage)?;
    for warning in &setup.warnings {
        warn!(file = %path.display(), "access file: {warning}");
    }
    if let Some(loose) = &setup.loose_mode {
        warn!("access file: {loose}");
    }
    for line in spa_listener::stanzas_without_hmac(setup.verifier.stanzas()) {
        warn!(file = %path.display(), line, "access stanza has no HMAC_KEY: its packets are not authenticated and can be tampered with or forged by anyone who learns KEY (fwknop's legacy mode)");
    }
    for line in spa_listener::stanzas_without_open_ports(setup.verifier.stanzas()) {
        warn!(file = %path.display(), line, "access stanza has no OPEN_PORTS: any port may be requested (as with fwknopd)");
    }
    info!(
        file = %path.display(),
        stanzas = setup.verifier.stanzas().len(),
        replay_cache = %opts.replay_cache.display(),
        replay_entries = setup.replay.len(),
        max_age_secs = opts.max_age_secs,
        require_source_match = opts.require_source_match,
        "spa configured"
    );
    Ok(setup)
}

/// Picks the firewall backend and, for userspace, the gate's settings.
fn choose_firewall(
    args: &Args,
    access: &AccessList,
    ports: Vec<u16>,
) -> Result<(Box<dyn Firewall>, Option<GateSettings>), Failure> {
    let options = FirewallOptions {
        ports,
        keep_established: !args.no_keep_established,
        instance: args.instance.clone(),
        position: args.iptables_position,
    };
    let selected = select::open(args.firewall, &options, access.clone()).map_err(usage)?;
    for reason in &selected.passed_over {
        info!(reason = %reason, "firewall auto: backend passed over");
    }
    if selected.kind != FirewallKind::Userspace {
        if args.upstream.is_some() {
            warn!(
                "--upstream applies to the userspace gate only; ignored with the {} backend",
                selected.kind
            );
        }
        info!(backend = %selected.kind, "kernel firewall: run the protected service on port {}", args.protected_port);
        return Ok((selected.firewall, None));
    }
    if args.firewall == FirewallKind::Auto {
        warn!(
            "no kernel firewall usable (needs CAP_NET_ADMIN and nft or iptables): using the userspace gate"
        );
    }
    let target = match &args.upstream {
        Some(upstream) => GateTarget::Upstream(check_upstream(upstream)?),
        None => GateTarget::Builtin(ServiceSettings {
            flag: args.flag.clone(),
            close_after: args.close_after,
            ..ServiceSettings::default()
        }),
    };
    let gate = GateSettings {
        port: args.protected_port,
        target,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        upstream_idle_timeout: args.upstream_idle_timeout,
    };
    Ok((selected.firewall, Some(gate)))
}

/// Checks that `--upstream` is `HOST:PORT` with a valid port, and warns if
/// the host does not resolve now (it is resolved again per connection).
fn check_upstream(upstream: &str) -> Result<String, Failure> {
    let (host, port) = upstream.rsplit_once(':').ok_or_else(|| {
        usage(anyhow!(
            "invalid --upstream '{upstream}': expected HOST:PORT, e.g. 127.0.0.1:2223"
        ))
    })?;
    config::parse_port(port)
        .map_err(|err| usage(anyhow!("invalid --upstream '{upstream}': {err}")))?;
    if host.is_empty() {
        return Err(usage(anyhow!(
            "invalid --upstream '{upstream}': expected HOST:PORT, e.g. 127.0.0.1:2223"
        )));
    }
    if std::net::ToSocketAddrs::to_socket_addrs(upstream).is_err() {
        warn!(%upstream, "upstream does not resolve now; will retry per connection");
    }
    Ok(upstream.to_string())
}
