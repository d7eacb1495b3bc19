//! Fleet figures for BENCHMARKS.md (ignored: run by hand with
//! `cargo test --test tests fleet::bench -- --ignored --nocapture`):
//! propagation delay from a knock granted on A to the grant applied on C
//! (median, p99, from the nodes' own log timestamps: one clock), how many
//! records per second a node applies, and what an idle node costs.

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use super::lab::{FleetLab, GROUP, GROUP_KEY, HUB, KNOCKER, NATS_PORT};

/// Microseconds since midnight of a log line's RFC 3339 timestamp.
fn stamp_us(line: &str) -> Option<u64> {
    let t = line.split_whitespace().next()?;
    let time = t.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some((h * 3600 + m * 60) * 1_000_000 + (s * 1e6) as u64)
}

fn stamps(logs: &str, needle: &str) -> Vec<u64> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .filter_map(stamp_us)
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// /proc figures of `pid`: (utime + stime ticks, VmRSS kB).
fn cpu_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    (ticks, rss)
}

#[test]
#[ignore = "benchmark: run by hand"]
fn fleet_figures() {
    let Some(mut lab) = FleetLab::new("fleet::bench", "flb", 30) else {
        return;
    };
    lab.log_level = "info";
    lab.start_nats();
    for node in 0..3 {
        lab.start_node(node);
    }
    // Idle cost: 10 s of nothing.
    let pid = lab.node(2).pid();
    let (t0, _) = cpu_rss(pid);
    thread::sleep(Duration::from_secs(10));
    let (t1, rss) = cpu_rss(pid);
    println!(
        "idle node: {} CPU ticks (1/100 s) in 10 s, VmRSS {rss} kB",
        t1 - t0
    );

    // Propagation: 60 knocks (renewals publish too), 150 ms apart.
    let rounds = 60;
    for _ in 0..rounds {
        lab.knock(KNOCKER, 0);
        thread::sleep(Duration::from_millis(150));
    }
    thread::sleep(Duration::from_secs(1));
    let on_a = stamps(&lab.node(0).logs(), "access ");
    let on_c = stamps(&lab.node(2).logs(), "fleet: access granted");
    assert_eq!(
        on_a.len(),
        rounds,
        "A logged {} grants of {rounds}",
        on_a.len()
    );
    assert_eq!(on_c.len(), rounds, "C applied {} of {rounds}", on_c.len());
    let mut delays: Vec<u64> = on_a.iter().zip(&on_c).map(|(a, c)| c - a).collect();
    delays.sort_unstable();
    println!(
        "propagation A->C over {rounds} grants: median {} us, p99 {} us, max {} us",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );

    // Apply rate: 2000 signed records for distinct addresses, written as
    // fast as one publisher can; C's first to last apply.
    let n = 2000u32;
    let key = portknock::fleet::GroupKey::new(GROUP_KEY.as_bytes().to_vec());
    let written = lab.lan.host.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = async_nats::connect(format!("nats://{}:{NATS_PORT}", HUB[0]))
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let kv = js
                .get_key_value(format!("portknock-grants-{GROUP}"))
                .await
                .unwrap();
            let start = Instant::now();
            for i in 0..n {
                let ip = IpAddr::V4(Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(198, 51, 100, 0)) + i % 250 + (i / 250) * 256,
                ));
                let record = portknock::fleet::GrantRecord {
                    kind: portknock::fleet::RecordKind::Grant,
                    ip,
                    door: "ssh".into(),
                    ports: vec![2222],
                    expires_at: portknock::fleet::unix_ms() + 30_000,
                    origin: "bench".into(),
                    id: format!("bench.1.{i}"),
                };
                let value = serde_json::to_vec(&key.sign(GROUP, record)).unwrap();
                kv.put(portknock::fleet::key_of("ssh", ip), value.into())
                    .await
                    .unwrap();
            }
            start.elapsed()
        })
    });
    let start = Instant::now();
    while lab.node(2).count("fleet: access granted") < rounds + n as usize {
        assert!(start.elapsed() < Duration::from_secs(60), "C fell behind");
        thread::sleep(Duration::from_millis(100));
    }
    let applied = stamps(&lab.node(2).logs(), "fleet: access granted");
    let span = applied[applied.len() - 1] - applied[rounds];
    println!(
        "records: {n} written in {:?} ({:.0}/s by one publisher), applied by C in {} ms ({:.0}/s)",
        written,
        f64::from(n) / written.as_secs_f64(),
        span / 1000,
        f64::from(n) / (span as f64 / 1e6)
    );
}
