//! The SPA listener: fwknop-compatible Single Packet Authorization packets
//! on UDP (`knock-server --spa`) -> [`Verifier`] -> grants in the server's
//! [`Engine`], beside (or instead of) the classic knock sequence.
//!
//! Why three stages:
//! - reader threads (one per core per socket) take datagrams straight from
//!   the socket and run the stateless checks (HMAC, decryption) in
//!   parallel; they read only as fast as packets are judged, so a burst
//!   waits in the kernel's receive buffer, never in a userspace queue that
//!   drops (`pipeline.rs`);
//! - one committer thread owns the [`ReplayCache`] (a single-owner file):
//!   the replay check-and-record per digest, then one fsync per batch
//!   before any grant of the batch. The fsync takes milliseconds on a disk:
//!   it must not stall the async reactor that also serves knocks and the
//!   gate, and one per batch (not per packet) keeps a burst's throughput;
//! - one async task carries accepted packets out through
//!   [`Engine::grant`], so SPA grants share the grant table and the expiry
//!   timer with sequence grants.
//!
//! Only `tcp/PORT` requests are opened (the firewall backends manage TCP
//! ports); `udp`, `icmp` and `none` requests are logged and skipped.
//! Rejections are logged with their reason code, never packet bytes or key
//! material. Rejections of packets that did not authenticate (anyone can
//! send those) go to info within a budget and to debug beyond it, with a
//! count of what was demoted, so a flood cannot flood the log.
//!
//! For a load generator's SPA mode: read [`SpaListener::counters`]
//! (received, dropped (always 0 now: drops happen in the kernel only),
//! accepted, rejected, grants; served by
//! `--stats-listen` as the `spa_` fields, which `knock-bench --mode spa`
//! reads); each grant
//! line carries `latency_us` from receipt to the queued firewall change.
//! Every packet must be freshly encoded ([`crate::spa::encode`] draws new
//! randomness; a resent packet is a replay) with a current timestamp, and
//! distinct allow-IPs make distinct grants (the same one renews).

mod capture_tap;
mod pipeline;
mod setup;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, error, info};

use crate::counters::SpaCounters;
use crate::log_budget::{Admit, LogBudget};
use crate::server::{Engine, Listener};
use crate::spa::{GrantPlan, PortSpec, RejectReason, Rejected, ReplayCache, Verifier};
// The pure policy lives in `crate::spa::policy`; re-exported for the daemon.
pub use setup::{DEFAULT_REPLAY_CACHE, SpaOptions, SpaSetup, SpaSetupError, parse_max_age};

pub use capture_tap::{CAPTURE_QUEUE, CapturedSpa, SpaTap};
pub use pipeline::BATCH_MAX;

/// Accepted packets waiting for the grant task; the committer blocks (and
/// so do the readers) when it is full, nothing is dropped.
const PLAN_QUEUE: usize = 1024;

/// The SPA listener, ready to run: bound sockets, the decoder, the cache.
#[derive(Debug)]
pub struct SpaListener {
    sockets: Vec<UdpSocket>,
    verifier: Verifier,
    replay: ReplayCache,
    counters: Arc<SpaCounters>,
    /// Packets a capture source heard on the SPA port (no sockets then).
    captured: Option<std::sync::mpsc::Receiver<capture_tap::CapturedSpa>>,
}

impl SpaListener {
    /// A listener without sockets, fed by a capture source through the
    /// returned [`SpaTap`] (`spa_listener/capture_tap.rs`).
    pub fn captured(verifier: Verifier, replay: ReplayCache) -> (Self, SpaTap) {
        let counters: Arc<SpaCounters> = Arc::default();
        let (tap, rx) = SpaTap::new(counters.clone());
        let listener = SpaListener {
            sockets: Vec::new(),
            verifier,
            replay,
            counters,
            captured: Some(rx),
        };
        (listener, tap)
    }

    /// A listener on `sockets` judging packets with `verifier`, recording
    /// accepted ones in `replay`.
    pub fn new(sockets: Vec<UdpSocket>, verifier: Verifier, replay: ReplayCache) -> Self {
        // Bursts wait in the kernel rather than being dropped before the
        // verifier sees them, as for the knock sockets.
        for socket in &sockets {
            crate::server::receiver::enlarge_buffer(socket);
        }
        SpaListener {
            sockets,
            verifier,
            replay,
            counters: Arc::default(),
            captured: None,
        }
    }

    /// The listener's counters (shared; read them while it runs).
    pub fn counters(&self) -> Arc<SpaCounters> {
        self.counters.clone()
    }

    /// The listener as a [`Listener`] for [`crate::server::run_with`].
    pub fn into_listener(self) -> Listener {
        Listener::new("spa listener", move |engine, stop| self.run(engine, stop))
    }

    /// Runs until `stop` turns true, then finishes the packets already
    /// handed to the committer.
    pub async fn run(self, engine: Arc<Engine>, stop: crate::shutdown::Shutdown) {
        let SpaListener {
            sockets,
            verifier,
            replay,
            counters,
            captured,
        } = self;
        let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let readers_per_socket = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_READERS_PER_SOCKET);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let (plans_tx, plans) = mpsc::channel::<(GrantPlan, Instant)>(PLAN_QUEUE);
        let granter = tokio::spawn(carry_out(plans, engine, counters.clone()));
        let ended = Arc::new(Notify::new());
        let threads = match start_threads(
            sockets,
            captured,
            readers_per_socket,
            Arc::new(verifier),
            replay,
            plans_tx,
            &counters,
            &Lifeline {
                stop: stop_flag.clone(),
                ended: ended.clone(),
            },
        ) {
            Ok(threads) => threads,
            Err(err) => {
                stop_flag.store(true, Relaxed);
                // Returning early ends the listener: the server stops.
                error!(error = %err, "cannot start the SPA threads");
                return;
            }
        };
        info!(
            addrs = ?addrs,
            readers_per_socket,
            batch_max = BATCH_MAX,
            "spa listener ready"
        );
        // Until the stop signal, or a thread that ends before it (a panic):
        // then the listener ends, and with it the server (supervision).
        if !stop.is_stopped() {
            tokio::select! {
                () = stop.stopped() => {}
                () = ended.notified() => {
                    error!("an SPA thread ended unexpectedly: stopping the listener");
                }
            }
        }
        stop_flag.store(true, Relaxed);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        let _ = granter.await;
        info!(summary = %counters.summary(), "spa listener stopped");
    }
}

/// Readers per socket at most (one per core up to this).
const MAX_READERS_PER_SOCKET: usize = 8;

/// Starts the committer and the readers; they stop when `stop` is set.
#[allow(clippy::too_many_arguments)]
fn start_threads(
    sockets: Vec<UdpSocket>,
    captured: Option<std::sync::mpsc::Receiver<capture_tap::CapturedSpa>>,
    readers_per_socket: usize,
    verifier: Arc<Verifier>,
    replay: ReplayCache,
    plans: mpsc::Sender<(GrantPlan, Instant)>,
    counters: &Arc<SpaCounters>,
    lifeline: &Lifeline,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let Lifeline { stop, ended } = lifeline;
    let budget = Arc::new(Mutex::new(LogBudget::default()));
    let (to_committer, from_readers) = sync_channel(2 * BATCH_MAX);
    let mut threads = Vec::new();
    {
        let (verifier, counters, budget) = (verifier.clone(), counters.clone(), budget.clone());
        let ended = EndGuard(ended.clone());
        threads.push(
            std::thread::Builder::new()
                .name("spa-commit".into())
                .spawn(move || {
                    let _ended = ended;
                    pipeline::commit_loop(
                        &verifier,
                        replay,
                        &from_readers,
                        &plans,
                        &counters,
                        &budget,
                    )
                })?,
        );
    }
    let readers = Readers {
        verifier: verifier.clone(),
        counters: counters.clone(),
        budget: budget.clone(),
        stop: stop.clone(),
        ended: ended.clone(),
    };
    if let Some(captured) = captured {
        let captured = Arc::new(Mutex::new(captured));
        for _ in 0..readers_per_socket {
            let (captured, to_committer) = (captured.clone(), to_committer.clone());
            threads.push(readers.spawn("spa-captured", move |shared| {
                pipeline::captured_loop(&captured, &to_committer, shared)
            })?);
        }
    }
    for socket in sockets {
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(pipeline::READ_TIMEOUT))?;
        for _ in 0..readers_per_socket {
            let (socket, to_committer) = (socket.try_clone()?, to_committer.clone());
            threads.push(readers.spawn("spa-read", move |shared| {
                pipeline::read_loop(&socket, &to_committer, shared)
            })?);
        }
    }
    Ok(threads)
}

/// What every SPA reader thread shares, captured or socket alike.
struct Readers {
    verifier: Arc<Verifier>,
    counters: Arc<SpaCounters>,
    budget: Arc<Mutex<LogBudget>>,
    stop: Arc<AtomicBool>,
    ended: Arc<Notify>,
}

impl Readers {
    /// Starts one reader thread named `name` running `read` over the shared
    /// state; the listener hears when it ends (return or panic).
    fn spawn(
        &self,
        name: &str,
        read: impl FnOnce(&pipeline::Shared<'_>) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (verifier, counters, budget, stop) = (
            self.verifier.clone(),
            self.counters.clone(),
            self.budget.clone(),
            self.stop.clone(),
        );
        let ended = EndGuard(self.ended.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ended = ended;
                read(&pipeline::Shared {
                    verifier: &verifier,
                    counters: &counters,
                    budget: &budget,
                    stop: &stop,
                })
            })
    }
}

/// What the SPA threads share with the listener: the flag that stops them
/// and the signal that one of them ended.
struct Lifeline {
    stop: Arc<AtomicBool>,
    ended: Arc<Notify>,
}

/// Held by each SPA thread: tells the listener when the thread ends, by
/// return or by panic (dropped while unwinding).
struct EndGuard(Arc<Notify>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_rejection(verifier: &Verifier, rejected: &Rejected, source: IpAddr, budget: &mut LogBudget) {
    let reason = &rejected.reason;
    let code = reason.code();
    let line = rejected
        .stanza
        .and_then(|i| verifier.stanzas().get(i))
        .map(|s| s.line);
    match reason {
        RejectReason::NatNotEnabled => {
            info!(%source, code, stanza_line = line, "spa NAT access request refused: portknock does not forward to inside hosts (NAT)");
            return;
        }
        RejectReason::CommandNotEnabled => {
            info!(%source, code, stanza_line = line, "spa command message refused: portknock never runs commands");
            return;
        }
        _ => {}
    }
    // A decoded message means the sender holds a key: always worth a line.
    if rejected.message.is_some() {
        info!(%source, code, reason = %reason, stanza_line = line, "spa packet rejected");
        return;
    }
    match budget.admit(Instant::now()) {
        Admit::Info { demoted_before } => {
            if demoted_before > 0 {
                info!(
                    demoted = demoted_before,
                    "spa rejections logged at debug only (log budget exceeded)"
                );
            }
            info!(%source, code, reason = %reason, "spa packet rejected");
        }
        Admit::Debug => debug!(%source, code, reason = %reason, "spa packet rejected"),
    }
}

async fn carry_out(
    mut plans: mpsc::Receiver<(GrantPlan, Instant)>,
    engine: Arc<Engine>,
    counters: Arc<SpaCounters>,
) {
    while let Some((plan, received)) = plans.recv().await {
        // After the local cache (the committer's), before any grant.
        if !engine.spa_fleet_admits(&plan).await {
            counters.rejected.fetch_add(1, Relaxed);
            continue;
        }
        for spec in &plan.skipped {
            info!(ip = %plan.ip, port = %spec, "spa request not opened: portknock opens tcp ports only");
        }
        for &port in &plan.tcp_ports {
            let change = engine.grant(plan.ip, port, plan.ttl).await;
            counters.grants.fetch_add(1, Relaxed);
            // A refusal at --max-grants is counted and logged by the engine.
            let Ok(change) = change else { continue };
            let word = match change {
                crate::grants::GrantChange::New => "access granted",
                crate::grants::GrantChange::Renewed => "access renewed",
            };
            info!(
                ip = %plan.ip,
                port,
                access_secs = plan.ttl.as_secs(),
                via = "spa",
                latency_us = received.elapsed().as_micros() as u64,
                "{word}"
            );
        }
        engine.publish_spa(&plan);
    }
}

fn join(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .map(PortSpec::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
