//! The report of a load run: what was offered, what the server decided,
//! how fast access opened; as Markdown for people and JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use portknock::counters::{CountersSnapshot, SpaCountersSnapshot};

/// Median and tail of a set of latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub median: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl LatencySummary {
    /// Summarises `samples` (sorted in place); None if there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            samples: samples.len(),
            median: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// The nearest-rank percentile `p` of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What an SPA run measured beyond latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpaFigures {
    /// Encoding time per packet (before the timed phases).
    pub encode_per_packet: Duration,
    /// Openings seen during the throughput phase (None: nothing to count
    /// them with).
    pub opened: Option<u64>,
    /// From the first packet of the throughput phase to the last opening.
    pub open_time: Duration,
    /// Our server's SPA counters before and after the throughput phase.
    pub counters: Option<(SpaCountersSnapshot, SpaCountersSnapshot)>,
}

impl SpaFigures {
    /// Openings a second over the throughput phase.
    pub fn opened_per_sec(&self) -> Option<f64> {
        self.opened.map(|n| rate(n, self.open_time))
    }

    /// The change of the SPA counters over the throughput phase.
    pub fn delta(&self) -> Option<SpaCountersSnapshot> {
        let (a, b) = self.counters?;
        Some(SpaCountersSnapshot {
            received: b.received - a.received,
            dropped: b.dropped - a.dropped,
            accepted: b.accepted - a.accepted,
            rejected: b.rejected - a.rejected,
            grants: b.grants - a.grants,
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The mode that ran.
    pub mode: String,
    /// Sequences offered (complete-sequence modes) or flood packets.
    pub offered: u64,
    /// Datagrams handed to the kernel.
    pub packets_sent: u64,
    /// How long sending took.
    pub send_time: Duration,
    /// Server counters before and after (when a stats address was given).
    pub counters: Option<(CountersSnapshot, CountersSnapshot)>,
    /// Knock-to-open latencies.
    pub latency: Option<LatencySummary>,
    /// Probes that never saw the port open.
    pub probes_failed: u64,
    /// The legitimate client during a flood: attempts made and whether it
    /// got in.
    pub legit: Option<(u32, bool)>,
    /// Datagrams the kernel dropped for full receive buffers during the run
    /// (`/proc/net/snmp` Udp RcvbufErrors, this namespace).
    pub kernel_drops: Option<u64>,
    /// Peak resident memory of the server (kB, VmHWM), when its pid was given.
    pub server_peak_rss_kb: Option<u64>,
    /// SPA mode: openings and the SPA counters.
    pub spa: Option<SpaFigures>,
    /// Rotating door: distinct periods the sequences were knocked in.
    pub periods: Option<u64>,
}

impl Report {
    /// Packets a second while sending.
    pub fn send_rate(&self) -> f64 {
        rate(self.packets_sent, self.send_time)
    }

    /// The change of the server counters over the run.
    pub fn delta(&self) -> Option<CountersSnapshot> {
        let (a, b) = self.counters?;
        Some(CountersSnapshot {
            packets: b.packets - a.packets,
            progress: b.progress - a.progress,
            grants: b.grants - a.grants,
            lockouts: b.lockouts - a.lockouts,
            ignored: b.ignored - a.ignored,
            expiries: b.expiries - a.expiries,
            evictions: b.evictions - a.evictions,
            tracked: b.tracked,
            firewall_ops: b.firewall_ops - a.firewall_ops,
            firewall_failures: b.firewall_failures - a.firewall_failures,
            batches: b.batches - a.batches,
            table_bytes: b.table_bytes,
            grants_refused: b.grants_refused - a.grants_refused,
            capture_udp: b.capture_udp - a.capture_udp,
            capture_tcp: b.capture_tcp - a.capture_tcp,
            capture_ignored: b.capture_ignored - a.capture_ignored,
            capture_spa: b.capture_spa - a.capture_spa,
            capture_drops: b.capture_drops - a.capture_drops,
        })
    }

    /// Sequences offered but not granted (complete-sequence modes).
    pub fn lost(&self) -> Option<u64> {
        self.delta().map(|d| self.offered.saturating_sub(d.grants))
    }

    /// The rows of the report: name and value, already formatted.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("mode", self.mode.clone()),
            ("offered", self.offered.to_string()),
            ("packets_sent", self.packets_sent.to_string()),
            ("send_secs", format!("{:.3}", self.send_time.as_secs_f64())),
            ("send_rate_pps", format!("{:.0}", self.send_rate())),
        ];
        if let Some(periods) = self.periods {
            rows.push(("periods", periods.to_string()));
        }
        if let Some(d) = self.delta() {
            rows.push(("server_packets", d.packets.to_string()));
            rows.push(("server_decisions", d.decisions().to_string()));
            rows.push(("grants", d.grants.to_string()));
            rows.push(("lost", self.lost().unwrap_or(0).to_string()));
            rows.push(("progress", d.progress.to_string()));
            rows.push(("lockouts", d.lockouts.to_string()));
            rows.push(("ignored", d.ignored.to_string()));
            rows.push(("evictions", d.evictions.to_string()));
            rows.push(("tracked_at_end", d.tracked.to_string()));
            rows.push(("firewall_ops", d.firewall_ops.to_string()));
            rows.push(("firewall_failures", d.firewall_failures.to_string()));
            rows.push(("recv_batches", d.batches.to_string()));
            rows.push(("table_bytes", d.table_bytes.to_string()));
            if let Some(per_ip) = d.table_bytes.checked_div(d.tracked) {
                rows.push(("bytes_per_tracked_ip", per_ip.to_string()));
            }
        }
        if let Some(spa) = &self.spa {
            rows.push((
                "encode_us_per_packet",
                format!("{:.1}", spa.encode_per_packet.as_secs_f64() * 1e6),
            ));
            if let (Some(opened), Some(per_sec)) = (spa.opened, spa.opened_per_sec()) {
                rows.push(("opened", opened.to_string()));
                rows.push(("lost", self.offered.saturating_sub(opened).to_string()));
                rows.push(("open_secs", format!("{:.3}", spa.open_time.as_secs_f64())));
                rows.push(("opened_per_sec", format!("{per_sec:.1}")));
            }
            if let Some(d) = spa.delta() {
                rows.push(("spa_received", d.received.to_string()));
                rows.push(("spa_dropped", d.dropped.to_string()));
                rows.push(("spa_accepted", d.accepted.to_string()));
                rows.push(("spa_rejected", d.rejected.to_string()));
                rows.push(("spa_grants", d.grants.to_string()));
                rows.push((
                    "accepted_per_sec",
                    format!("{:.1}", rate(d.accepted, spa.open_time)),
                ));
            }
        }
        if let Some(l) = self.latency {
            rows.push(("latency_samples", l.samples.to_string()));
            rows.push(("latency_median_ms", ms(l.median)));
            rows.push(("latency_p99_ms", ms(l.p99)));
            rows.push(("latency_max_ms", ms(l.max)));
            rows.push(("probes_failed", self.probes_failed.to_string()));
        }
        if let Some((attempts, got_in)) = self.legit {
            rows.push(("legit_attempts", attempts.to_string()));
            rows.push(("legit_got_in", got_in.to_string()));
        }
        if let Some(drops) = self.kernel_drops {
            rows.push(("kernel_rcvbuf_drops", drops.to_string()));
        }
        if let Some(kb) = self.server_peak_rss_kb {
            rows.push(("server_peak_rss_kb", kb.to_string()));
        }
        rows
    }

    /// A two-column Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| measure | value |\n|---|---|\n");
        for (name, value) in self.rows() {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out
    }

    /// One JSON object; numbers stay numbers, the rest are strings.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self
            .rows()
            .into_iter()
            .map(|(name, value)| {
                let numeric = value.parse::<f64>().is_ok() || value == "true" || value == "false";
                if numeric {
                    format!("\"{name}\":{value}")
                } else {
                    format!("\"{name}\":\"{}\"", value.replace(['"', '\\'], ""))
                }
            })
            .collect();
        format!("{{{}}}\n", body.join(","))
    }
}

fn rate(count: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(|i| i * MS).collect();
        let s = LatencySummary::of(&mut samples).unwrap();
        assert_eq!(
            (s.samples, s.median, s.p99, s.max),
            (100, 50 * MS, 99 * MS, 100 * MS)
        );
        let mut one = vec![7 * MS];
        let s = LatencySummary::of(&mut one).unwrap();
        assert_eq!((s.median, s.p99), (7 * MS, 7 * MS));
        assert_eq!(LatencySummary::of(&mut []), None);
        assert_eq!(percentile(&[MS, 2 * MS, 3 * MS], 50.0), 2 * MS);
    }

    #[test]
    fn lost_is_offered_minus_granted_and_rendering_keeps_every_row() {
        let before = CountersSnapshot {
            grants: 5,
            packets: 10,
            ..Default::default()
        };
        let after = CountersSnapshot {
            grants: 95,
            packets: 310,
            progress: 200,
            tracked: 4,
            table_bytes: 400,
            ..Default::default()
        };
        let report = Report {
            mode: "sequences".into(),
            offered: 100,
            packets_sent: 300,
            send_time: Duration::from_secs(2),
            counters: Some((before, after)),
            ..Default::default()
        };
        assert_eq!(report.lost(), Some(10));
        assert_eq!(report.send_rate(), 150.0);
        let md = report.to_markdown();
        assert!(md.contains("| lost | 10 |"), "{md}");
        assert!(md.contains("| bytes_per_tracked_ip | 100 |"), "{md}");
        let json = report.to_json();
        assert!(
            json.starts_with("{\"mode\":\"sequences\",\"offered\":100,"),
            "{json}"
        );
        assert!(json.contains("\"server_decisions\":290"), "{json}");
        assert!(!json.contains("opened"), "{json}");
    }

    #[test]
    fn spa_rows_give_openings_a_second_and_the_counter_changes() {
        let before = SpaCountersSnapshot {
            received: 20,
            accepted: 20,
            grants: 20,
            ..Default::default()
        };
        let after = SpaCountersSnapshot {
            received: 520,
            accepted: 490,
            rejected: 10,
            grants: 490,
            ..Default::default()
        };
        let report = Report {
            mode: "Spa".into(),
            offered: 500,
            spa: Some(SpaFigures {
                encode_per_packet: Duration::from_micros(25),
                opened: Some(470),
                open_time: Duration::from_secs(2),
                counters: Some((before, after)),
            }),
            ..Default::default()
        };
        let md = report.to_markdown();
        for row in [
            "| encode_us_per_packet | 25.0 |",
            "| opened | 470 |",
            "| lost | 30 |",
            "| opened_per_sec | 235.0 |",
            "| spa_accepted | 470 |",
            "| spa_rejected | 10 |",
            "| accepted_per_sec | 235.0 |",
        ] {
            assert!(md.contains(row), "{row} in {md}");
        }
        let none = SpaFigures::default();
        assert_eq!((none.opened_per_sec(), none.delta()), (None, None));
    }
}
