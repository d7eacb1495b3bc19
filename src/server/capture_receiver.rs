//! The capture receiver: one task that reads a capture source (NFLOG or
//! AF_PACKET, `capture.rs`) instead of knock sockets, and hands what it
//! hears to the engine and the SPA pipeline.
//!
//! Why a receiver of its own: with a capture source no knock or SPA socket
//! is bound (that is the point: the host answers for those ports as for any
//! closed port), and a packet may be a UDP knock, a TCP knock, something
//! else sent to a knock port, or an SPA packet. Each pass:
//!
//! - awaits the source's descriptor through tokio (idle costs nothing),
//!   reads the clock, then drains the source in batches until it is empty
//!   (or this pass's room is used up: see below);
//! - parses each packet (`capture/ip.rs`); UDP to the SPA port goes to the
//!   SPA readers ([`SpaTap`], never blocking); UDP to another port and TCP
//!   with SYN set and ACK clear are knocks; any other TCP segment (ACK,
//!   RST, SYN+ACK, ...) is ignored: it neither advances nor breaks a
//!   sequence (knockd's `TCPFlags = syn,!ack`);
//! - puts the knocks in kernel-stamp order with [`KnockOrder`] (a source
//!   with several sockets, one per interface, reads them one after the
//!   other) and judges what it releases under one lock of the engine,
//!   as the socket receiver does (`order.rs` states the guarantee: every
//!   drain that returns 0 means every queue was read past the pass's start);
//! - counts UDP and TCP knocks, ignored packets, SPA packets and the
//!   kernel's drops for this reader (`capture_*` counters).
//!
//! A pass stops draining when fewer than [`HEADROOM`] knocks fit in its
//! buffer; what the source still holds was stamped after the last knock
//! read, which the order then holds back ([`KnockOrder::more_after`]).
//! Allocation-free per packet: the source's buffers, the order's buffer
//! and the SPA queue's slots are all allocated once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::order::{KnockOrder, PassClock};
use super::{Engine, GrantBatch, Reload};
use crate::capture::{CaptureSource, RawPacket, ip};
use crate::config::{KnockPort, Proto};
use crate::counters::Counters;
use crate::shutdown::Shutdown;
use crate::spa_listener::SpaTap;

/// Knocks read in one pass before the receiver judges them (about: a
/// pass stops draining below [`HEADROOM`] free slots).
pub const PER_PASS: usize = 1024;
/// Free slots a pass keeps for one more drain (a source's batch, times its
/// sockets, stays below this).
pub const HEADROOM: usize = 256;

/// Where captured SPA packets go: the SPA port and the listener's tap.
#[derive(Debug, Clone)]
pub struct SpaRoute {
    /// The SPA listener's UDP port.
    pub port: u16,
    /// The SPA listener's entry for captured payloads.
    pub tap: SpaTap,
}

/// What one pass heard, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    udp: u64,
    tcp: u64,
    ignored: u64,
    spa: u64,
    /// Stamp of the last knock pushed.
    last_stamp: u64,
}

/// Routes one captured packet: a knock into `order`, an SPA payload to
/// `spa`, anything else counted as ignored. `now` dates a packet the
/// kernel did not stamp.
fn route(
    raw: RawPacket<'_>,
    spa: Option<&SpaRoute>,
    order: &mut KnockOrder,
    tally: &mut Tally,
    now: u64,
) {
    let Some(heard) = ip::parse(raw.ip) else {
        tally.ignored += 1;
        return;
    };
    let source = heard.source.to_canonical();
    if let Some(spa) = spa.filter(|s| heard.proto == Proto::Udp && s.port == heard.port) {
        spa.tap.offer(heard.payload, source);
        tally.spa += 1;
        return;
    }
    if !ip::is_knock(&heard) {
        tally.ignored += 1;
        return;
    }
    let stamp = if raw.stamp_ns == 0 { now } else { raw.stamp_ns };
    let knock = KnockPort {
        port: heard.port,
        proto: heard.proto,
    };
    order.push_knock(source, knock, stamp);
    match heard.proto {
        Proto::Udp => tally.udp += 1,
        Proto::Tcp => tally.tcp += 1,
    }
    tally.last_stamp = stamp;
}

/// The source's descriptor, registered with tokio while the task owns the
/// source.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Drains `source` for one pass into `order`; returns whether the source
/// was found empty.
fn drain_pass(
    source: &mut dyn CaptureSource,
    spa: Option<&SpaRoute>,
    order: &mut KnockOrder,
    tally: &mut Tally,
    now: u64,
) -> bool {
    loop {
        let read = source.drain(&mut |raw| route(raw, spa, order, tally, now));
        match read {
            Ok(0) => return true,
            Ok(_) if order.room() < HEADROOM => {
                order.more_after(tally.last_stamp);
                return false;
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                debug!(error = %err, "capture read error");
                return true;
            }
        }
    }
}

/// Receives knocks and SPA packets from `source` until `stop` changes (see
/// the module doc). A [`Reload`] is applied between two passes: what is
/// held is judged under the old rules first. The capture's ports are
/// fixed when it opens: the daemon refuses a reload that needs others.
pub async fn receive_captured(
    mut source: Box<dyn CaptureSource>,
    engine: Arc<Engine>,
    counters: Arc<Counters>,
    spa: Option<SpaRoute>,
    stop: Shutdown,
    mut reloads: mpsc::Receiver<Reload>,
) {
    let kind = source.kind();
    // SAFETY: `source` owns the descriptor and outlives `fd` (declared
    // later, dropped first); nothing closes or replaces it meanwhile.
    let fd = match unsafe {
        AsyncFd::register_with_interest(Fd(source.as_raw_fd()), Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(err) => {
            warn!(error = %err, ?kind, "cannot watch the capture source; not listening");
            return;
        }
    };
    let mut order = KnockOrder::new(PER_PASS);
    let mut batch = GrantBatch::default();
    loop {
        let mut guard = tokio::select! {
            ready = fd.readable() => match ready {
                Ok(guard) => guard,
                Err(err) => {
                    warn!(error = %err, ?kind, "capture source failed; not listening");
                    return;
                }
            },
            Some(reload) = reloads.recv() => {
                let clock = PassClock::now(Instant::now().into_std());
                order.begin(clock.real);
                let n = order.release();
                if n > 0 {
                    engine.handle_knocks(&order.pending()[..n], clock, &mut batch).await;
                    order.consume(n);
                }
                let kept = engine.reconfigure(&reload.settings).await;
                let _ = reload.done.send(Ok(kept));
                continue;
            }
            _ = stop.stopped() => return,
        };
        let clock = PassClock::now(Instant::now().into_std());
        order.begin(clock.real);
        let mut tally = Tally::default();
        let empty = drain_pass(
            source.as_mut(),
            spa.as_ref(),
            &mut order,
            &mut tally,
            clock.real,
        );
        let knocks = tally.udp + tally.tcp;
        if knocks > 0 {
            counters.record_packets(knocks);
        }
        counters.record_capture(tally.udp, tally.tcp, tally.ignored, tally.spa);
        counters.set_capture_drops(source.kernel_drops());
        let n = order.release();
        if n > 0 {
            engine
                .handle_knocks(&order.pending()[..n], clock, &mut batch)
                .await;
            order.consume(n);
        }
        if empty && order.held() == 0 {
            guard.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests;
