//! Micro-benchmarks of the core: nanoseconds per knock decision, with an
//! empty table and with a table full at its bound (every new source then
//! costs an eviction), and with 1, 10 and 100 doors (issue 10). Run with
//! `cargo bench --bench core`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portknock::config::{AllowList, Door, KnockPort, KnockRules, ProtectedPort, Sequence, Timing};
use portknock::knock::{Judged, KnockTracker};

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

/// `n` doors; door `i` knocks `10000+3i, 10001+3i, 10002+3i`, or with
/// `shared` every door starts with port 9000 (the worst case: one knock
/// concerns every door).
fn doors(n: u16, shared: bool) -> Vec<Door> {
    (0..n)
        .map(|i| {
            let base = 10_000 + 3 * i;
            let first = if shared { 9_000 } else { base };
            let sequence = [first, base + 1, base + 2].map(KnockPort::udp).to_vec();
            let timing = Timing {
                window: Duration::from_secs(10),
                access: Duration::from_secs(30),
                lockout: Duration::from_secs(5),
            };
            let name = format!("d{i}").parse().unwrap();
            let protected = vec![ProtectedPort::tcp(22)];
            Door::new(name, sequence, timing, protected, AllowList::everything()).unwrap()
        })
        .collect()
}

fn several_doors(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut group = c.benchmark_group("doors");
    for n in [1u16, 10, 100] {
        // One source cycling through the last door's sequence.
        group.bench_function(format!("{n}_doors_one_source_sequence_per_3_knocks"), |b| {
            let doors = doors(n, false);
            let mut tracker = KnockTracker::for_doors(&doors, FULL);
            let ports = doors[usize::from(n) - 1].sequence().to_vec();
            let mut out: Vec<Judged> = Vec::with_capacity(256);
            let mut i = 0usize;
            b.iter(|| {
                i += 1;
                out.clear();
                tracker.judge(source(1), ports[i % 3], t0, &mut out);
                black_box(out.len())
            });
        });
        // Every door shares the first port: a first knock concerns all.
        group.bench_function(
            format!("{n}_doors_sharing_the_first_port_per_3_knocks"),
            |b| {
                let doors = doors(n, true);
                let mut tracker = KnockTracker::for_doors(&doors, FULL);
                let ports = doors[0].sequence().to_vec();
                let mut out: Vec<Judged> = Vec::with_capacity(256);
                let mut i = 0usize;
                b.iter(|| {
                    i += 1;
                    out.clear();
                    tracker.judge(source(1), ports[i % 3], t0, &mut out);
                    black_box(out.len())
                });
            },
        );
        // New first knocks into a table full at its bound.
        group.bench_function(format!("{n}_doors_full_table_new_source_evicts"), |b| {
            let doors = doors(n, false);
            let first = doors[0].sequence()[0];
            let mut tracker = KnockTracker::for_doors(&doors, FULL);
            let mut out: Vec<Judged> = Vec::with_capacity(256);
            for s in 0..FULL as u32 {
                out.clear();
                tracker.judge(source(s), first, t0, &mut out);
            }
            let mut s = FULL as u32;
            b.iter(|| {
                s = s.wrapping_add(1);
                out.clear();
                tracker.judge(source(s % 0x00ff_0000), first, t0, &mut out);
                black_box(out.len())
            });
        });
    }
    group.finish();
}

/// A rotating door (issue 14): the cost per knock of judging against the
/// three accepted periods, of a replayed (used) sequence, and of one
/// derivation (what a rotation pays per period and door, and a client once).
fn rotating(c: &mut Criterion) {
    use portknock::config::rotating::RotatingSequence;
    use portknock::rotate::{DoorKey, MIN_ENTROPY_BITS, Rotation};
    let t0 = Instant::now();
    let sequence = RotatingSequence {
        key_path: "bench".into(),
        key: DoorKey::from_bytes(&[9u8; 32]).unwrap(),
        rotation: Rotation::new(Duration::from_secs(30), 4, "20000-60000", MIN_ENTROPY_BITS)
            .unwrap(),
        proto: portknock::config::Proto::Udp,
        state: "bench".into(),
    };
    let door = Door::rotating(
        "web".parse().unwrap(),
        sequence.clone(),
        Timing::default(),
        vec![ProtectedPort::tcp(22)],
        AllowList::everything(),
    )
    .unwrap();
    let unix = sequence.rotation.start_of(1000) + Duration::from_secs(1);
    let mut group = c.benchmark_group("rotating");
    group.bench_function("sequence_per_4_knocks_new_source_each", |b| {
        let mut tracker = KnockTracker::for_doors(std::slice::from_ref(&door), FULL);
        tracker.rotate_to(unix, |_, _| false);
        // Period c+1's ports, progress only (the last knock is left out so
        // the sequence is never used up): sources cycle.
        let ports = sequence.knocks("web", 1001);
        let mut out: Vec<Judged> = Vec::with_capacity(16);
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            out.clear();
            let knock = ports[(i % 3) as usize];
            tracker.judge(source(i / 3 % 50_000), knock, t0, &mut out);
            black_box(out.len())
        });
    });
    group.bench_function("replayed_used_sequence_knock", |b| {
        let mut tracker = KnockTracker::for_doors(std::slice::from_ref(&door), FULL);
        tracker.rotate_to(unix, |_, p| p == 1000);
        let ports = sequence.knocks("web", 1000);
        let mut out: Vec<Judged> = Vec::with_capacity(16);
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            out.clear();
            tracker.judge(source(i % 50_000), ports[(i % 4) as usize], t0, &mut out);
            black_box(out.len())
        });
    });
    group.bench_function("derive_one_sequence", |b| {
        let mut p = 0u64;
        b.iter(|| {
            p += 1;
            black_box(sequence.knocks("web", p))
        });
    });
    group.finish();
}

criterion_group!(benches, decisions, several_doors, rotating);
criterion_main!(benches);
