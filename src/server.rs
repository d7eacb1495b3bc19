//! The I/O shell of the knock server: UDP sockets -> core -> firewall.
//!
//! Three kinds of task, all stopped by one [`Shutdown`]:
//! - one receiver for all knock sockets (`server/receiver.rs`), which
//!   merges what every socket received by kernel arrival time
//!   (`server/order.rs`) and feeds `(source, port, arrival)` to the
//!   [`Engine`] (the core plus the grant table, behind one short lock);
//! - the expiry task, which sleeps until the next grant ends (a timer, not
//!   polling) and revokes it, and prunes the core while it tracks anyone;
//! - the firewall worker (`firewall_worker.rs`), one thread that owns the
//!   backend, so a knock never waits behind a slow firewall command.
//!
//! Plus the [`Listener`]s given to [`run_with`] (SPA, gate, stats). Every
//! task is supervised (`server/tasks.rs`): one that ends before shutdown,
//! or a firewall worker whose queue closes, stops the whole server through
//! its teardown with an error naming it, rather than running half-alive.
//!
//! Time comes from `tokio::time::Instant`, so tests can pause it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::UdpSocket;
use tracing::{error, info};

use crate::config::{Door, KnockRules, ServerConfig};
use crate::counters::Counters;
use crate::firewall::{Firewall, FirewallError};
use crate::firewall_worker::FirewallWorker;
use crate::shutdown::Shutdown;
pub use engine::{DoorInfo, Engine, GrantBatch};
use engine::{door_infos, tracker_for};
pub use reload::Reload;
use tasks::Tasks;
pub use tasks::{DRAIN_LIMIT, Listener};

/// A server failure that stops it.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The firewall backend could not be set up.
    #[error("firewall setup failed")]
    Setup(#[source] FirewallError),
    /// A task ended before shutdown (a panic or a return), or the firewall
    /// worker stopped taking changes; the server stopped and tore down.
    #[error("server task '{task}' ended before shutdown ({reason}); the server stopped")]
    TaskEnded {
        /// Which task: receiver, expiry, firewall worker, or a listener's name.
        task: &'static str,
        /// How it ended.
        reason: String,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was refused.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What the server protects and how it judges knocks.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The seed's single door (named `default`), used when `doors` is
    /// empty; `rules.max_tracked` bounds the core's table in every case.
    pub rules: KnockRules,
    /// The protected TCP port opened by the seed's door.
    pub protected_port: u16,
    /// Bound on open grants (`--max-grants`): new ones are refused at it.
    pub max_grants: usize,
    /// The doors of a configuration (`ServerConfig::doors`), in order;
    /// empty: the seed's door from `rules` and `protected_port`.
    pub doors: Vec<Door>,
}

impl ServerSettings {
    /// The settings of a validated configuration: its doors, in order,
    /// and its bounds. (`rules` and `protected_port` mirror the first door
    /// for code that still reads them.)
    pub fn from_config(config: &ServerConfig) -> Self {
        let globals = config.globals();
        let first = config.doors().first();
        let rules = first.map_or_else(
            || KnockRules {
                max_tracked: globals.max_tracked,
                ..KnockRules::default()
            },
            |door| door.knock_rules(globals.max_tracked),
        );
        let protected_port = first
            .and_then(|door| door.protected().first())
            .map_or(crate::config::DEFAULT_PROTECTED_PORT, |p| p.port);
        Self {
            rules,
            protected_port,
            max_grants: globals.max_grants,
            doors: config.doors().to_vec(),
        }
    }
}

/// Binds the knock sockets, the one way they are bound: one UDP socket
/// per address and port (IPv6 v6-only, so `0.0.0.0` and `::` can both be
/// bound; with the default wildcards an unusable IPv6 is skipped with a
/// warning). Each gets a large receive buffer and kernel receive stamps
/// from the start, so knocks that queue before the receiver runs are kept
/// and ordered too.
pub fn bind_udp(addrs: &[IpAddr], ports: &[u16]) -> Result<Vec<UdpSocket>, ServerError> {
    let mut sockets = Vec::new();
    for &port in ports {
        let bound = crate::net::bind_each(addrs, port, crate::net::udp_socket)
            .map_err(|(addr, source)| ServerError::Bind { addr, source })?;
        for socket in &bound {
            receiver::enlarge_buffer(socket);
            receiver::stamp_arrivals(socket);
        }
        sockets.extend(bound);
    }
    Ok(sockets)
}

/// Runs the knock server until `shutdown` is stopped: sets up the firewall,
/// receives knocks on `sockets`, grants and expires access, and on the way
/// out tears the firewall down. Returns the final counters.
pub async fn run(
    settings: ServerSettings,
    sockets: Vec<UdpSocket>,
    firewall: Box<dyn Firewall>,
    counters: Arc<Counters>,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    run_with(settings, sockets, Vec::new(), firewall, counters, shutdown).await
}

/// [`run`], plus `listeners` started with the engine (SPA). With no knock
/// `sockets` the sequence is off (`--no-sequence`).
pub async fn run_with(
    settings: ServerSettings,
    sockets: Vec<UdpSocket>,
    listeners: Vec<Listener>,
    firewall: Box<dyn Firewall>,
    counters: Arc<Counters>,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let (_keep, reloads) = tokio::sync::mpsc::channel(1);
    let parts = Parts {
        settings,
        sockets,
        listeners,
        firewall,
        counters,
        capture: None,
    };
    run_reloadable(parts, reloads, shutdown).await
}

/// What [`run_reloadable`] runs.
pub struct Parts {
    /// The rules at start.
    pub settings: ServerSettings,
    /// The knock sockets (none: the sequence is off).
    pub sockets: Vec<UdpSocket>,
    /// Tasks beside the knock sockets (SPA, gate, stats).
    pub listeners: Vec<Listener>,
    /// The firewall backend, set up here and torn down on the way out.
    pub firewall: Box<dyn Firewall>,
    /// The counters.
    pub counters: Arc<Counters>,
    /// A capture source that hears knocks (and SPA) instead of `sockets`
    /// (`server/capture_receiver.rs`); `sockets` is then empty.
    pub capture: Option<Captured>,
}

/// A capture source and where its SPA packets go.
pub struct Captured {
    /// The open source (NFLOG or AF_PACKET).
    pub source: Box<dyn crate::capture::CaptureSource>,
    /// The SPA port and listener, if SPA is on.
    pub spa: Option<capture_receiver::SpaRoute>,
    /// Whether the knock sequence is on (false: SPA only).
    pub knocks: bool,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("settings", &self.settings)
            .field("firewall", &self.firewall.name())
            .finish_non_exhaustive()
    }
}

/// [`run_with`], taking new rules from `reloads` while it runs (see
/// `server/reload.rs`).
pub async fn run_reloadable(
    parts: Parts,
    mut reloads: tokio::sync::mpsc::Receiver<Reload>,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let Parts {
        settings,
        sockets,
        listeners,
        firewall,
        counters,
        capture,
    } = parts;
    let backend = firewall.name();
    let (changes, failed, worker) = FirewallWorker::start(firewall, counters.clone())
        .await
        .map_err(ServerError::Setup)?;
    let engine = Arc::new(Engine::new(&settings, changes, counters.clone()));
    worker.live_grants({
        let engine = Arc::downgrade(&engine);
        move || engine.upgrade().map_or_else(Vec::new, |e| e.live_grants())
    });
    let reconfigurer = worker.reconfigurer();
    let (stop_tx, stop_rx) = Shutdown::new();
    let mut tasks = Tasks::default();
    let knocks_on = !sockets.is_empty() || capture.as_ref().is_some_and(|c| c.knocks);
    let sequence = match !knocks_on {
        true => "off".to_string(),
        false => settings.rules.sequence.to_string(),
    };
    for listener in listeners {
        let (name, task) = listener.start(engine.clone(), stop_rx.clone());
        tasks.spawn(name, task);
    }
    let (rebind_tx, rebinds) = tokio::sync::mpsc::channel(1);
    let rebind = (knocks_on || capture.is_some()).then_some(rebind_tx);
    if let Some(Captured { source, spa, .. }) = capture {
        let engine = engine.clone();
        let stop = stop_rx.clone();
        let counters = counters.clone();
        let task = capture_receiver::receive_captured(source, engine, counters, spa, stop, rebinds);
        tasks.spawn("capture receiver", task);
    } else if !sockets.is_empty() {
        let engine = engine.clone();
        let stop = stop_rx.clone();
        let counters = counters.clone();
        let (tick_tx, ticks) = tokio::sync::mpsc::channel(1);
        tasks.spawn(
            "rotator",
            rotation::run_rotator(engine.clone(), tick_tx, stop.clone()),
        );
        let task = receiver::receive_knocks(sockets, engine, counters, stop, (rebinds, ticks));
        tasks.spawn("receiver", task);
    }
    tasks.spawn("expiry", {
        let engine = engine.clone();
        async move { engine.run_expiry(stop_rx, failed).await }
    });
    info!(
        sequence = %sequence,
        protected_port = settings.protected_port,
        firewall = backend,
        window_secs = settings.rules.window.as_secs_f64(),
        access_secs = settings.rules.access.as_secs_f64(),
        lockout_secs = settings.rules.lockout.as_secs_f64(),
        "knock server ready"
    );
    crate::systemd::ready(&format!("ready: firewall {backend}, sequence {sequence}"));

    let mut shutdown = std::pin::pin!(shutdown.stopped());
    let died = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            ended = tasks.first_ended() => break Some(ended),
            () = engine.firewall_stopped() => break Some(("firewall worker", "its change queue closed".to_string())),
            Some(reload) = reloads.recv() => reload::apply(&engine, rebind.as_ref(), &reconfigurer, reload).await,
        }
    };
    crate::systemd::stopping("stopping: removing firewall rules");
    match &died {
        None => info!("shutting down: removing firewall rules"),
        Some((task, reason)) => error!(
            task,
            reason = %reason,
            "a server task ended before shutdown: stopping the server and removing firewall rules"
        ),
    }
    stop_tx.stop();
    tasks.drain().await;
    engine.flush_log_summaries();
    drop(engine);
    worker.finish().await;
    info!(summary = %counters.snapshot(), "knock server stopped");
    match died {
        None => Ok(()),
        Some((task, reason)) => Err(ServerError::TaskEnded { task, reason }),
    }
}

pub mod capture_receiver;
pub mod control_ops;
pub mod daemon;
mod engine;
mod fleet_grants;
mod knock_log;
pub mod order;
pub mod receiver;
pub mod reload;
pub mod rotation;
mod tasks;
#[cfg(test)]
mod tests;
