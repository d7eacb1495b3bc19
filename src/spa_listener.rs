//! The SPA listener: fwknop-compatible Single Packet Authorization packets
//! on UDP (`knock-server --spa`) -> [`Verifier`] -> grants in the server's
//! [`Engine`], beside (or instead of) the classic knock sequence.
//!
//! Why three stages:
//! - receivers (one async task per socket) copy each datagram and hand it to
//!   a bounded queue; when the queue is full the packet is dropped and
//!   counted, so a flood costs a copy and never grows memory;
//! - one verifier thread owns the [`ReplayCache`] (a single-owner file) and
//!   judges packets. The checks themselves take microseconds, but an
//!   accepted packet is fsync'd into the replay cache before it may open
//!   anything, which takes milliseconds on a disk: that must not stall the
//!   async reactor that also serves knocks and the gate;
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
//! (received, dropped at the queue, accepted, rejected, grants; served by
//! `--stats-listen` as the `spa_` fields, which `knock-bench --mode spa`
//! reads); each grant
//! line carries `latency_us` from receipt to the queued firewall change.
//! Every packet must be freshly encoded ([`crate::spa::encode`] draws new
//! randomness; a resent packet is a replay) with a current timestamp, and
//! distinct allow-IPs make distinct grants (the same one renews). Accepted
//! throughput is bound by the replay cache's fsync per packet: put
//! `--spa-replay-cache` on tmpfs to measure the rest.

mod setup;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

pub use crate::log_budget::{Admit, LogBudget};
use crate::server::{Engine, Listener};
use crate::spa::{
    Accepted, MAX_PACKET_LEN, PortSpec, Proto, RejectReason, Rejected, ReplayCache, Verdict,
    Verifier,
};
pub use setup::{
    DEFAULT_REPLAY_CACHE, SpaOptions, SpaSetup, SpaSetupError, open_tcp_ports, parse_max_age,
    stanzas_without_open_ports,
};

/// Packets waiting for the verifier beyond this are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 1024;

/// What the SPA listener has seen and decided.
#[derive(Debug, Default)]
pub struct SpaCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams dropped because the verifier queue was full.
    pub dropped: AtomicU64,
    /// Packets accepted.
    pub accepted: AtomicU64,
    /// Packets rejected.
    pub rejected: AtomicU64,
    /// `(ip, tcp port)` grants handed to the engine.
    pub grants: AtomicU64,
}

impl SpaCounters {
    /// The counters now (served by `--stats-listen`).
    pub fn snapshot(&self) -> crate::counters::SpaCountersSnapshot {
        crate::counters::SpaCountersSnapshot {
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            grants: self.grants.load(Relaxed),
        }
    }

    /// One line for the shutdown log.
    pub fn summary(&self) -> String {
        format!(
            "received={} dropped={} accepted={} rejected={} grants={}",
            self.received.load(Relaxed),
            self.dropped.load(Relaxed),
            self.accepted.load(Relaxed),
            self.rejected.load(Relaxed),
            self.grants.load(Relaxed)
        )
    }
}

/// What one accepted packet opens: tcp ports for an IP, for a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPlan {
    /// The address named in the packet (or its source for `0.0.0.0`).
    pub ip: IpAddr,
    /// TCP ports to open, in request order, without duplicates.
    pub tcp_ports: Vec<u16>,
    /// Requested specs that are not opened (udp, icmp, none).
    pub skipped: Vec<PortSpec>,
    /// How long access lasts (the packet's timeout capped by MAX_FW_TIMEOUT,
    /// or FW_ACCESS_TIMEOUT; at least one second).
    pub ttl: Duration,
}

impl GrantPlan {
    /// The plan for an accepted packet.
    pub fn for_accepted(accepted: &Accepted) -> Self {
        let mut tcp_ports = Vec::new();
        let mut skipped = Vec::new();
        for spec in &accepted.ports {
            match spec.proto {
                Proto::Tcp if !tcp_ports.contains(&spec.port) => tcp_ports.push(spec.port),
                Proto::Tcp => {}
                _ => skipped.push(*spec),
            }
        }
        GrantPlan {
            ip: IpAddr::V4(accepted.allow_ip),
            tcp_ports,
            skipped,
            ttl: Duration::from_secs(u64::from(accepted.timeout_secs.max(1))),
        }
    }
}

/// The SPA listener, ready to run: bound sockets, the decoder, the cache.
#[derive(Debug)]
pub struct SpaListener {
    sockets: Vec<UdpSocket>,
    verifier: Verifier,
    replay: ReplayCache,
    counters: Arc<SpaCounters>,
}

struct Packet {
    bytes: Vec<u8>,
    source: IpAddr,
    received: Instant,
}

impl SpaListener {
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

    /// Runs until `stop` turns true, then drains what was queued.
    pub async fn run(self, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        let SpaListener {
            sockets,
            verifier,
            replay,
            counters,
        } = self;
        let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let (queue, packets) = sync_channel::<Packet>(QUEUE_CAPACITY);
        let (plans_tx, plans) = mpsc::channel::<(GrantPlan, Instant)>(QUEUE_CAPACITY);
        let verifier_thread = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("spa-verifier".into())
                .spawn(move || verify_loop(&verifier, replay, packets, &plans_tx, &counters))
        };
        let verifier_thread = match verifier_thread {
            Ok(thread) => thread,
            Err(err) => {
                warn!(error = %err, "cannot start the SPA verifier thread: SPA is off");
                return;
            }
        };
        let granter = tokio::spawn(carry_out(plans, engine, counters.clone()));
        info!(addrs = ?addrs, queue = QUEUE_CAPACITY, "spa listener ready");
        let mut receivers = tokio::task::JoinSet::new();
        for socket in sockets {
            receivers.spawn(receive(
                socket,
                queue.clone(),
                counters.clone(),
                stop.clone(),
            ));
        }
        drop(queue);
        while receivers.join_next().await.is_some() {}
        let _ = tokio::task::spawn_blocking(move || verifier_thread.join()).await;
        let _ = granter.await;
        info!(summary = %counters.summary(), "spa listener stopped");
    }
}

async fn receive(
    socket: UdpSocket,
    queue: SyncSender<Packet>,
    counters: Arc<SpaCounters>,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the largest valid packet, so an oversize one is
    // seen as such (and rejected as too long), not truncated to a valid size.
    let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
    let mut full_since: Option<Instant> = None;
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, source)) => {
                    counters.received.fetch_add(1, Relaxed);
                    let packet = Packet {
                        bytes: buf[..len].to_vec(),
                        source: source.ip().to_canonical(),
                        received: Instant::now(),
                    };
                    match queue.try_send(packet) {
                        Ok(()) => full_since = None,
                        Err(TrySendError::Full(_)) => {
                            counters.dropped.fetch_add(1, Relaxed);
                            if full_since.is_none() {
                                full_since = Some(Instant::now());
                                warn!(capacity = QUEUE_CAPACITY, "spa queue full: dropping packets");
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
                Err(err) => debug!(error = %err, "spa receive error"),
            },
            _ = stop.changed() => return,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn verify_loop(
    verifier: &Verifier,
    mut replay: ReplayCache,
    packets: Receiver<Packet>,
    plans: &mpsc::Sender<(GrantPlan, Instant)>,
    counters: &SpaCounters,
) {
    let mut budget = LogBudget::default();
    while let Ok(packet) = packets.recv() {
        let verdict = verifier.verify(&packet.bytes, packet.source, unix_now(), &mut replay);
        match verdict {
            Verdict::Accept(accepted) => {
                counters.accepted.fetch_add(1, Relaxed);
                let plan = GrantPlan::for_accepted(&accepted);
                let line = verifier.stanzas().get(accepted.stanza).map(|s| s.line);
                info!(
                    source = %packet.source,
                    allow_ip = %plan.ip,
                    ports = %join(&accepted.ports),
                    timeout_secs = plan.ttl.as_secs(),
                    stanza_line = line,
                    user = ?accepted.message.username,
                    "spa packet accepted"
                );
                if plans.blocking_send((plan, packet.received)).is_err() {
                    return;
                }
            }
            Verdict::Reject(rejected) => {
                counters.rejected.fetch_add(1, Relaxed);
                log_rejection(verifier, &rejected, packet.source, &mut budget);
            }
        }
    }
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
