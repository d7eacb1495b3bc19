//! The metric families, read from the counters and the engine at each
//! scrape (a `prometheus-client` [`Collector`]). Names follow Prometheus'
//! conventions: the `portknock_` prefix, base units (seconds), `_total`
//! on counters (added by the encoder).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::counters::{Counters, SpaCounters};
use crate::grants::Origin;
use crate::server::Engine;

/// What `portknock_build_info` names, and the bound of tracked sources.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// The firewall backend in use.
    pub backend: String,
    /// Where knocks are heard.
    pub capture: String,
    /// The bound on tracked sources (`--max-tracked`).
    pub max_tracked: usize,
}

impl BuildInfo {
    /// The build info of a daemon with `backend`, hearing on `capture`.
    pub fn new(backend: String, capture: &str, max_tracked: usize) -> Self {
        Self {
            backend,
            capture: capture.to_string(),
            max_tracked,
        }
    }
}

/// The collector: every family, from the live counters.
#[derive(Debug)]
pub struct Exporter {
    info: BuildInfo,
    counters: Arc<Counters>,
    spa: Option<Arc<SpaCounters>>,
    engine: Option<Arc<Engine>>,
}

impl Exporter {
    /// A collector over these sources (no engine: no grant census).
    pub fn new(
        info: BuildInfo,
        counters: Arc<Counters>,
        spa: Option<Arc<SpaCounters>>,
        engine: Option<Arc<Engine>>,
    ) -> Self {
        Self {
            info,
            counters,
            spa,
            engine,
        }
    }

    /// The text of one scrape (Prometheus text format 0.0.4).
    pub fn scrape(self: &Arc<Self>) -> String {
        let mut registry = Registry::with_prefix("portknock");
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// A counter or gauge value with labels, written as one family member.
fn family<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    members: &[([(&str, &str); N], u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in members {
        let mut member = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => member.encode_counter::<NoLabelSet, _, u64>(value, None)?,
            _ => member.encode_gauge(value)?,
        }
    }
    Ok(())
}

fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    family::<0>(encoder, name, help, kind, &[([], value)])
}

impl Collector for Exporter {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let c = self.counters.snapshot();
        let info = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("backend", self.info.backend.as_str()),
            ("capture", self.info.capture.as_str()),
        ];
        family(
            &mut e,
            "build_info",
            "The daemon's version, firewall backend and capture source.",
            Gauge,
            &[(info, 1)],
        )?;
        let source = self.info.capture.as_str();
        family(
            &mut e,
            "capture_packets",
            "Knock packets received, by capture source and protocol.",
            Counter,
            &[([("source", source), ("proto", "udp")], c.packets)],
        )?;
        family(
            &mut e,
            "knocks",
            "Decisions of the knock core, by result.",
            Counter,
            &[
                ([("result", "progress")], c.progress),
                ([("result", "completed")], c.grants),
                ([("result", "locked_out")], c.lockouts),
                ([("result", "ignored")], c.ignored),
            ],
        )?;
        let spa = self.spa.as_ref().map(|s| s.snapshot());
        let spa_grants = spa.map_or(0, |s| s.grants);
        family(
            &mut e,
            "grants",
            "Grants made (new or renewed), by origin.",
            Counter,
            &[
                ([("origin", "knock")], c.grants),
                ([("origin", "spa")], spa_grants),
            ],
        )?;
        single(
            &mut e,
            "grants_refused",
            "New grants refused because --max-grants were open.",
            Counter,
            c.grants_refused,
        )?;
        single(
            &mut e,
            "revocations",
            "Firewall entries closed: grants that ended, were revoked or flushed.",
            Counter,
            c.expiries,
        )?;
        if let Some(engine) = &self.engine {
            let census = engine.census(0);
            let mut by_origin = [0u64; 3];
            for grant in &census.grants {
                let i = match grant.origin() {
                    Origin::Knock => 0,
                    Origin::Spa => 1,
                    _ => 2,
                };
                by_origin[i] += 1;
            }
            family(
                &mut e,
                "grants_active",
                "Open grants, by origin.",
                Gauge,
                &[
                    ([("origin", "knock")], by_origin[0]),
                    ([("origin", "spa")], by_origin[1]),
                    ([("origin", "manual")], by_origin[2]),
                ],
            )?;
            single(
                &mut e,
                "lockouts_active",
                "Sources locked out now.",
                Gauge,
                census.locked_out as u64,
            )?;
        }
        single(
            &mut e,
            "tracked_sources",
            "Sources the knock core tracks now.",
            Gauge,
            c.tracked,
        )?;
        single(
            &mut e,
            "tracked_sources_limit",
            "The bound on tracked sources (--max-tracked).",
            Gauge,
            self.info.max_tracked as u64,
        )?;
        single(
            &mut e,
            "state_evictions",
            "Tracked entries evicted because the table was full.",
            Counter,
            c.evictions,
        )?;
        family(
            &mut e,
            "firewall_ops",
            "Firewall changes applied, by result.",
            Counter,
            &[
                (
                    [("result", "ok")],
                    c.firewall_ops - c.firewall_failures.min(c.firewall_ops),
                ),
                ([("result", "failed")], c.firewall_failures),
            ],
        )?;
        let latency = self.counters.firewall_latency.snapshot();
        let mut metric = e.encode_descriptor(
            "firewall_batch_duration",
            "How long the firewall backend took to apply one batch of changes.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            latency.sum_secs,
            latency.count,
            &latency.buckets,
            None,
        )?;
        if let Some(s) = spa {
            family(
                &mut e,
                "spa_packets",
                "SPA packets, by result.",
                Counter,
                &[
                    ([("result", "accepted")], s.accepted),
                    ([("result", "rejected")], s.rejected),
                ],
            )?;
            single(
                &mut e,
                "capture_dropped",
                "Packets dropped inside the daemon before a decision.",
                Counter,
                s.dropped,
            )?;
        }
        Ok(())
    }
}
