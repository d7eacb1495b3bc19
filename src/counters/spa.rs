//! The SPA listener's counters: received, accepted, rejected, grants.
//! Shared atomics the listener's threads bump; a snapshot is served by the
//! stats endpoint under `spa_` names.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the SPA listener has seen and decided.
#[derive(Debug, Default)]
pub struct SpaCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Packets dropped inside the server: 0 with bound sockets (the
    /// backlog is kept in the kernel); with a capture source, SPA packets
    /// that found the readers' queue full (`spa_listener/capture_tap.rs`).
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
    pub fn snapshot(&self) -> SpaCountersSnapshot {
        SpaCountersSnapshot {
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

/// A copy of the SPA listener's counters
/// ([`SpaCounters`]), served by the stats
/// endpoint after the knock counters under `spa_` names when SPA is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaCountersSnapshot {
    /// SPA datagrams received.
    pub received: u64,
    /// Datagrams dropped because the verifier queue was full.
    pub dropped: u64,
    /// Packets accepted.
    pub accepted: u64,
    /// Packets rejected.
    pub rejected: u64,
    /// `(ip, tcp port)` grants handed to the engine.
    pub grants: u64,
}

impl SpaCountersSnapshot {
    /// The field names (with their `spa_` prefix) and values.
    pub fn fields(&self) -> [(&'static str, u64); 5] {
        [
            ("spa_received", self.received),
            ("spa_dropped", self.dropped),
            ("spa_accepted", self.accepted),
            ("spa_rejected", self.rejected),
            ("spa_grants", self.grants),
        ]
    }
}
