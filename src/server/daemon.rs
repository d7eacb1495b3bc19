//! The composition root: one validated [`ServerConfig`] in, a running
//! daemon out. The binary and the tests call [`run`] alike (the shape of
//! tokio-rs/mini-redis): the binary only parses flags, sets up logging and
//! maps [`DaemonError::exit_code`] to its exit code.
//!
//! Order of start-up, so that a bad start changes nothing: the SPA access
//! file and the firewall backend are chosen, then every socket is bound
//! (knocks, the gate's protected port, SPA, stats), and only then does the
//! server set the firewall up. A kernel backend holds its instance lock
//! (`firewall/instance.rs`) for the whole run.
//!
//! Doors: every door of the configuration runs in one multi-door core
//! (`knock/doors.rs`): knock sockets are bound for the UDP knock ports of
//! every door, the firewall protects every door's protected ports, and
//! the userspace gate listens on each of them, serving a client only on
//! the ports its grants cover. `udp/N` protected ports are protected by
//! the kernel backends (per-protocol rules; a grant is (address, port
//! number) and the config gives each number one protocol); the userspace
//! gate serves TCP only and refuses them. Knocks and SPA packets are heard
//! by a capture source where one is available (`daemon/capture.rs`: NFLOG
//! or AF_PACKET; then no knock or SPA socket is bound), else by bound UDP
//! sockets, which cannot hear `:tcp` knocks (such a door refuses to
//! start). Reload lives in `daemon/reload.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Listener, Parts, ServerError, ServerSettings};
use crate::capture::CaptureKind;
use crate::config::{Deny, Globals, Proto, ServerConfig};
use crate::counters::Counters;
use crate::firewall::instance::InstanceLock;
use crate::firewall::userspace::AccessList;
use crate::firewall::{Firewall, FirewallKind, FirewallOptions, select};
use crate::gate::{self, GateSettings, GateTarget};
use crate::net;
use crate::service::ServiceSettings;
use crate::shutdown::Shutdown;
use crate::spa_listener::{SpaListener, SpaSetup};

mod capture;
mod control;
mod error;
mod reload;

pub use capture::{CAPTURE_FD_ENV, capture_spec, open_for_split};
pub use error::{DaemonError, EXIT_FAILURE, EXIT_USAGE};
pub use reload::{ConfigSource, Reloads, hangups, request_reload};

/// Tunables of the userspace gate that the configuration does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTuning {
    /// Cap on connections one client IP holds at once.
    pub max_connections_per_ip: usize,
    /// Close a proxied connection after this long without a byte.
    pub upstream_idle_timeout: Duration,
    /// The port the gate guards and serves when no door names one (SPA
    /// only): the seed's `--protected-port`. `None`: SPA's first port.
    pub spa_only_port: Option<u16>,
}

impl Default for GateTuning {
    fn default() -> Self {
        Self {
            max_connections_per_ip: gate::DEFAULT_MAX_CONNECTIONS_PER_IP,
            upstream_idle_timeout: Duration::from_secs(300),
            spa_only_port: None,
        }
    }
}

/// Runs `config` until `shutdown` is stopped, without reloads.
pub async fn run(config: ServerConfig, shutdown: Shutdown) -> Result<(), DaemonError> {
    run_with(config, GateTuning::default(), None, shutdown).await
}

/// The TCP and UDP ports a run protects: every door's, and with SPA the
/// ports its access file opens (SPA alone: also the gate's own port). The
/// one place they are worked out, for the daemon and for the privilege
/// split's helper alike.
pub fn protected_ports(
    doors: Option<&ServerSettings>,
    spa: bool,
    spa_ports: &[u16],
    tuning: &GateTuning,
) -> (Vec<u16>, Vec<u16>) {
    let mut tcp = door_ports(doors, Proto::Tcp);
    if doors.is_none() && spa {
        tcp.extend(tuning.spa_only_port);
    }
    tcp.extend(spa_ports);
    (tcp, door_ports(doors, Proto::Udp))
}

/// The firewall options for `globals` and these protected ports: the one
/// place they are built, for the daemon and for the privilege split's
/// helper alike, so the rules the two install cannot drift apart. A
/// kernel backend installs the NFLOG capture rule of `doors` when the
/// capture may be nflog (`auto` picks it with a kernel backend); the
/// userspace backend ignores it.
pub fn firewall_options(
    globals: &Globals,
    tcp: Vec<u16>,
    udp: Vec<u16>,
    doors: Option<&ServerSettings>,
) -> FirewallOptions {
    FirewallOptions {
        ports: tcp,
        udp_ports: udp,
        keep_established: globals.keep_established,
        instance: globals.instance.clone(),
        position: globals.iptables_position,
        deny: globals.deny,
        capture: capture::nflog_rule(globals, doors),
    }
}

/// The knock rules of `config`'s doors (none: SPA only), or why the
/// daemon cannot run them yet.
///
/// Refused with a clear message: `:tcp` knocks with `capture = socket`
/// (bound sockets hear UDP only; `capture/select.rs`). `udp/N` protected
/// ports pass here; the userspace gate refuses them once it is chosen.
pub fn door_settings(config: &ServerConfig) -> Result<Option<ServerSettings>, DaemonError> {
    if config.doors().is_empty() {
        return Ok(None);
    }
    let wanted = config.globals().capture.kind;
    if wanted == CaptureKind::Socket {
        let socket = crate::capture::select::choose(wanted, false, false)?;
        let doors = config
            .doors()
            .iter()
            .map(|d| (d.name().as_str(), d.sequence()));
        crate::capture::select::check_knocks(wanted, socket, doors)?;
    }
    Ok(Some(ServerSettings::from_config(config)))
}

/// What may not be heard in `config`, one line per door: `:tcp` knocks
/// need a capture source (nflog or packet, i.e. root or the capabilities);
/// with `capture = auto` a run that falls back to bound sockets refuses
/// to start. Printed by `--check-config`.
pub fn unheard_knocks(config: &ServerConfig) -> Vec<String> {
    config
        .doors()
        .iter()
        .filter_map(|door| {
            let knock = door.sequence().iter().find(|k| k.proto == Proto::Tcp)?;
            Some(format!(
                "door '{}': TCP knock {knock} needs a capture source (nflog with a kernel firewall, or packet with CAP_NET_RAW): a run without one refuses to start",
                door.name()
            ))
        })
        .collect()
}

/// The distinct UDP knock ports of every door, in first-seen order.
fn knock_ports(doors: Option<&ServerSettings>) -> Vec<u16> {
    let mut ports = Vec::new();
    for door in doors.map_or(&[][..], |d| &d.doors[..]) {
        for knock in door.sequence() {
            if !ports.contains(&knock.port) {
                ports.push(knock.port);
            }
        }
    }
    ports
}

/// The distinct protected ports under `proto` of every door, in
/// configuration order.
pub fn door_ports(doors: Option<&ServerSettings>, proto: Proto) -> Vec<u16> {
    let mut ports = Vec::new();
    for door in doors.map_or(&[][..], |d| &d.doors[..]) {
        for protected in door.protected().iter().filter(|p| p.proto == proto) {
            if !ports.contains(&protected.port) {
                ports.push(protected.port);
            }
        }
    }
    ports
}

/// Refuses a door's `udp/N` protected port with the userspace gate (chosen,
/// or what `auto` resolved to): the gate accepts TCP connections and
/// cannot guard a UDP service.
pub fn refuse_udp_in_gate(
    doors: Option<&ServerSettings>,
    chosen: FirewallKind,
) -> Result<(), DaemonError> {
    for door in doors.map_or(&[][..], |d| &d.doors[..]) {
        if let Some(port) = door.protected().iter().find(|p| p.proto == Proto::Udp) {
            let how = match chosen {
                FirewallKind::Auto => " (what firewall auto chose: no kernel firewall is usable)",
                _ => "",
            };
            return Err(DaemonError::Unsupported(format!(
                "door '{}': protected port {port}: the userspace gate{how} guards TCP ports only; use --firewall nftables or iptables (needs CAP_NET_ADMIN)",
                door.name()
            )));
        }
    }
    Ok(())
}

/// Runs `config` until `shutdown` is stopped; `reloads`, if given, swaps in
/// a new configuration while it runs (`daemon/reload.rs`).
pub async fn run_with(
    config: ServerConfig,
    tuning: GateTuning,
    reloads: Option<Reloads>,
    shutdown: Shutdown,
) -> Result<(), DaemonError> {
    let globals = config.globals().clone();
    let door = door_settings(&config)?;
    if let Some(upstream) = &globals.upstream {
        check_upstream(upstream)?;
    }
    // Rotating doors: an unreadable used-sequence memory refuses the start
    // (starting empty would re-open replays).
    super::rotation::UsedMemory::load(config.doors())
        .map_err(|err| DaemonError::Unsupported(err.to_string()))?;
    let binds = match globals.bind.is_empty() {
        true => net::WILDCARDS.to_vec(),
        false => globals.bind.clone(),
    };
    let spa = match &globals.spa {
        Some(settings) => Some(load_spa(settings)?),
        None => None,
    };
    let spa_ports = spa.as_ref().map_or_else(Vec::new, |spa| {
        crate::spa::open_tcp_ports(spa.verifier.stanzas())
    });
    let (protected_ports, udp_ports) =
        protected_ports(door.as_ref(), spa.is_some(), &spa_ports, &tuning);
    if let Some(port) = spa_ports.iter().find(|p| udp_ports.contains(p)) {
        return Err(DaemonError::Unsupported(format!(
            "SPA's OPEN_PORTS opens tcp/{port}, which a door protects as udp/{port}: a port number is protected under one protocol only"
        )));
    }
    let access = AccessList::new();
    let options = firewall_options(
        &globals,
        protected_ports.clone(),
        udp_ports.clone(),
        door.as_ref(),
    );
    // A packet process of the privilege split: the helper owns the
    // backend and the instance lock (`privilege/`).
    let remote = crate::privilege::link::take_packet_link();
    let split = remote.is_some();
    let selected = match remote {
        Some(remote) => select::Selected {
            kind: remote.kind(),
            firewall: Box::new(remote),
            passed_over: Vec::new(),
        },
        None => select::open(globals.firewall, &options, access.clone())
            .map_err(DaemonError::Firewall)?,
    };
    for reason in &selected.passed_over {
        info!(reason = %reason, "firewall auto: backend passed over");
    }
    let userspace = selected.kind == FirewallKind::Userspace;
    if userspace {
        refuse_udp_in_gate(door.as_ref(), globals.firewall)?;
    }
    // A kernel backend owns its instance's rules: refuse a second owner
    // before touching anything. Held until after teardown.
    let _instance_lock = match userspace || split {
        false => Some(InstanceLock::acquire(&globals.instance)?),
        true => None,
    };
    // Before anything is applied: an unusable source fails the start here.
    let capture = capture::open(&globals, door.as_ref(), !userspace)?;
    // The gate serves every door's protected port, or (SPA only) SPA's
    // first OPEN_PORTS one.
    let gate_ports = match door.as_ref() {
        Some(door) => door_ports(Some(door), Proto::Tcp),
        None => protected_ports.first().copied().into_iter().collect(),
    };
    if userspace {
        if globals.firewall == FirewallKind::Auto {
            warn!(
                "no kernel firewall usable (needs CAP_NET_ADMIN and nft or iptables): using the userspace gate"
            );
        }
        let unguarded: Vec<u16> = protected_ports
            .iter()
            .copied()
            .filter(|p| !gate_ports.contains(p))
            .collect();
        if !unguarded.is_empty() {
            warn!(ports = ?unguarded, "userspace gate guards the doors' ports only: SPA grants for these OPEN_PORTS are recorded but nothing enforces or serves them (use a kernel backend)");
        }
    } else {
        if globals.upstream.is_some() {
            warn!(
                "upstream applies to the userspace gate only; ignored with the {} backend",
                selected.kind
            );
        }
        info!(backend = %selected.kind, ports = ?protected_ports, udp_ports = ?udp_ports, "kernel firewall: run the protected services yourself");
    }
    // The kernel backends apply `deny`; the gate owns the port and resets.
    if userspace && globals.deny == Deny::Drop {
        warn!(
            "deny = drop applies to the kernel backends only: the userspace gate resets strangers"
        );
    }

    // Bind everything before touching the firewall: a busy port fails the
    // start with nothing applied.
    let mut sockets = match capture.source {
        Some(_) => Vec::new(),
        None => super::bind_udp(&binds, &knock_ports(door.as_ref()))
            .map_err(bind("for knocks on udp"))?,
    };
    // Rotating doors' ports and decoys: a busy one is skipped with a warning.
    if let (None, Some(door)) = (&capture.source, &door) {
        let all = super::rotation::knock_ports_at(&door.doors, super::rotation::unix_now());
        let fixed = knock_ports(Some(door));
        let extra: Vec<u16> = all.into_iter().filter(|p| !fixed.contains(p)).collect();
        sockets.extend(super::rotation::bind_lenient(&binds, &extra));
    }
    let mut listeners = Vec::new();
    let counters = Arc::new(Counters::new());
    // Fleet (issue 15): refused credentials fail here, before the firewall.
    listeners.extend(crate::fleet::listener(&config, &counters).await?);
    if let (true, Some(&first)) = (userspace, gate_ports.first()) {
        let mut bound = Vec::new();
        for &port in &gate_ports {
            let listeners =
                net::bind_each(&binds, port, net::tcp_listener).map_err(|(addr, source)| {
                    DaemonError::Bind {
                        what: "on the protected port tcp",
                        addr,
                        source,
                    }
                })?;
            bound.extend(listeners);
        }
        let settings = gate_settings(&globals, first, tuning);
        listeners.push(Listener::new("gate", move |_, stop| {
            let gate = gate::run(bound, access, settings, stop);
            async move {
                if let Err(err) = gate.await {
                    error!(error = %err, "userspace gate failed");
                }
            }
        }));
    }
    let mut spa_counters = None;
    let mut spa_route = None;
    if let (Some(spa), Some(settings)) = (spa, &globals.spa) {
        let listener = match capture.source {
            Some(_) => {
                let (listener, tap) = SpaListener::captured(spa.verifier, spa.replay);
                spa_route = Some(super::capture_receiver::SpaRoute {
                    port: settings.port,
                    tap,
                });
                listener
            }
            None => {
                let bound = super::bind_udp(&binds, &[settings.port])
                    .map_err(bind("for SPA packets on udp"))?;
                SpaListener::new(bound, spa.verifier, spa.replay)
            }
        };
        spa_counters = Some(listener.counters());
        listeners.push(listener.into_listener());
    }
    if let Some(addr) = globals.stats_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "for stats on tcp",
                addr,
                source,
            })?;
        let counters = counters.clone();
        let spa_counters = spa_counters.clone();
        listeners.push(Listener::new("stats", move |_, stop| {
            crate::stats::serve(listener, counters, spa_counters, stop)
        }));
    }
    // Operations: the control socket (sharing the reload path with SIGHUP)
    // and the metrics endpoint.
    let (reload_trigger, reloads) = control::merge_reloads(reloads);
    if let Some(socket) = control::bind(&globals)? {
        let backend = selected.kind.to_string();
        let listener = control::listener(socket, backend, counters.clone(), reload_trigger);
        listeners.push(listener);
    }
    if let Some(addr) = globals.metrics_listen {
        let backend = selected.kind.to_string();
        let info = crate::metrics::BuildInfo::new(backend, "socket", globals.max_tracked);
        let spa = spa_counters.clone();
        listeners.push(crate::metrics::listener(addr, info, counters.clone(), spa).await?);
    }
    let settings = door.clone().unwrap_or_else(|| ServerSettings {
        rules: Default::default(),
        protected_port: gate_ports.first().copied().unwrap_or(0),
        max_grants: globals.max_grants,
        doors: Vec::new(),
    });
    // Every socket is bound: a packet process drops what it still holds.
    crate::privilege::after_bind().map_err(|e| DaemonError::Unsupported(e.to_string()))?;
    let parts = Parts {
        settings,
        sockets,
        listeners,
        firewall: selected.firewall as Box<dyn Firewall>,
        counters,
        capture: capture.source.map(|source| super::Captured {
            source,
            spa: spa_route,
            knocks: door.is_some(),
        }),
    };
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let server = super::run_reloadable(parts, reload_rx, shutdown);
    let running = reload::Running {
        binds,
        spa_ports,
        userspace,
        gate_ports,
        capture: (capture.choice.kind != CaptureKind::Socket).then_some(capture.spec),
    };
    let reloader = reload::serve(Some(reloads), config, running, reload_tx);
    tokio::select! {
        result = server => Ok(result?),
        () = reloader => unreachable!("the reloader never returns"),
    }
}

fn bind(what: &'static str) -> impl Fn(ServerError) -> DaemonError {
    move |err| match err {
        ServerError::Bind { addr, source } => DaemonError::Bind { what, addr, source },
        other => DaemonError::Server(other),
    }
}

fn gate_settings(globals: &crate::config::Globals, port: u16, tuning: GateTuning) -> GateSettings {
    let target = match &globals.upstream {
        Some(upstream) => GateTarget::Upstream(upstream.clone()),
        None => GateTarget::Builtin(ServiceSettings {
            flag: globals.flag.clone(),
            close_after: globals.close_after,
            ..ServiceSettings::default()
        }),
    };
    GateSettings {
        port,
        target,
        max_connections: globals.max_connections,
        max_connections_per_ip: tuning.max_connections_per_ip,
        upstream_idle_timeout: tuning.upstream_idle_timeout,
    }
}

/// Loads the access file and the replay cache; reports what the access
/// file ignores.
fn load_spa(settings: &crate::config::SpaSettings) -> Result<SpaSetup, DaemonError> {
    let opts = settings.options();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let setup = SpaSetup::load(&opts, now)?;
    let path = settings.access.display();
    for warning in &setup.warnings {
        warn!(file = %path, "access file: {warning}");
    }
    if let Some(loose) = &setup.loose_mode {
        warn!("access file: {loose}");
    }
    for line in crate::spa::stanzas_without_hmac(setup.verifier.stanzas()) {
        warn!(file = %path, line, "access stanza has no HMAC_KEY: its packets are not authenticated and can be tampered with or forged by anyone who learns KEY (fwknop's legacy mode)");
    }
    for line in crate::spa::stanzas_without_open_ports(setup.verifier.stanzas()) {
        warn!(file = %path, line, "access stanza has no OPEN_PORTS: any port may be requested (as with fwknopd)");
    }
    info!(
        file = %path,
        stanzas = setup.verifier.stanzas().len(),
        replay_cache = %opts.replay_cache.display(),
        replay_entries = setup.replay.len(),
        max_age_secs = opts.max_age_secs,
        require_source_match = opts.require_source_match,
        "spa configured"
    );
    Ok(setup)
}

/// Checks that `upstream` is `HOST:PORT` with a valid port, and warns if
/// the host does not resolve now (it is resolved again per connection).
fn check_upstream(upstream: &str) -> Result<(), DaemonError> {
    let refuse = || DaemonError::Upstream(upstream.to_string());
    let (host, port) = upstream.rsplit_once(':').ok_or_else(refuse)?;
    crate::config::parse_port(port).map_err(|_| refuse())?;
    if host.is_empty() {
        return Err(refuse());
    }
    if std::net::ToSocketAddrs::to_socket_addrs(upstream).is_err() {
        warn!(%upstream, "upstream does not resolve now; will retry per connection");
    }
    Ok(())
}
