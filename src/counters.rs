//! The server's counters and their wire format, in one room: what it
//! received and decided, what the firewall did, and what the SPA listener
//! saw. Lock-free atomics, cheap on the hot path, read by logs, the stats
//! endpoint ([`crate::stats`]) and benchmarks (knock-bench parses the
//! line back with the same code).
//!
//! | file | concept |
//! |---|---|
//! | `counters.rs` | [`Counters`], [`CountersSnapshot`]: the knock path and the firewall |
//! | `fleet.rs` | [`FleetCounters`]: the fleet link (NATS), issue 15 |
//! | `spa.rs` | [`SpaCounters`], [`SpaCountersSnapshot`]: the SPA listener |
//! | `latency.rs` | [`latency::Latency`]: the firewall's batch latency histogram |
//! | `wire.rs` | the stats line: one flat JSON object, [`stats_line`], `to_json`/`from_json` |

mod fleet;
pub mod latency;
mod spa;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::knock::Verdict;

pub use fleet::{FleetCounters, FleetCountersSnapshot};
pub use spa::{SpaCounters, SpaCountersSnapshot};
pub use wire::{json_object, stats_line};

/// Live counters, shared between the server's tasks.
#[derive(Debug, Default)]
pub struct Counters {
    packets: AtomicU64,
    progress: AtomicU64,
    grants: AtomicU64,
    lockouts: AtomicU64,
    ignored: AtomicU64,
    expiries: AtomicU64,
    evictions: AtomicU64,
    tracked: AtomicU64,
    firewall_ops: AtomicU64,
    firewall_failures: AtomicU64,
    batches: AtomicU64,
    table_bytes: AtomicU64,
    grants_refused: AtomicU64,
    capture_udp: AtomicU64,
    capture_tcp: AtomicU64,
    capture_ignored: AtomicU64,
    capture_spa: AtomicU64,
    capture_drops: AtomicU64,
    /// How long firewall batches took (for the metrics endpoint).
    pub firewall_latency: latency::Latency,
    /// The fleet link's counters (all zero without `[fleet]`).
    pub fleet: FleetCounters,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Knock datagrams received.
    pub packets: u64,
    /// Knocks that advanced a sequence without completing it.
    pub progress: u64,
    /// Completed sequences (new grants and renewals).
    pub grants: u64,
    /// Wrong knocks.
    pub lockouts: u64,
    /// Knocks ignored during a lockout.
    pub ignored: u64,
    /// Grants that ended.
    pub expiries: u64,
    /// Tracked entries evicted because the table was full.
    pub evictions: u64,
    /// Source IPs tracked now.
    pub tracked: u64,
    /// Firewall changes applied.
    pub firewall_ops: u64,
    /// Firewall changes that failed.
    pub firewall_failures: u64,
    /// Receive batches (one `recvmmsg` each) that held knocks.
    pub batches: u64,
    /// Heap bytes held by the tracking table.
    pub table_bytes: u64,
    /// New grants refused because `--max-grants` were open.
    pub grants_refused: u64,
    /// Capture: UDP knocks heard.
    pub capture_udp: u64,
    /// Capture: TCP knocks (SYN without ACK) heard.
    pub capture_tcp: u64,
    /// Capture: packets that are no knock (other TCP flags, unparsable).
    pub capture_ignored: u64,
    /// Capture: SPA packets handed to the SPA pipeline.
    pub capture_spa: u64,
    /// Capture: packets the kernel dropped for the reader (NFLOG
    /// overruns and sequence gaps, `PACKET_STATISTICS`).
    pub capture_drops: u64,
}

impl Counters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a received knock datagram.
    pub fn record_packet(&self) {
        self.record_packets(1);
    }

    /// Counts a batch of `n` received knock datagrams.
    pub fn record_packets(&self, n: u64) {
        self.packets.fetch_add(n, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }

    /// Counts a decision of the core.
    pub fn record_verdict(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Progress { .. } => &self.progress,
            Verdict::Grant { .. } => &self.grants,
            Verdict::LockedOut { .. } => &self.lockouts,
            // Outside a door's allow list: ignored for that door.
            Verdict::Ignored { .. } | Verdict::NotAllowed { .. } => &self.ignored,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a new grant refused at the `--max-grants` bound.
    pub fn record_grant_refused(&self) {
        self.grants_refused.fetch_add(1, Relaxed);
    }

    /// Counts an ended grant.
    pub fn record_expiry(&self) {
        self.expiries.fetch_add(1, Relaxed);
    }

    /// Records the size of the tracking table, its evictions so far, and
    /// the bytes it holds.
    pub fn set_table(&self, tracked: usize, evictions: u64, bytes: usize) {
        self.tracked.store(tracked as u64, Relaxed);
        self.evictions.store(evictions, Relaxed);
        self.table_bytes.store(bytes as u64, Relaxed);
    }

    /// Counts a firewall change and whether it failed.
    pub fn record_firewall(&self, failed: bool) {
        self.firewall_ops.fetch_add(1, Relaxed);
        if failed {
            self.firewall_failures.fetch_add(1, Relaxed);
        }
    }

    /// Counts what a capture pass heard: UDP and TCP knocks, packets
    /// ignored, SPA packets handed on.
    pub fn record_capture(&self, udp: u64, tcp: u64, ignored: u64, spa: u64) {
        for (counter, n) in [
            (&self.capture_udp, udp),
            (&self.capture_tcp, tcp),
            (&self.capture_ignored, ignored),
            (&self.capture_spa, spa),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }

    /// Records the capture source's kernel drops so far (a running total).
    pub fn set_capture_drops(&self, drops: u64) {
        self.capture_drops.store(drops, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets: self.packets.load(Relaxed),
            progress: self.progress.load(Relaxed),
            grants: self.grants.load(Relaxed),
            lockouts: self.lockouts.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
            expiries: self.expiries.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            tracked: self.tracked.load(Relaxed),
            firewall_ops: self.firewall_ops.load(Relaxed),
            firewall_failures: self.firewall_failures.load(Relaxed),
            batches: self.batches.load(Relaxed),
            table_bytes: self.table_bytes.load(Relaxed),
            grants_refused: self.grants_refused.load(Relaxed),
            capture_udp: self.capture_udp.load(Relaxed),
            capture_tcp: self.capture_tcp.load(Relaxed),
            capture_ignored: self.capture_ignored.load(Relaxed),
            capture_spa: self.capture_spa.load(Relaxed),
            capture_drops: self.capture_drops.load(Relaxed),
        }
    }
}

impl CountersSnapshot {
    /// The field names and values, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 18] {
        [
            ("packets", self.packets),
            ("progress", self.progress),
            ("grants", self.grants),
            ("lockouts", self.lockouts),
            ("ignored", self.ignored),
            ("expiries", self.expiries),
            ("evictions", self.evictions),
            ("tracked", self.tracked),
            ("firewall_ops", self.firewall_ops),
            ("firewall_failures", self.firewall_failures),
            ("batches", self.batches),
            ("table_bytes", self.table_bytes),
            ("grants_refused", self.grants_refused),
            ("capture_udp", self.capture_udp),
            ("capture_tcp", self.capture_tcp),
            ("capture_ignored", self.capture_ignored),
            ("capture_spa", self.capture_spa),
            ("capture_drops", self.capture_drops),
        ]
    }

    /// Decisions made: every received knock gets exactly one.
    pub fn decisions(&self) -> u64 {
        self.progress + self.grants + self.lockouts + self.ignored
    }
}

impl fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}
