//! The firewall worker: one thread that owns the backend.
//!
//! Firewall commands can be slow (an `iptables -D` takes milliseconds), so
//! the server never runs them on its receive path: it queues [`Change`]s
//! here. The worker drains whatever has queued into one batch, applies it,
//! logs each failure with the backend's own words, and tells the server of
//! a grant that failed so the server's table matches the firewall. When the
//! queue closes it tears the backend down.
//!
//! The worker also keeps the kernel state equal to the grant table when
//! someone else changes it (a firewall reload must never leave the door
//! open): it verifies the backend's rules when the backend's monitor says
//! they may have changed (nftables notifications), on a period as a safety
//! net, and repairs by running setup again and re-applying every live
//! grant with its remaining time (the grant table is the source of truth).
//!
//! A panic in a backend call must not leave the worker half-alive: it is
//! caught, the backend is torn down (also guarded), and the thread ends,
//! which closes the change queue for the server to notice.

use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info};

use crate::counters::Counters;
use crate::firewall::nftables::{NftMonitor, Notice};
use crate::firewall::{Change, Firewall, FirewallError};

/// Changes queued beyond this make a knock wait (backpressure, not loss).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Most changes applied in one batch.
pub const MAX_BATCH: usize = 1024;
/// After a failed repair, the next attempt comes this soon.
const RETRY_REPAIR: Duration = Duration::from_secs(1);
/// The period when the backend asks for none: an idle bound, not a check.
const IDLE: Duration = Duration::from_secs(3600);
/// Announced changes of a shared table (the admin's own iptables rules)
/// verify at most this often; a deletion in our own table never waits.
const MIN_GAP: Duration = Duration::from_millis(50);

/// Where the worker reports grants it could not apply, `(ip, port)`, so
/// the server forgets them and its state matches the firewall (drained by
/// [`crate::server::Engine::run_expiry`]). Unbounded, so the firewall
/// thread never waits on the server; one entry per failed grant, so it is
/// bounded by the grants the queue carried.
pub type FailedGrants = mpsc::UnboundedReceiver<(IpAddr, u16)>;

type LiveGrants = Box<dyn Fn() -> Vec<Change> + Send + Sync>;

/// What the worker tells the server: failed grants on a channel, and
/// where a repair reads the live grants.
struct Callbacks {
    failed_grants: mpsc::UnboundedSender<(IpAddr, u16)>,
    live_grants: Mutex<Option<LiveGrants>>,
}

impl Callbacks {
    fn failed_grant(&self, ip: IpAddr, port: u16) {
        // Gone only when the server is stopping: nothing left to forget.
        let _ = self.failed_grants.send((ip, port));
    }

    fn live(&self) -> Vec<Change> {
        self.live_grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(Vec::new, |live| live())
    }
}

/// A request to protect other ports, and where the result goes.
type Reconfigure = (
    Vec<u16>,
    Vec<u16>,
    oneshot::Sender<Result<(), FirewallError>>,
);

/// Handle on the running worker thread.
pub struct FirewallWorker {
    thread: JoinHandle<()>,
    callbacks: Arc<Callbacks>,
    reconfigure: mpsc::Sender<Reconfigure>,
}

/// Asks the worker to protect other ports (a reload): cheap to clone.
#[derive(Debug, Clone)]
pub struct Reconfigurer(mpsc::Sender<Reconfigure>);

impl Reconfigurer {
    /// Has the backend protect the TCP `ports` and the `udp_ports` from now
    /// on ([`Firewall::reconfigure`]); live grants are applied again if the
    /// backend lost them.
    pub async fn reconfigure(
        &self,
        ports: Vec<u16>,
        udp_ports: Vec<u16>,
    ) -> Result<(), FirewallError> {
        let gone = || FirewallError::Io {
            context: "the firewall worker has stopped".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        };
        let (reply, result) = oneshot::channel();
        self.0
            .send((ports, udp_ports, reply))
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

impl std::fmt::Debug for FirewallWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirewallWorker").finish_non_exhaustive()
    }
}

impl FirewallWorker {
    /// Sets the backend up on a new thread and starts applying changes:
    /// the queue of changes, the grants that failed (for
    /// [`crate::server::Engine::run_expiry`]), and the worker. Fails,
    /// leaving no thread behind, if the setup fails.
    pub async fn start(
        mut firewall: Box<dyn Firewall>,
        counters: Arc<Counters>,
    ) -> Result<(mpsc::Sender<Change>, FailedGrants, FirewallWorker), FirewallError> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (reconfigure, requests) = mpsc::channel(1);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (failed_tx, failed) = mpsc::unbounded_channel();
        let callbacks = Arc::new(Callbacks {
            failed_grants: failed_tx,
            live_grants: Mutex::default(),
        });
        let shared = callbacks.clone();
        let thread = std::thread::Builder::new()
            .name("firewall".into())
            .spawn(move || {
                let setup = catch_unwind(AssertUnwindSafe(|| firewall.setup()));
                match setup {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                    Err(_) => {
                        error!(backend = firewall.name(), "firewall setup panicked");
                        teardown(firewall.as_mut());
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let run = catch_unwind(AssertUnwindSafe(|| {
                    apply_until_closed(firewall.as_mut(), rx, requests, &counters, &shared)
                }));
                if run.is_err() {
                    // The queue's receiver was dropped with the unwound
                    // frame: the server sees the worker gone.
                    error!(
                        backend = firewall.name(),
                        "firewall worker panicked: removing our rules and stopping"
                    );
                }
                teardown(firewall.as_mut());
            })
            .map_err(|source| FirewallError::Io {
                context: "cannot start the firewall thread".into(),
                source,
            })?;
        match ready_rx.await {
            Ok(Ok(())) => Ok((
                tx,
                failed,
                FirewallWorker {
                    thread,
                    callbacks,
                    reconfigure,
                },
            )),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(FirewallError::Io {
                    context: "firewall thread ended during setup".into(),
                    source: std::io::Error::other("thread panicked"),
                })
            }
        }
    }

    /// Registers where a repair reads the live grants: one
    /// [`Change::Grant`] per open grant, with its *remaining* time.
    pub fn live_grants(&self, callback: impl Fn() -> Vec<Change> + Send + Sync + 'static) {
        *self
            .callbacks
            .live_grants
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(callback));
    }

    /// A handle that asks the worker to protect other ports.
    pub fn reconfigurer(&self) -> Reconfigurer {
        Reconfigurer(self.reconfigure.clone())
    }

    /// Whether the worker thread has ended (its queue is closed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the worker to apply what is queued and tear down. Every
    /// sender must have been dropped first.
    pub async fn finish(self) {
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Tears the backend down, a panic included, and logs how it went.
fn teardown(firewall: &mut dyn Firewall) {
    let name = firewall.name();
    match catch_unwind(AssertUnwindSafe(|| firewall.teardown())) {
        Ok(Ok(())) => info!(backend = name, "firewall rules removed"),
        Ok(Err(err)) => error!(backend = name, error = %err, "firewall teardown failed"),
        Err(_) => error!(backend = name, "firewall teardown panicked"),
    }
}

/// What woke the worker.
enum Wake {
    Change(Change),
    Reconfigure(Reconfigure),
    Closed,
    /// A notification came (`true`), or the period elapsed
    /// ([`Notice::Changed`], `false`).
    Check(Notice, bool),
}

fn apply_until_closed(
    firewall: &mut dyn Firewall,
    mut rx: mpsc::Receiver<Change>,
    mut requests: mpsc::Receiver<Reconfigure>,
    counters: &Counters,
    callbacks: &Callbacks,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "firewall worker: no timer runtime; rules are not watched");
            return apply_only(firewall, rx, counters, callbacks);
        }
    };
    let every = firewall.verify_every();
    let mut monitor = match firewall.monitor() {
        Ok(Some(monitor)) => runtime
            .block_on(async {
                // SAFETY: the monitor owns its descriptor and neither
                // replaces nor closes it while the AsyncFd holds it.
                unsafe { AsyncFd::register_with_interest(monitor, Interest::READABLE) }
                    .map_err(std::io::Error::from)
            })
            .inspect_err(|err| error!(error = %err, "cannot watch firewall notifications"))
            .ok(),
        Ok(None) => None,
        Err(err) => {
            error!(backend = firewall.name(), error = %err, "cannot watch firewall notifications; checking periodically only");
            None
        }
    };
    let mut next_check = Instant::now() + every.unwrap_or(IDLE);
    let mut last_check: Option<Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut pending = Notice::Nothing;
    loop {
        let wake = match pending {
            Notice::Nothing => runtime.block_on(async {
                tokio::select! {
                    // Checks first, so a flood of changes cannot starve them.
                    biased;
                    () = tokio::time::sleep_until(next_check.into()) => {
                        Wake::Check(Notice::Changed, false)
                    }
                    notice = notified(&mut monitor) => {
                        debug!(?notice, "firewall notification concerns our rules");
                        Wake::Check(notice, true)
                    }
                    Some(request) = requests.recv() => Wake::Reconfigure(request),
                    change = rx.recv() => change.map_or(Wake::Closed, Wake::Change),
                }
            }),
            notice => {
                pending = Notice::Nothing;
                Wake::Check(notice, true)
            }
        };
        match wake {
            Wake::Closed => return,
            Wake::Change(first) => {
                batch.clear();
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(change) => batch.push(change),
                        Err(_) => break,
                    }
                }
                apply_batch(firewall, &batch, counters, callbacks);
                // Our own batch announced its element (nftables) or rule
                // (iptables-nft) deletions: drop those. A deletion in our
                // own table is never ours and is acted on at once; anything
                // else that came meanwhile waits for the periodic check.
                if repair::discard(&mut monitor) == Notice::Broken {
                    pending = Notice::Broken;
                }
            }
            Wake::Reconfigure((ports, udp_ports, reply)) => {
                let result = firewall.reconfigure(&ports, &udp_ports).map(|kept| {
                    info!(
                        backend = firewall.name(),
                        ?ports,
                        ?udp_ports,
                        "protected ports changed"
                    );
                    if !kept {
                        apply_batch(firewall, &callbacks.live(), counters, callbacks);
                    }
                });
                let _ = reply.send(result);
                // Our own rule changes are announced too: drop them.
                if repair::discard(&mut monitor) == Notice::Broken {
                    pending = Notice::Broken;
                }
            }
            Wake::Check(notice, prompted) => {
                let now = Instant::now();
                let soon = last_check.map(|at| at + MIN_GAP).filter(|soon| now < *soon);
                if let Some(soon) = soon.filter(|_| prompted && notice < Notice::Broken) {
                    // Debounced: the periodic wake-up does a full check.
                    next_check = next_check.min(soon);
                    continue;
                }
                last_check = Some(now);
                let repaired = repair::check(firewall, callbacks, &mut monitor, notice);
                let wait = match repaired {
                    true => every.unwrap_or(IDLE),
                    false => RETRY_REPAIR,
                };
                next_check = Instant::now() + wait;
            }
        }
    }
}

/// Without a runtime: apply changes only (no watching).
fn apply_only(
    firewall: &mut dyn Firewall,
    mut rx: mpsc::Receiver<Change>,
    counters: &Counters,
    callbacks: &Callbacks,
) {
    while let Some(change) = rx.blocking_recv() {
        apply_batch(firewall, &[change], counters, callbacks);
    }
}

/// Returns once the monitor reports a change that concerns us (or lost
/// notifications); never without a monitor.
async fn notified(monitor: &mut Option<AsyncFd<NftMonitor>>) -> Notice {
    let Some(fd) = monitor else {
        return std::future::pending().await;
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return Notice::Changed;
        };
        match guard.try_io(|inner| inner.get_mut().drain()) {
            Ok(Ok(Notice::Nothing)) | Err(_) => {}
            Ok(Ok(notice)) => return notice,
            Ok(Err(_)) => return Notice::Changed,
        }
    }
}

fn apply_batch(
    firewall: &mut dyn Firewall,
    batch: &[Change],
    counters: &Counters,
    callbacks: &Callbacks,
) {
    let started = Instant::now();
    let results = firewall.apply(batch);
    counters.firewall_latency.observe(started.elapsed());
    for (change, result) in batch.iter().zip(results) {
        counters.record_firewall(result.is_err());
        let Err(err) = result else { continue };
        match *change {
            Change::Grant { ip, port, .. } => {
                error!(%ip, port, backend = firewall.name(), error = %err, "grant failed; access not opened");
                callbacks.failed_grant(ip, port);
            }
            Change::Revoke { ip, port } => {
                error!(%ip, port, backend = firewall.name(), error = %err, "revoke failed; the periodic check repairs the rules");
            }
        }
    }
}

mod repair;

#[cfg(test)]
mod tests;
