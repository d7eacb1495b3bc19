//! The SPA pipeline's second entry: packets a capture source heard on the
//! SPA port (`server/capture_receiver.rs`), instead of datagrams read from
//! a bound socket.
//!
//! The capture receiver must never block (it also hears the knocks), so
//! it offers each payload to a bounded queue of fixed-size slots
//! ([`CAPTURE_QUEUE`], allocated once by the channel): a full queue drops
//! the packet and counts it in `spa_dropped`. The readers take from the
//! queue and run the same checks as for a socket's datagrams.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::counters::SpaCounters;
use crate::spa::MAX_PACKET_LEN;

/// Captured SPA packets waiting for a reader; past this they are dropped
/// (counted): a flood of junk on the SPA port costs packets, never memory.
pub const CAPTURE_QUEUE: usize = 1024;

/// One captured SPA payload: up to one byte more than the largest valid
/// packet, so an oversize one is still seen as too long.
pub struct CapturedSpa {
    len: usize,
    source: IpAddr,
    bytes: [u8; MAX_PACKET_LEN + 1],
}

impl CapturedSpa {
    /// The payload (up to one byte past the largest valid packet).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The sender.
    pub fn source(&self) -> IpAddr {
        self.source
    }
}

/// Where a capture receiver hands SPA payloads to the SPA listener.
#[derive(Clone)]
pub struct SpaTap {
    tx: SyncSender<CapturedSpa>,
    counters: Arc<SpaCounters>,
}

impl std::fmt::Debug for SpaTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaTap").finish_non_exhaustive()
    }
}

impl SpaTap {
    /// A tap counting into `counters`, and the end its readers take from.
    pub(crate) fn new(counters: Arc<SpaCounters>) -> (Self, Receiver<CapturedSpa>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(CAPTURE_QUEUE);
        (Self { tx, counters }, rx)
    }

    /// Hands `payload` from `source` to the SPA readers without waiting;
    /// false (counted as dropped) if they are behind or gone.
    pub fn offer(&self, payload: &[u8], source: IpAddr) -> bool {
        let len = payload.len().min(MAX_PACKET_LEN + 1);
        let mut packet = CapturedSpa {
            len,
            source,
            bytes: [0; MAX_PACKET_LEN + 1],
        };
        packet.bytes[..len].copy_from_slice(&payload[..len]);
        match self.tx.try_send(packet) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }
}

/// The next captured packet into `buf` (its length and sender), waiting at
/// most the readers' timeout (then `TimedOut`, so the reader looks at its
/// stop flag).
pub(super) fn take(
    captured: &Mutex<Receiver<CapturedSpa>>,
    buf: &mut [u8],
) -> io::Result<(usize, IpAddr)> {
    let next = {
        let rx = captured.lock().unwrap_or_else(|p| p.into_inner());
        rx.recv_timeout(super::pipeline::READ_TIMEOUT)
    };
    match next {
        Ok(packet) => {
            let len = packet.len.min(buf.len());
            buf[..len].copy_from_slice(&packet.bytes[..len]);
            Ok((len, packet.source))
        }
        Err(RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
        Err(RecvTimeoutError::Disconnected) => {
            // The capture receiver is gone (the server is stopping).
            std::thread::sleep(super::pipeline::READ_TIMEOUT);
            Err(io::ErrorKind::TimedOut.into())
        }
    }
}
