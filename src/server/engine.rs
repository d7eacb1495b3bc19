//! The engine of the knock server: the core (`knock`) and the open
//! grants (`grants`) behind one short lock, plus the queue to the firewall
//! worker. The receiver feeds it knocks, the SPA listener and tests grant
//! through it, the expiry task revokes through it; `reload.rs` swaps its
//! rules. Its own file so `server.rs` stays the run functions.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ServerSettings;
use super::knock_log::{Kind, KnockLogs};
use super::order::{Knock, PassClock};
use super::rotation::{UsedMemory, knock_ports_at, next_boundary, unix_now};
use crate::config::{Door, KnockRules};
use crate::counters::Counters;
use crate::firewall::Change;
use crate::grants::{GrantChange, GrantRefused, GrantTable, Holder, RefusalLog, SPA};
use crate::knock::{Judged, KnockTracker, Verdict};
use crate::shutdown::Shutdown;

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
pub(super) const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// What the engine needs of a door beyond the core: its name for logs,
/// the ports its grants open, and for how long.
#[derive(Debug)]
pub struct DoorInfo {
    /// The door's name.
    pub name: String,
    /// Its protected ports.
    pub protected: Vec<u16>,
    /// How long its grants last.
    pub access: Duration,
    /// Shared with the fleet (`fleet = true`).
    pub fleet: bool,
}

/// The core for `settings`: its doors, or the seed's single door.
pub(super) fn tracker_for(settings: &ServerSettings) -> KnockTracker {
    if settings.doors.is_empty() {
        KnockTracker::new(&settings.rules)
    } else {
        KnockTracker::for_doors(&settings.doors, settings.rules.max_tracked)
    }
}

/// The used-sequence memory of `doors`' rotating doors; an unreadable
/// state file (the daemon refuses to start on one) leaves an empty memory.
pub(super) fn load_used(doors: &[Door]) -> UsedMemory {
    UsedMemory::load(doors).unwrap_or_else(|err| {
        warn!(error = %err, "used-sequence memory unreadable: starting empty");
        UsedMemory::default()
    })
}

/// `tracker` rotated to the wall clock now (a no-op without rotating doors).
pub(super) fn rotated(mut tracker: KnockTracker, used: &UsedMemory) -> KnockTracker {
    tracker.rotate_to(unix_now(), |door, p| used.is_used(door, p));
    tracker
}

/// The current period of door `door` of `doors` (0 if it does not rotate).
fn period_now(doors: &[Door], door: usize) -> u64 {
    doors
        .get(door)
        .and_then(|d| d.rotating_sequence())
        .map_or(0, |r| r.rotation.period_at(unix_now()))
}

/// What the engine needs of each door of `settings`, in the core's order.
pub(super) fn door_infos(settings: &ServerSettings) -> Arc<Vec<DoorInfo>> {
    if settings.doors.is_empty() {
        return Arc::new(vec![DoorInfo {
            name: "default".to_string(),
            protected: vec![settings.protected_port],
            access: settings.rules.access,
            fleet: false,
        }]);
    }
    let info = settings.doors.iter().map(|door| DoorInfo {
        name: door.name().as_str().to_string(),
        protected: door.protected().iter().map(|p| p.port).collect(),
        access: door.timing().access,
        fleet: door.fleet(),
    });
    Arc::new(info.collect())
}

/// One verdict of a batch, with the knocked port and, for a grant, one
/// protected port with what became of its grant and the firewall's ttl.
#[derive(Debug, Clone, Copy)]
pub(super) struct Handled {
    pub(super) judged: Judged,
    pub(super) port: u16,
    pub(super) grant: Option<(u16, GrantOutcome, Duration)>,
}

/// Scratch space of one receiver: the verdicts of the batch being handled.
#[derive(Debug, Default)]
pub struct GrantBatch {
    pub(super) judged: Vec<Judged>,
    pub(super) verdicts: Vec<Handled>,
}

/// The core and the open grants, behind one lock, plus the firewall queue.
#[derive(Debug)]
pub struct Engine {
    pub(super) state: Mutex<State>,
    pub(super) firewall: tokio::sync::mpsc::Sender<Change>,
    pub(super) counters: Arc<Counters>,
    pub(super) wake_expiry: Notify,
    /// Budgets of the lockout and grant lines (never locked with `state`).
    pub(super) logs: Mutex<KnockLogs>,
    /// The fleet link, when the daemon runs in a fleet (`fleet_grants.rs`).
    pub(super) fleet: std::sync::OnceLock<Arc<crate::fleet::FleetLink>>,
}

/// What became of a grant: opened or renewed, or refused at the cap (with
/// the refusals to report if this one is logged).
pub(super) type GrantOutcome = Result<GrantChange, (GrantRefused, Option<u64>)>;

#[derive(Debug)]
pub(super) struct State {
    pub(super) tracker: KnockTracker,
    /// The rules the tracker applies (a reload compares against them):
    /// the seed's door, or `door_config` when that is not empty.
    pub(super) rules: KnockRules,
    pub(super) door_config: Vec<Door>,
    /// The doors' names, protected ports and access (shared with the log
    /// lines of a batch, after the lock).
    pub(super) doors: Arc<Vec<DoorInfo>>,
    pub(super) grants: GrantTable,
    pub(super) refusals: RefusalLog,
    /// The latest `now` given to the tracker, which needs them
    /// non-decreasing (arrival times of different passes may not be).
    pub(super) last_now: Option<std::time::Instant>,
    /// Rotating doors' used sequences (`server/rotation.rs`).
    pub(super) used: UsedMemory,
}

impl State {
    /// Publishes the tracking table's size to the counters.
    pub(super) fn publish_table(&self, counters: &Counters) {
        counters.set_table(
            self.tracker.tracked(),
            self.tracker.stats().evictions,
            self.tracker.heap_bytes(),
        );
    }

    /// Records a grant in the table; a refusal is counted and, within the
    /// log budget, marked to be logged.
    pub(super) fn grant(
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
    pub(super) fn advance(&mut self, at: std::time::Instant) -> std::time::Instant {
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
        let used = load_used(&settings.doors);
        Self {
            state: Mutex::new(State {
                tracker: rotated(tracker_for(settings), &used),
                used,
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
            fleet: std::sync::OnceLock::new(),
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
                let heard = knock.knock_port();
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
                    let doors = state.doors.clone();
                    if doors[usize::from(judged.door)].fleet && self.fleet_refuses() {
                        batch.verdicts.push(Handled {
                            judged,
                            port: knock.port,
                            grant: None,
                        });
                        continue;
                    }
                    granted = true;
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
            if granted {
                let state = &mut *state;
                for (door, period) in state.tracker.take_used() {
                    let name = &state.doors[usize::from(door)].name;
                    let current = period_now(&state.door_config, usize::from(door));
                    state.used.record(name, period, current);
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
        self.publish_knock_grants(&batch.verdicts, &doors);
    }

    /// Logs a verdict; lockouts and grants at info within their budget
    /// (`server/knock_log.rs`), at debug beyond it; refused grants under
    /// their own budget (`grants::RefusalLog`).
    pub(super) fn log(&self, handled: &Handled, doors: &[DoorInfo]) {
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
    pub(super) async fn expire_due(&self) -> Option<Instant> {
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

    /// Rotates the core to the wall clock `unix` (`server/rotation.rs`)
    /// and returns every UDP knock port the doors need now: what the
    /// receiver must hear (and, with stealth capture, the capture filter).
    pub fn rotate(&self, unix: Duration) -> Vec<u16> {
        let mut state = self.lock();
        let state = &mut *state;
        let used = &state.used;
        state
            .tracker
            .rotate_to(unix, |door, p| used.is_used(door, p));
        state.publish_table(&self.counters);
        if state.door_config.is_empty() {
            return state.rules.sequence.ports().to_vec();
        }
        knock_ports_at(&state.door_config, unix)
    }

    /// The next period boundary of a rotating door after `unix`.
    pub fn next_boundary(&self, unix: Duration) -> Option<Duration> {
        next_boundary(&self.lock().door_config, unix)
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
    pub(super) async fn queue(&self, change: Change) {
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

    pub(super) fn knock_logs(&self) -> MutexGuard<'_, KnockLogs> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs what the knock path's budgets demoted and did not report yet
    /// (on the way out).
    pub fn flush_log_summaries(&self) {
        self.knock_logs().flush();
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
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
pub(super) fn log_refusal(refused: &GrantRefused, log: Option<u64>) {
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
