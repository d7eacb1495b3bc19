//! Micro-benchmarks of the core: nanoseconds per knock decision, with an
//! empty table and with a table full at its bound (every new source then
//! costs an eviction). Run with `cargo bench --bench core`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portknock::config::{KnockRules, Sequence};
use portknock::knock::KnockTracker;

const FULL: usize = 100_000;

fn rules(max_tracked: usize) -> KnockRules {
    KnockRules {
        sequence: "1234,5678,9012".parse::<Sequence>().unwrap(),
        window: Duration::from_secs(10),
        access: Duration::from_secs(30),
        lockout: Duration::from_secs(5),
        max_tracked,
    }
}

fn source(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x7f10_0000 + n))
}

fn decisions(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut group = c.benchmark_group("knock");

    // One source completing its sequence over and over: the table stays
    // (nearly) empty.
    group.bench_function("empty_table_full_sequence_per_3_knocks", |b| {
        let mut tracker = KnockTracker::new(&rules(FULL));
        let ports = [1234, 5678, 9012];
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(tracker.knock(source(1), ports[i % 3], t0))
        });
    });

    // New first knocks into a table full at its bound: lookup miss,
    // eviction of the stalest entry, insert.
    group.bench_function("full_table_new_source_evicts", |b| {
        let mut tracker = KnockTracker::new(&rules(FULL));
        for n in 0..FULL as u32 {
            tracker.knock(source(n), 1234, t0);
        }
        let mut n = FULL as u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(tracker.knock(source(n % 0x00ff_0000), 1234, t0))
        });
    });

    // A known source cycling through its sequence in a full table: lookup
    // hits, a grant frees its slot, the next first knock takes it again.
    group.bench_function("full_table_known_source_sequence_per_3_knocks", |b| {
        let mut tracker = KnockTracker::new(&rules(FULL));
        for n in 1..FULL as u32 {
            tracker.knock(source(n), 1234, t0);
        }
        let ports = [1234, 5678, 9012];
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(tracker.knock(source(0), ports[i % 3], t0))
        });
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
