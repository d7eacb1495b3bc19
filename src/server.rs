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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{Door, KnockPort, KnockRules, ServerConfig};
use crate::counters::Counters;
use crate::firewall::{Change, Firewall, FirewallError};
use crate::firewall_worker::FirewallWorker;
use crate::grants::{GrantChange, GrantRefused, GrantTable, Holder, RefusalLog, SPA};
use crate::knock::{Judged, KnockTracker, Verdict};
use crate::shutdown::Shutdown;
use knock_log::{Kind, KnockLogs};
use order::{Knock, PassClock};
pub use reload::Reload;
use tasks::Tasks;
pub use tasks::{DRAIN_LIMIT, Listener};

/// Logs at info when `$info` (within the budget), else at debug.
macro_rules! budgeted {
    ($info:expr, $($field:tt)*) => {
        if $info {
            info!($($field)*)
        } else {
            debug!($($field)*)
        }
    };
}

/// How often the expiry task forgets stale progress while anyone is
/// tracked (never while the table is empty: idle stays idle).
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

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

/// What the engine needs of a door beyond the core: its name for logs,
/// the ports its grants open, and for how long.
#[derive(Debug)]
struct DoorInfo {
    name: String,
    protected: Vec<u16>,
    access: Duration,
}

/// The core for `settings`: its doors, or the seed's single door.
fn tracker_for(settings: &ServerSettings) -> KnockTracker {
    if settings.doors.is_empty() {
        KnockTracker::new(&settings.rules)
    } else {
        KnockTracker::for_doors(&settings.doors, settings.rules.max_tracked)
    }
}

/// What the engine needs of each door of `settings`, in the core's order.
fn door_infos(settings: &ServerSettings) -> Arc<Vec<DoorInfo>> {
    if settings.doors.is_empty() {
        return Arc::new(vec![DoorInfo {
            name: "default".to_string(),
            protected: vec![settings.protected_port],
            access: settings.rules.access,
        }]);
    }
    let info = settings.doors.iter().map(|door| DoorInfo {
        name: door.name().as_str().to_string(),
        protected: door.protected().iter().map(|p| p.port).collect(),
        access: door.timing().access,
    });
    Arc::new(info.collect())
}

/// One verdict of a batch, with the knocked port and, for a grant, one
/// protected port with what became of its grant and the firewall's ttl.
#[derive(Debug, Clone, Copy)]
struct Handled {
    judged: Judged,
    port: u16,
    grant: Option<(u16, GrantOutcome, Duration)>,
}

/// Scratch space of one receiver: the verdicts of the batch being handled.
#[derive(Debug, Default)]
pub struct GrantBatch {
    judged: Vec<Judged>,
    verdicts: Vec<Handled>,
}

/// The core and the open grants, behind one lock, plus the firewall queue.
#[derive(Debug)]
pub struct Engine {
    state: Mutex<State>,
    firewall: tokio::sync::mpsc::Sender<Change>,
    counters: Arc<Counters>,
    wake_expiry: Notify,
    /// Budgets of the lockout and grant lines (never locked with `state`).
    logs: Mutex<KnockLogs>,
}

/// What became of a grant: opened or renewed, or refused at the cap (with
/// the refusals to report if this one is logged).
type GrantOutcome = Result<GrantChange, (GrantRefused, Option<u64>)>;

#[derive(Debug)]
struct State {
    tracker: KnockTracker,
    /// The rules the tracker applies (a reload compares against them):
    /// the seed's door, or `door_config` when that is not empty.
    rules: KnockRules,
    door_config: Vec<Door>,
    /// The doors' names, protected ports and access (shared with the log
    /// lines of a batch, after the lock).
    doors: Arc<Vec<DoorInfo>>,
    grants: GrantTable,
    refusals: RefusalLog,
    /// The latest `now` given to the tracker, which needs them
    /// non-decreasing (arrival times of different passes may not be).
    last_now: Option<std::time::Instant>,
}

impl State {
    /// Publishes the tracking table's size to the counters.
    fn publish_table(&self, counters: &Counters) {
        counters.set_table(
            self.tracker.tracked(),
            self.tracker.stats().evictions,
            self.tracker.heap_bytes(),
        );
    }

    /// Records a grant in the table; a refusal is counted and, within the
    /// log budget, marked to be logged.
    fn grant(
        &mut self,
        ip: IpAddr,
        holder: Holder,
        port: u16,
        until: std::time::Instant,
        counters: &Counters,
    ) -> GrantOutcome {
        self.grants
            .grant_for(ip, holder, port, until)
            .map_err(|refused| {
                counters.record_grant_refused();
                (refused, self.refusals.admit(Instant::now().into_std()))
            })
    }

    /// `at`, or the latest time the tracker has seen if that is later.
    fn advance(&mut self, at: std::time::Instant) -> std::time::Instant {
        let now = self.last_now.map_or(at, |last| last.max(at));
        self.last_now = Some(now);
        now
    }
}

impl Engine {
    /// An engine applying `settings`, sending firewall changes to `firewall`.
    pub fn new(
        settings: &ServerSettings,
        firewall: tokio::sync::mpsc::Sender<Change>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                tracker: tracker_for(settings),
                rules: settings.rules.clone(),
                door_config: settings.doors.clone(),
                doors: door_infos(settings),
                grants: GrantTable::new(settings.max_grants),
                refusals: RefusalLog::default(),
                last_now: None,
            }),
            firewall,
            counters,
            wake_expiry: Notify::new(),
            logs: Mutex::default(),
        }
    }

    /// Judges one knock, received now, and carries out the verdict.
    pub async fn handle_knock(&self, source: IpAddr, port: u16) -> Verdict {
        let clock = PassClock::now(Instant::now().into_std());
        let knock = [Knock::new(source, port, clock.real)];
        let mut batch = GrantBatch::default();
        self.handle_knocks(&knock, clock, &mut batch).await;
        batch.verdicts[0].judged.verdict
    }

    /// Judges `knocks`, in the order given, under one lock, each at its
    /// arrival time (by `clock`, kept non-decreasing for the core), then
    /// logs them and queues their grants for the firewall. `batch` is
    /// scratch space reused from call to call.
    pub async fn handle_knocks(&self, knocks: &[Knock], clock: PassClock, batch: &mut GrantBatch) {
        batch.verdicts.clear();
        let doors = {
            let mut state = self.lock();
            let was_idle = state.tracker.tracked() == 0;
            let mut granted = false;
            for knock in knocks {
                let now = state.advance(clock.instant_of(knock.stamp));
                batch.judged.clear();
                // The socket receiver hears UDP knocks only.
                let heard = KnockPort::udp(knock.port);
                state
                    .tracker
                    .judge(knock.source, heard, now, &mut batch.judged);
                for &judged in &batch.judged {
                    self.counters.record_verdict(&judged.verdict);
                    let port = knock.port;
                    let Verdict::Grant { ip, until } = judged.verdict else {
                        batch.verdicts.push(Handled {
                            judged,
                            port,
                            grant: None,
                        });
                        continue;
                    };
                    granted = true;
                    let doors = state.doors.clone();
                    for &protected in &doors[usize::from(judged.door)].protected {
                        let outcome =
                            state.grant(ip, judged.door, protected, until, &self.counters);
                        // The firewall keeps (ip, port) open to the latest
                        // end of any door's grant for it.
                        let end = state.grants.open_until(ip, protected).unwrap_or(until);
                        let ttl = end.saturating_duration_since(now);
                        let grant = Some((protected, outcome, ttl));
                        batch.verdicts.push(Handled {
                            judged,
                            port,
                            grant,
                        });
                    }
                }
            }
            state.publish_table(&self.counters);
            if granted || (was_idle && state.tracker.tracked() > 0) {
                self.wake_expiry.notify_one();
            }
            state.doors.clone()
        };
        for handled in &batch.verdicts {
            self.log(handled, &doors);
            if let (Verdict::Grant { ip, .. }, Some((port, Ok(_), ttl))) =
                (handled.judged.verdict, handled.grant)
            {
                self.queue(Change::Grant { ip, port, ttl }).await;
            }
        }
    }

    /// Logs a verdict; lockouts and grants at info within their budget
    /// (`server/knock_log.rs`), at debug beyond it; refused grants under
    /// their own budget (`grants::RefusalLog`).
    fn log(&self, handled: &Handled, doors: &[DoorInfo]) {
        let Handled {
            judged,
            port,
            grant,
        } = *handled;
        // A verdict's door is in range (door 0 for a port of no door).
        let door_info = &doors[usize::from(judged.door).min(doors.len() - 1)];
        let door = door_info.name.as_str();
        let access = door_info.access.as_secs_f64();
        let at_info = |kind| self.knock_logs().admit(kind, Instant::now().into_std());
        match judged.verdict {
            Verdict::Progress { ip, matched, total } => {
                debug!(%ip, port, door, matched, total, verdict = "progress", "knock");
            }
            Verdict::Grant { ip, .. } => {
                debug!(%ip, port, door, verdict = "grant", "knock");
                let Some((protected, change, _)) = grant else {
                    return;
                };
                let info = at_info(Kind::Grant);
                match change {
                    Err((refused, log)) => log_refusal(&refused, log),
                    Ok(GrantChange::Renewed) => {
                        budgeted!(info, %ip, door, port = protected, access_secs = access, "access renewed");
                    }
                    Ok(GrantChange::New) => {
                        budgeted!(info, %ip, door, port = protected, access_secs = access, "access granted")
                    }
                }
            }
            Verdict::LockedOut { ip, until } => {
                debug!(%ip, port, door, verdict = "locked_out", "knock");
                let secs = until
                    .saturating_duration_since(Instant::now().into_std())
                    .as_secs_f64();
                let info = at_info(Kind::Lockout);
                budgeted!(info, %ip, port, door, lockout_secs = secs, "wrong knock: locked out");
            }
            Verdict::Ignored { ip, .. } => {
                debug!(%ip, port, door, verdict = "ignored", "knock ignored: locked out");
            }
            Verdict::NotAllowed { ip } => {
                debug!(%ip, port, door, verdict = "not_allowed", "knock ignored: source not allowed");
            }
        }
    }

    /// Revokes the grants that have ended and forgets stale knock progress;
    /// returns when the expiry task must next wake (None: nothing pending).
    async fn expire_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let (expired, next) = {
            let mut state = self.lock();
            let expired = state.grants.expire(now.into_std());
            let prune_at = state.advance(now.into_std());
            state.tracker.prune(prune_at);
            state.publish_table(&self.counters);
            let next_grant = state.grants.next_expiry().map(Instant::from_std);
            // While anyone is tracked, prune once per PRUNE_INTERVAL.
            let next_prune = (state.tracker.tracked() > 0).then(|| now + PRUNE_INTERVAL);
            let next = match (next_grant, next_prune) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (expired, next)
        };
        let next = {
            let mut logs = self.knock_logs();
            logs.summaries_due(now.into_std());
            let summary = logs.next_summary().map(Instant::from_std);
            match (next, summary) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        for (ip, port) in expired {
            let info = self.knock_logs().admit(Kind::Grant, now.into_std());
            budgeted!(info, %ip, port, "access expired");
            self.counters.record_expiry();
            self.queue(Change::Revoke { ip, port }).await;
        }
        next
    }

    /// Opens `port` for `ip` for `ttl` outside the knock core (an SPA
    /// grant): records it in the grant table, so the expiry timer revokes it
    /// like a sequence grant, and queues the firewall change. A grant for an
    /// open `(ip, port)` renews it to the new end; a new one is refused
    /// (counted, logged under a budget) while `max_grants` are open.
    pub async fn grant(
        &self,
        ip: IpAddr,
        port: u16,
        ttl: Duration,
    ) -> Result<GrantChange, GrantRefused> {
        let change = {
            let mut state = self.lock();
            let now = Instant::now().into_std();
            let until = now + ttl;
            let change = state.grant(ip, SPA, port, until, &self.counters);
            self.wake_expiry.notify_one();
            // A door's grant for the same (ip, port) may last longer.
            let end = state.grants.open_until(ip, port).unwrap_or(until);
            change.map(|change| (change, end.saturating_duration_since(now)))
        };
        match change {
            Ok((change, ttl)) => {
                self.queue(Change::Grant { ip, port, ttl }).await;
                Ok(change)
            }
            Err((refused, log)) => {
                log_refusal(&refused, log);
                Err(refused)
            }
        }
    }

    /// Queues a change for the firewall worker without waiting, unless the
    /// queue is full (backpressure, never loss).
    async fn queue(&self, change: Change) {
        let sent = match self.firewall.try_send(change) {
            Err(TrySendError::Full(change)) => self.firewall.send(change).await.is_ok(),
            other => other.is_ok(),
        };
        if !sent {
            warn!(?change, "firewall worker has stopped; change not applied");
        }
    }

    /// Forgets a grant the firewall could not apply, so the table matches
    /// what the firewall holds.
    pub fn forget_grant(&self, ip: IpAddr, port: u16) {
        self.lock().grants.remove(ip, port);
    }

    /// Completes when the firewall worker no longer takes changes (its
    /// queue closed: the worker thread died).
    pub async fn firewall_stopped(&self) {
        self.firewall.closed().await;
    }

    /// Every open grant as a [`Change::Grant`] with its remaining time:
    /// what a firewall repair re-applies.
    pub fn live_grants(&self) -> Vec<Change> {
        let now = Instant::now().into_std();
        let state = self.lock();
        state
            .grants
            .iter()
            .filter_map(|(ip, port, until)| {
                let ttl = until.saturating_duration_since(now);
                (!ttl.is_zero()).then_some(Change::Grant { ip, port, ttl })
            })
            .collect()
    }

    /// Number of open grants.
    pub fn open_grants(&self) -> usize {
        self.lock().grants.len()
    }

    fn knock_logs(&self) -> MutexGuard<'_, KnockLogs> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs what the knock path's budgets demoted and did not report yet
    /// (on the way out).
    pub fn flush_log_summaries(&self) {
        self.knock_logs().flush();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the expiry loop until `stop` turns true, forgetting each grant
    /// the firewall worker reports on `failed` (so the state matches the
    /// firewall, and a repair does not re-add what never opened).
    pub async fn run_expiry(
        &self,
        stop: Shutdown,
        mut failed: crate::firewall_worker::FailedGrants,
    ) {
        let mut reporting = true;
        loop {
            let next = self.expire_due().await;
            let sleep = async {
                match next {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake_expiry.notified() => {}
                report = failed.recv(), if reporting => match report {
                    Some((ip, port)) => self.forget_grant(ip, port),
                    None => reporting = false,
                },
                _ = stop.stopped() => return,
            }
        }
    }
}

/// Warns of a refused grant if the budget let it through (`log`: the
/// refusals suppressed since the last warning).
fn log_refusal(refused: &GrantRefused, log: Option<u64>) {
    if let Some(suppressed) = log {
        warn!(
            ip = %refused.ip,
            port = refused.port,
            max_grants = refused.max,
            suppressed,
            "grant refused: too many open grants (further refusals summarised)"
        );
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
    let sequence = match sockets.is_empty() {
        true => "off".to_string(),
        false => settings.rules.sequence.to_string(),
    };
    for listener in listeners {
        let (name, task) = listener.start(engine.clone(), stop_rx.clone());
        tasks.spawn(name, task);
    }
    let (rebind_tx, rebinds) = tokio::sync::mpsc::channel(1);
    let rebind = (!sockets.is_empty()).then_some(rebind_tx);
    if !sockets.is_empty() {
        let engine = engine.clone();
        let stop = stop_rx.clone();
        let counters = counters.clone();
        let task = receiver::receive_knocks(sockets, engine, counters, stop, rebinds);
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

    let mut shutdown = std::pin::pin!(shutdown.stopped());
    let died = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            ended = tasks.first_ended() => break Some(ended),
            () = engine.firewall_stopped() => break Some(("firewall worker", "its change queue closed".to_string())),
            Some(reload) = reloads.recv() => reload::apply(&engine, rebind.as_ref(), &reconfigurer, reload).await,
        }
    };
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

pub mod daemon;
mod knock_log;
pub mod order;
pub mod receiver;
pub mod reload;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod supervision_tests;

#[cfg(test)]
mod doors_tests;
mod tasks;
#[cfg(test)]
mod tests;
