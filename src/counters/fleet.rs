//! The fleet's counters: connection state and what crossed the bus.
//! Shared atomics bumped by the fleet task and the engine; a snapshot is
//! served by the stats endpoint under `fleet_` names.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// What the fleet link has seen and done.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Set when the daemon runs a fleet link: the stats line then has
    /// the `fleet_` fields.
    pub enabled: AtomicBool,
    /// 1 while connected to NATS with the buckets ready, else 0.
    pub connected: AtomicU64,
    /// Times the connection was (re)established.
    pub connects: AtomicU64,
    /// Records written to the bucket.
    pub published: AtomicU64,
    /// Records waiting to be published (engine unreachable).
    pub pending: AtomicU64,
    /// Records dropped unpublished (queue full, or ended while waiting).
    pub publish_dropped: AtomicU64,
    /// Remote grants applied here (and revocations).
    pub applied: AtomicU64,
    /// Records skipped: ended, own, or for a door not shared here.
    pub skipped: AtomicU64,
    /// Records that failed verification (forged, unsigned, malformed).
    pub rejected_forged: AtomicU64,
    /// SPA packets refused because another node accepted them first.
    pub replay_refused: AtomicU64,
    /// Fleet grants refused because the engine was unreachable (policy
    /// `refuse`).
    pub refused_unreachable: AtomicU64,
    /// Records applied clamped because their end was implausibly late.
    pub skew_warnings: AtomicU64,
}

/// A copy of [`FleetCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // the fields of FleetCounters
pub struct FleetCountersSnapshot {
    pub connected: u64,
    pub connects: u64,
    pub published: u64,
    pub pending: u64,
    pub publish_dropped: u64,
    pub applied: u64,
    pub skipped: u64,
    pub rejected_forged: u64,
    pub replay_refused: u64,
    pub refused_unreachable: u64,
    pub skew_warnings: u64,
}

impl FleetCounters {
    /// The counters now.
    pub fn snapshot(&self) -> FleetCountersSnapshot {
        FleetCountersSnapshot {
            connected: self.connected.load(Relaxed),
            connects: self.connects.load(Relaxed),
            published: self.published.load(Relaxed),
            pending: self.pending.load(Relaxed),
            publish_dropped: self.publish_dropped.load(Relaxed),
            applied: self.applied.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            rejected_forged: self.rejected_forged.load(Relaxed),
            replay_refused: self.replay_refused.load(Relaxed),
            refused_unreachable: self.refused_unreachable.load(Relaxed),
            skew_warnings: self.skew_warnings.load(Relaxed),
        }
    }
}

impl FleetCountersSnapshot {
    /// `(name, value)` pairs under `fleet_` names, for the stats line.
    pub fn fields(&self) -> [(&'static str, u64); 11] {
        [
            ("fleet_connected", self.connected),
            ("fleet_connects", self.connects),
            ("fleet_published", self.published),
            ("fleet_pending", self.pending),
            ("fleet_publish_dropped", self.publish_dropped),
            ("fleet_applied", self.applied),
            ("fleet_skipped", self.skipped),
            ("fleet_rejected_forged", self.rejected_forged),
            ("fleet_replay_refused", self.replay_refused),
            ("fleet_refused_unreachable", self.refused_unreachable),
            ("fleet_skew_warnings", self.skew_warnings),
        ]
    }
}
