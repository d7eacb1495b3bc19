//! The server's counters: what it received and decided, and what the
//! firewall did. Lock-free atomics, cheap on the hot path, read by logs and
//! benchmarks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::knock::Verdict;

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
}

impl Counters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a received knock datagram.
    pub fn record_packet(&self) {
        self.packets.fetch_add(1, Relaxed);
    }

    /// Counts a decision of the core.
    pub fn record_verdict(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Progress { .. } => &self.progress,
            Verdict::Grant { .. } => &self.grants,
            Verdict::LockedOut { .. } => &self.lockouts,
            Verdict::Ignored { .. } => &self.ignored,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts an ended grant.
    pub fn record_expiry(&self) {
        self.expiries.fetch_add(1, Relaxed);
    }

    /// Records the size of the tracking table and its evictions so far.
    pub fn set_tracked(&self, tracked: usize, evictions: u64) {
        self.tracked.store(tracked as u64, Relaxed);
        self.evictions.store(evictions, Relaxed);
    }

    /// Counts a firewall change and whether it failed.
    pub fn record_firewall(&self, failed: bool) {
        self.firewall_ops.fetch_add(1, Relaxed);
        if failed {
            self.firewall_failures.fetch_add(1, Relaxed);
        }
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
        }
    }
}

impl fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packets={} progress={} grants={} lockouts={} ignored={} expiries={} evictions={} tracked={} firewall_ops={} firewall_failures={}",
            self.packets,
            self.progress,
            self.grants,
            self.lockouts,
            self.ignored,
            self.expiries,
            self.evictions,
            self.tracked,
            self.firewall_ops,
            self.firewall_failures
        )
    }
}
