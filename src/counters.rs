//! The server's counters: what it received and decided, and what the
//! firewall did. Lock-free atomics, cheap on the hot path, read by logs and
//! benchmarks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::knock::Verdict;

/// A copy of the SPA listener's counters
/// ([`SpaCounters`](crate::spa_listener::SpaCounters)), served by the stats
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

    /// The `spa_` fields of a stats line; None if it is not a stats line or
    /// has none of them (the server runs without SPA).
    pub fn from_json(text: &str) -> Option<Self> {
        let mut snapshot = Self::default();
        let mut seen = false;
        for (name, value) in json_fields(text)? {
            let field = match name {
                "spa_received" => &mut snapshot.received,
                "spa_dropped" => &mut snapshot.dropped,
                "spa_accepted" => &mut snapshot.accepted,
                "spa_rejected" => &mut snapshot.rejected,
                "spa_grants" => &mut snapshot.grants,
                _ => continue,
            };
            *field = value;
            seen = true;
        }
        seen.then_some(snapshot)
    }
}

/// A flat JSON object of counters: `{"a":1,"b":2}`.
pub fn json_object(fields: &[(&str, u64)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The name/value pairs of a flat JSON object of counters; None if it is
/// not one.
fn json_fields(text: &str) -> Option<Vec<(&str, u64)>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    body.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once(':')?;
            Some((name.trim().trim_matches('"'), value.trim().parse().ok()?))
        })
        .collect()
}

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
        }
    }
}

impl CountersSnapshot {
    /// The field names and values, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
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
        ]
    }

    /// The counters as one line of JSON: `{"packets":1,...}`.
    pub fn to_json(&self) -> String {
        json_object(&self.fields())
    }

    /// Parses what [`CountersSnapshot::to_json`] wrote; unknown fields are
    /// skipped, missing ones stay zero. None if it is not such a line.
    pub fn from_json(text: &str) -> Option<Self> {
        let mut snapshot = Self::default();
        for (name, value) in json_fields(text)? {
            let field = match name {
                "packets" => &mut snapshot.packets,
                "progress" => &mut snapshot.progress,
                "grants" => &mut snapshot.grants,
                "lockouts" => &mut snapshot.lockouts,
                "ignored" => &mut snapshot.ignored,
                "expiries" => &mut snapshot.expiries,
                "evictions" => &mut snapshot.evictions,
                "tracked" => &mut snapshot.tracked,
                "firewall_ops" => &mut snapshot.firewall_ops,
                "firewall_failures" => &mut snapshot.firewall_failures,
                "batches" => &mut snapshot.batches,
                "table_bytes" => &mut snapshot.table_bytes,
                "grants_refused" => &mut snapshot.grants_refused,
                _ => continue,
            };
            *field = value;
        }
        Some(snapshot)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_skips_unknown_fields() {
        let counters = Counters::new();
        counters.record_packets(5);
        counters.set_table(3, 2, 4096);
        counters.record_firewall(true);
        let snapshot = counters.snapshot();
        let json = snapshot.to_json();
        assert!(json.starts_with("{\"packets\":5,"), "{json}");
        assert_eq!(CountersSnapshot::from_json(&json), Some(snapshot));
        let extra = json.replace('}', ",\"future\":9}");
        assert_eq!(CountersSnapshot::from_json(&extra), Some(snapshot));
        assert_eq!(CountersSnapshot::from_json("nonsense"), None);
        assert_eq!(SpaCountersSnapshot::from_json(&json), None);
        let spa = SpaCountersSnapshot {
            received: 9,
            accepted: 7,
            rejected: 2,
            grants: 7,
            ..Default::default()
        };
        let mut fields = snapshot.fields().to_vec();
        fields.extend(spa.fields());
        let both = json_object(&fields);
        assert_eq!(CountersSnapshot::from_json(&both), Some(snapshot));
        assert_eq!(SpaCountersSnapshot::from_json(&both), Some(spa));
        assert_eq!(
            snapshot.to_string(),
            "packets=5 progress=0 grants=0 lockouts=0 ignored=0 expiries=0 evictions=2 tracked=3 firewall_ops=1 firewall_failures=1 batches=1 table_bytes=4096 grants_refused=0"
        );
    }
}
