//! A latency histogram of fixed buckets in atomics: the firewall worker
//! records how long each batch took, the metrics endpoint reads it. Fixed
//! bounds (Prometheus' default buckets, finer at the low end where netlink
//! batches land) so recording is one search and two adds, no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last, +Inf, is implied).
pub const BOUNDS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Observations by bucket, their count and their sum.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of a [`Latency`]: each bucket's own count (the encoder makes
/// them cumulative; observations over the last bound count only in
/// `count`, Prometheus' `+Inf`).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations above the previous bound
    /// and at or below this one)`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_secs: f64,
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let buckets = BOUNDS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| (bound, n.load(Relaxed)))
            .collect();
        LatencySnapshot {
            buckets,
            count: self.count.load(Relaxed),
            sum_secs: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_one_bucket_and_the_overflow_only_in_the_total() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(50));
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(5));
        let s = latency.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[3], (0.0025, 0));
        assert_eq!(s.buckets[4], (0.005, 1));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 2);
        assert!((s.sum_secs - 5.00305).abs() < 1e-9);
    }
}
