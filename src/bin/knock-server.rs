//! knock-server: listens for knock sequences (and, with `--spa`, for
//! fwknop-compatible SPA packets) and opens the protected port for the
//! source that knocked right. See `knock-server --help`.
//!
//! All the wiring lives in the library (`portknock::server::daemon`):
//! this file turns flags (or `--config FILE` plus overriding flags) into
//! one validated `ServerConfig`, sets up logging, runs the daemon and maps
//! its error to the exit code (0, 1 runtime failure, 2 bad input).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use portknock::cli::{self, EXIT_FAILURE};
use portknock::config::globals::Word;
use portknock::config::{
    self, GlobalOverrides, Globals, Proto, Reveal, SeedFlags, Sequence, ServerConfig, SpaSettings,
};
use portknock::firewall::instance::{Instance, InstanceError};
use portknock::firewall::{Deny, FirewallKind, FirewallOptions, Position, leftovers};
use portknock::gate;
use portknock::privilege;
use portknock::server::daemon::{self, ConfigSource, DaemonError, GateTuning, Reloads};
use portknock::spa::DEFAULT_SPA_PORT;
use portknock::spa_listener;

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
    #[arg(long, default_value = "10", value_parser = config::parse_duration, allow_hyphen_values = true)]
    window: Duration,

    /// How long the protected port stays open after a correct sequence.
    #[arg(long, default_value = "30", value_parser = config::parse_duration, allow_hyphen_values = true)]
    access_duration: Duration,

    /// How long an IP is ignored after a wrong knock.
    #[arg(long, default_value = "5", value_parser = config::parse_duration, allow_hyphen_values = true)]
    lockout: Duration,

    /// Address to listen on; repeat for several [default: 0.0.0.0 and ::].
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,

    /// Firewall backend. auto: nftables where usable, else iptables, else
    /// the userspace gate (no privileges needed).
    #[arg(long, default_value_t = FirewallKind::Auto,
          value_parser = PossibleValuesParser::new(FirewallKind::NAMES).try_map(|s| s.parse::<FirewallKind>()))]
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
    #[arg(long, default_value = "3", value_parser = config::parse_duration, allow_hyphen_values = true)]
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
    #[arg(long, default_value = "5m", value_parser = config::parse_duration, allow_hyphen_values = true)]
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
    #[arg(long, default_value_t = Position::First,
          value_parser = PossibleValuesParser::new(Position::NAMES).try_map(|s| s.parse::<Position>()))]
    iptables_position: Position,

    /// Kernel backends: how a protected port answers a connection without
    /// a grant. reset: like a closed port (TCP RST, ICMP port-unreachable
    /// for UDP), so a scan sees it among its closed neighbours; drop:
    /// silence, for hosts whose policy drops everything. reject: alias of
    /// reset.
    #[arg(long, default_value_t = Deny::Reset,
          value_parser = PossibleValuesParser::new(Deny::NAMES).try_map(|s| s.parse::<Deny>()))]
    deny: Deny,

    /// Read the configuration (global settings and doors) from this TOML
    /// file; flags given beside it override its global settings. See
    /// packaging/portknock.toml.
    #[arg(long, value_name = "FILE", help_heading = "Config file")]
    config: Option<PathBuf>,

    /// Check the configuration, print it (secrets masked) and exit: 0 if
    /// valid, 2 if not.
    #[arg(long, help_heading = "Config file")]
    check_config: bool,

    /// Ask the running server of --instance (kernel backend) to re-read
    /// its --config file (SIGHUP), and exit.
    #[arg(long, help_heading = "Config file")]
    reload: bool,

    /// Run the packet-parsing process as this user (default: portknock if
    /// it exists, else nobody); see --privilege-split.
    #[arg(long, value_name = "NAME", help_heading = "Privilege")]
    user: Option<String>,

    /// Split into a packet process with no capability (as --user) and a
    /// small firewall helper that keeps CAP_NET_ADMIN. auto: on when
    /// started as root with a kernel backend.
    #[arg(long, default_value_t = privilege::Split::Auto, help_heading = "Privilege",
          value_parser = PossibleValuesParser::new(privilege::Split::NAMES).try_map(|s| s.parse::<privilege::Split>()))]
    privilege_split: privilege::Split,

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

/// Prints `error` once, prefixed with the program's name; returns `code`.
fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "knock-server: error: {error}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    if args.reload {
        return match daemon::request_reload(&args.instance) {
            Ok(pid) => {
                let _ = writeln!(std::io::stdout(), "asked knock-server pid {pid} to reload");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err, EXIT_FAILURE),
        };
    }
    // The packet process of a privilege split becomes --user first thing.
    let packet = match privilege::become_packet(args.user.as_deref()) {
        Ok(packet) => packet,
        Err(err) => return fail(&err, err.exit_code()),
    };
    let config = match server_config(&args, &matches) {
        Ok(config) => config,
        Err(err) => return fail(&err, err.exit_code()),
    };
    if args.check_config {
        // What the daemon would refuse at start fails here, with its
        // message (a udp/N door with the userspace gate chosen explicitly;
        // what `auto` picks is known only at start).
        let checked =
            daemon::door_settings(&config).and_then(|doors| match config.globals().firewall {
                FirewallKind::Userspace => {
                    daemon::refuse_udp_in_gate(doors.as_ref(), FirewallKind::Userspace)
                }
                _ => Ok(()),
            });
        if let Err(err) = checked {
            return fail(&err, err.exit_code());
        }
        for line in daemon::unheard_knocks(&config) {
            let _ = writeln!(std::io::stderr(), "knock-server: note: {line}");
        }
        let _ = std::io::stdout().write_all(config.render(Reveal::Masked).as_bytes());
        return ExitCode::SUCCESS;
    }
    cli::init_tracing(args.verbose, config.globals().log_level.word());
    // A userspace gate behind rules a crashed kernel-backend run left.
    if !packet {
        let _ = leftovers::check_at_start(config.globals().firewall, &guarded(&config, &args));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err, EXIT_FAILURE),
    };
    let source = args.config.clone().map(|path| ConfigSource {
        path,
        overrides: overrides(&args, &matches),
    });
    let tuning = GateTuning {
        max_connections_per_ip: args.max_connections_per_ip,
        upstream_idle_timeout: args.upstream_idle_timeout,
        spa_only_port: args.config.is_none().then_some(args.protected_port),
    };
    let result = runtime.block_on(async {
        // Before the firewall is touched: SIGHUP must not kill us untorn-down.
        let triggers = daemon::hangups()
            .map_err(|err| DaemonError::Unsupported(format!("cannot handle SIGHUP: {err}")))?;
        let reloads = Reloads { source, triggers };
        let split = match packet {
            true => None,
            false => privilege::split::prepare(
                &config,
                &tuning,
                args.privilege_split,
                args.user.as_deref(),
            )?,
        };
        if let Some(split) = split {
            let mut again = std::process::Command::new(
                std::env::current_exe().map_err(|e| DaemonError::Unsupported(e.to_string()))?,
            );
            again.args(std::env::args_os().skip(1));
            return split
                .run(again, Some(reloads), cli::signal_shutdown())
                .await;
        }
        daemon::run_with(config, tuning, Some(reloads), cli::signal_shutdown()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, err.exit_code()),
    }
}

/// What a kernel backend of this configuration would protect: for the
/// leftover-rules check (`firewall::leftovers`) before the daemon starts.
fn guarded(config: &ServerConfig, args: &Args) -> FirewallOptions {
    let g = config.globals();
    let doors = daemon::door_settings(config).ok().flatten();
    let ports = match doors {
        Some(_) => daemon::door_ports(doors.as_ref(), Proto::Tcp),
        None => vec![args.protected_port],
    };
    FirewallOptions {
        ports,
        udp_ports: daemon::door_ports(doors.as_ref(), Proto::Udp),
        keep_established: g.keep_established,
        instance: g.instance.clone(),
        position: g.iptables_position,
        deny: g.deny,
        capture: None,
    }
}

/// Whether the user gave flag `id` (on the command line or by its env var).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The flags' door and globals, or `--config`'s file with the flags given
/// beside it as overrides.
fn server_config(args: &Args, matches: &ArgMatches) -> Result<ServerConfig, DaemonError> {
    let Some(path) = &args.config else {
        if !args.no_sequence {
            config::check_protected_port(&args.sequence, args.protected_port)?;
            if args.spa && args.sequence.ports().contains(&args.spa_port) {
                return Err(DaemonError::Unsupported(format!(
                    "--spa-port {} is also in the knock sequence: the SPA port and the knock ports must differ",
                    args.spa_port
                )));
            }
        }
        let flags = SeedFlags {
            sequence: args.sequence.clone(),
            protected_port: args.protected_port,
            window: args.window,
            access: args.access_duration,
            lockout: args.lockout,
            no_sequence: args.no_sequence,
        };
        let mut globals = Globals::default();
        globals.apply(all_globals(args));
        return Ok(ServerConfig::from_flags(flags, globals)?);
    };
    let door_flags = [
        "sequence",
        "protected_port",
        "window",
        "access_duration",
        "lockout",
        "no_sequence",
    ];
    if let Some(flag) = door_flags.iter().find(|id| given(matches, id)) {
        return Err(DaemonError::Unsupported(format!(
            "--{} describes the door of a flags-only server: with --config, doors come from {}",
            flag.replace('_', "-"),
            path.display()
        )));
    }
    ConfigSource {
        path: path.clone(),
        overrides: overrides(args, matches),
    }
    .load()
}

/// Every global the flags describe (their defaults included).
fn all_globals(args: &Args) -> GlobalOverrides {
    GlobalOverrides {
        bind: Some(args.bind.clone()),
        firewall: Some(args.firewall),
        keep_established: Some(!args.no_keep_established),
        max_tracked: Some(args.max_tracked),
        max_grants: Some(args.max_grants),
        instance: Some(args.instance.clone()),
        iptables_position: Some(args.iptables_position),
        deny: Some(args.deny),
        stats_listen: args.stats_listen,
        upstream: args.upstream.clone(),
        flag: Some(args.flag.clone()),
        close_after: Some(args.close_after),
        max_connections: Some(args.max_connections),
        spa: spa_settings(args),
        ..GlobalOverrides::default()
    }
}

/// The globals of the flags the user gave: they override the file's.
fn overrides(args: &Args, matches: &ArgMatches) -> GlobalOverrides {
    let all = all_globals(args);
    let spa_flags = [
        "spa",
        "spa_port",
        "spa_access",
        "spa_allow_no_hmac",
        "spa_max_age",
        "spa_require_source_match",
        "spa_replay_cache",
    ];
    let keep = |id: &str| given(matches, id);
    GlobalOverrides {
        bind: all.bind.filter(|_| keep("bind")),
        firewall: all.firewall.filter(|_| keep("firewall")),
        keep_established: all.keep_established.filter(|_| keep("no_keep_established")),
        max_tracked: all.max_tracked.filter(|_| keep("max_tracked")),
        max_grants: all.max_grants.filter(|_| keep("max_grants")),
        instance: all.instance.filter(|_| keep("instance")),
        iptables_position: all.iptables_position.filter(|_| keep("iptables_position")),
        deny: all.deny.filter(|_| keep("deny")),
        stats_listen: all.stats_listen.filter(|_| keep("stats_listen")),
        upstream: all.upstream.filter(|_| keep("upstream")),
        flag: all.flag.filter(|_| keep("flag")),
        close_after: all.close_after.filter(|_| keep("close_after")),
        max_connections: all.max_connections.filter(|_| keep("max_connections")),
        spa: all.spa.filter(|_| spa_flags.iter().any(|id| keep(id))),
        ..GlobalOverrides::default()
    }
}

/// The SPA listener's settings, when `--spa` is on.
fn spa_settings(args: &Args) -> Option<SpaSettings> {
    let access = args.spa_access.clone().filter(|_| args.spa)?;
    Some(SpaSettings {
        port: args.spa_port,
        access,
        allow_no_hmac: args.spa_allow_no_hmac,
        max_age_secs: args.spa_max_age,
        require_source_match: args.spa_require_source_match,
        replay_cache: args.spa_replay_cache.clone(),
    })
}
