//! The I/O shell of the knock server: UDP sockets -> core -> firewall.
//!
//! Three kinds of task, all stopped by one shutdown future:
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

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::KnockRules;
use crate::counters::Counters;
use crate::firewall::{Change, Firewall, FirewallError};
use crate::firewall_worker::FirewallWorker;
use crate::grants::{GrantChange, GrantRefused, GrantTable, RefusalLog};
use crate::knock::{KnockTracker, Verdict};
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
    /// The knock rules for the core.
    pub rules: KnockRules,
    /// The protected TCP port opened by a grant.
    pub protected_port: u16,
    /// Bound on open grants (`--max-grants`): new ones are refused at it.
    pub max_grants: usize,
}

/// Scratch space of one receiver: the verdicts of the batch being handled.
#[derive(Debug, Default)]
pub struct GrantBatch {
    verdicts: Vec<(Verdict, Option<GrantOutcome>, u16)>,
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
    /// The rules the tracker applies (a reload compares against them).
    rules: KnockRules,
    /// The protected TCP port a completed sequence opens.
    protected_port: u16,
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
        port: u16,
        until: std::time::Instant,
        counters: &Counters,
    ) -> GrantOutcome {
        self.grants.grant(ip, port, until).map_err(|refused| {
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
                tracker: KnockTracker::new(&settings.rules),
                rules: settings.rules.clone(),
                protected_port: settings.protected_port,
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
        batch.verdicts[0].0
    }

    /// Judges `knocks`, in the order given, under one lock, each at its
    /// arrival time (by `clock`, kept non-decreasing for the core), then
    /// logs them and queues their grants for the firewall. `batch` is
    /// scratch space reused from call to call.
    pub async fn handle_knocks(&self, knocks: &[Knock], clock: PassClock, batch: &mut GrantBatch) {
        batch.verdicts.clear();
        let (access, protected_port) = {
            let mut state = self.lock();
            let was_idle = state.tracker.tracked() == 0;
            let mut granted = false;
            for knock in knocks {
                let now = state.advance(clock.instant_of(knock.stamp));
                let verdict = state.tracker.knock(knock.source, knock.port, now);
                self.counters.record_verdict(&verdict);
                let change = match verdict {
                    Verdict::Grant { ip, until } => {
                        granted = true;
                        let port = state.protected_port;
                        Some(state.grant(ip, port, until, &self.counters))
                    }
                    _ => None,
                };
                batch.verdicts.push((verdict, change, knock.port));
            }
            state.publish_table(&self.counters);
            if granted || (was_idle && state.tracker.tracked() > 0) {
                self.wake_expiry.notify_one();
            }
            (state.rules.access, state.protected_port)
        };
        for &(verdict, change, port) in &batch.verdicts {
            self.log(&verdict, port, change, (access, protected_port));
            if let (Verdict::Grant { ip, .. }, Some(Ok(_))) = (verdict, change) {
                self.queue(Change::Grant {
                    ip,
                    port: protected_port,
                    ttl: access,
                })
                .await;
            }
        }
    }

    /// Logs a verdict; lockouts and grants at info within their budget
    /// (`server/knock_log.rs`), at debug beyond it; refused grants under
    /// their own budget (`grants::RefusalLog`).
    fn log(
        &self,
        verdict: &Verdict,
        port: u16,
        change: Option<GrantOutcome>,
        (access, protected): (Duration, u16),
    ) {
        let access = access.as_secs_f64();
        let at_info = |kind| self.knock_logs().admit(kind, Instant::now().into_std());
        match *verdict {
            Verdict::Progress { ip, matched, total } => {
                debug!(%ip, port, matched, total, verdict = "progress", "knock");
            }
            Verdict::Grant { ip, .. } => {
                debug!(%ip, port, verdict = "grant", "knock");
                let info = at_info(Kind::Grant);
                match change {
                    Some(Err((refused, log))) => log_refusal(&refused, log),
                    Some(Ok(GrantChange::Renewed)) => {
                        budgeted!(info, %ip, port = protected, access_secs = access, "access renewed");
                    }
                    _ => {
                        budgeted!(info, %ip, port = protected, access_secs = access, "access granted")
                    }
                }
            }
            Verdict::LockedOut { ip, until } => {
                debug!(%ip, port, verdict = "locked_out", "knock");
                let secs = until
                    .saturating_duration_since(Instant::now().into_std())
                    .as_secs_f64();
                let info = at_info(Kind::Lockout);
                budgeted!(info, %ip, port, lockout_secs = secs, "wrong knock: locked out");
            }
            Verdict::Ignored { ip, .. } => {
                debug!(%ip, port, verdict = "ignored", "knock ignored: locked out");
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
            let until = Instant::now().into_std() + ttl;
            let change = state.grant(ip, port, until, &self.counters);
            self.wake_expiry.notify_one();
            change
        };
        match change {
            Ok(change) => {
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

    /// Runs the expiry loop until `stop` turns true.
    pub async fn run_expiry(&self, mut stop: watch::Receiver<bool>) {
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
                _ = stop.changed() => return,
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

/// Runs the knock server until `shutdown` completes: sets up the firewall,
/// receives knocks on `sockets`, grants and expires access, and on the way
/// out tears the firewall down. Returns the final counters.
pub async fn run(
    settings: ServerSettings,
    sockets: Vec<UdpSocket>,
    firewall: Box<dyn Firewall>,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
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
    shutdown: impl Future<Output = ()>,
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
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let Parts {
        settings,
        sockets,
        listeners,
        firewall,
        counters,
    } = parts;
    let backend = firewall.name();
    let (changes, worker) = FirewallWorker::start(firewall, counters.clone())
        .await
        .map_err(ServerError::Setup)?;
    let engine = Arc::new(Engine::new(&settings, changes, counters.clone()));
    worker.on_failed_grant({
        let engine = Arc::downgrade(&engine);
        move |ip, port| {
            if let Some(engine) = engine.upgrade() {
                engine.forget_grant(ip, port);
            }
        }
    });

    worker.live_grants({
        let engine = Arc::downgrade(&engine);
        move || engine.upgrade().map_or_else(Vec::new, |e| e.live_grants())
    });
    let reconfigurer = worker.reconfigurer();
    let (stop_tx, stop_rx) = watch::channel(false);
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
        async move { engine.run_expiry(stop_rx).await }
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

    let mut shutdown = std::pin::pin!(shutdown);
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
    let _ = stop_tx.send(true);
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
mod supervision_tests;
mod tasks;
#[cfg(test)]
mod tests;
