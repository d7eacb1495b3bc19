//! The counters' wire format: one flat JSON object per line,
//! `{"packets":1,...,"spa_grants":0}`, written by the stats endpoint and
//! parsed back by knock-bench. Hand-written on purpose: the fields are
//! names and unsigned integers only, so no JSON library is needed, and the
//! parser skips unknown fields so an older reader copes with a newer server.

use super::{Counters, CountersSnapshot, SpaCounters, SpaCountersSnapshot};

/// The stats line: the knock counters, then the SPA listener's (`spa_`
/// fields) when SPA is on; ends with a newline.
pub fn stats_line(counters: &Counters, spa: Option<&SpaCounters>) -> String {
    let mut fields = counters.snapshot().fields().to_vec();
    if let Some(spa) = spa {
        fields.extend(spa.snapshot().fields());
    }
    if counters
        .fleet
        .enabled
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        fields.extend(counters.fleet.snapshot().fields());
    }
    let mut line = json_object(&fields);
    line.push('\n');
    line
}

impl CountersSnapshot {
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
                "capture_udp" => &mut snapshot.capture_udp,
                "capture_tcp" => &mut snapshot.capture_tcp,
                "capture_ignored" => &mut snapshot.capture_ignored,
                "capture_spa" => &mut snapshot.capture_spa,
                "capture_drops" => &mut snapshot.capture_drops,
                _ => continue,
            };
            *field = value;
        }
        Some(snapshot)
    }
}

impl SpaCountersSnapshot {
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
            "packets=5 progress=0 grants=0 lockouts=0 ignored=0 expiries=0 evictions=2 tracked=3 firewall_ops=1 firewall_failures=1 batches=1 table_bytes=4096 grants_refused=0 capture_udp=0 capture_tcp=0 capture_ignored=0 capture_spa=0 capture_drops=0"
        );
    }
}
