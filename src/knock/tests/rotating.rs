//! Unit tests of rotating doors in the core (`knock/rotation.rs`), with
//! injected time and periods: boundaries, skew of one period, replays from
//! the same and another address in the same and the next period.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::doors::door;
use crate::config::rotating::RotatingSequence;
use crate::config::{AllowList, Door, KnockPort, ProtectedPort, Proto, Timing};
use crate::knock::{Judged, KnockTracker, Verdict};
use crate::rotate::{DoorKey, MIN_ENTROPY_BITS, Rotation};

const SEC: Duration = Duration::from_secs(1);

fn rotating() -> RotatingSequence {
    RotatingSequence {
        key_path: "unused".into(),
        key: DoorKey::from_bytes(&[3u8; 32]).unwrap(),
        rotation: Rotation::new(30 * SEC, 4, "20000-60000", MIN_ENTROPY_BITS).unwrap(),
        proto: Proto::Udp,
        state: "unused".into(),
    }
}

fn rotating_door(name: &str) -> Door {
    let timing = Timing {
        window: 10 * SEC,
        access: 30 * SEC,
        lockout: 5 * SEC,
    };
    let protected = vec![ProtectedPort::tcp(22)];
    Door::rotating(
        name.parse().unwrap(),
        rotating(),
        timing,
        protected,
        AllowList::everything(),
    )
    .unwrap()
}

/// Inside period `c` of the 30 s rotation (a little after its start).
fn at(c: u64) -> Duration {
    rotating().rotation.start_of(c) + Duration::from_millis(1)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Knocks `seq` from `from` starting at `t`, 100 ms apart; the last verdict.
fn knock_all(
    tracker: &mut KnockTracker,
    from: IpAddr,
    seq: &[KnockPort],
    t: Instant,
) -> Vec<Judged> {
    let mut out = Vec::new();
    for (i, &k) in seq.iter().enumerate() {
        out.clear();
        tracker.judge(from, k, t + Duration::from_millis(100 * i as u64), &mut out);
    }
    out
}

fn granted(out: &[Judged], door: u16) -> bool {
    out.iter()
        .any(|j| j.door == door && matches!(j.verdict, Verdict::Grant { .. }))
}

#[test]
fn the_periods_either_side_open_and_two_away_do_not() {
    let seq = rotating();
    for (offset, opens) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
        let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
        tracker.rotate_to(at(100), |_, _| false);
        let knocks = seq.knocks("web", (100 + offset) as u64);
        let out = knock_all(&mut tracker, ip("192.0.2.1"), &knocks, Instant::now());
        assert_eq!(granted(&out, 0), opens, "offset {offset}: {out:?}");
    }
}

#[test]
fn a_used_sequence_is_refused_from_any_address_in_this_period_and_the_next() {
    let seq = rotating();
    let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
    tracker.rotate_to(at(100), |_, _| false);
    let t = Instant::now();
    let knocks = seq.knocks("web", 100);
    assert!(granted(
        &knock_all(&mut tracker, ip("192.0.2.1"), &knocks, t),
        0
    ));
    assert_eq!(tracker.take_used(), vec![(0, 100)]);
    assert!(tracker.take_used().is_empty());
    // Replays: same address (after its window), another address, same
    // period and after the boundary.
    for (n, from) in ["192.0.2.1", "198.51.100.9"].iter().enumerate() {
        let later = t + 20 * SEC + Duration::from_secs(10 * n as u64);
        let out = knock_all(&mut tracker, ip(from), &knocks, later);
        assert!(!granted(&out, 0), "replay from {from}: {out:?}");
    }
    tracker.rotate_to(at(101), |_, _| false);
    let out = knock_all(&mut tracker, ip("198.51.100.7"), &knocks, t + 60 * SEC);
    assert!(!granted(&out, 0), "replay in the next period: {out:?}");
    // The fresh sequence of the new period still opens.
    let fresh = seq.knocks("web", 101);
    assert!(granted(
        &knock_all(&mut tracker, ip("192.0.2.5"), &fresh, t + 70 * SEC),
        0
    ));
}

#[test]
fn the_shells_memory_refuses_a_sequence_used_before_a_restart() {
    let seq = rotating();
    let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
    tracker.rotate_to(at(100), |door, p| door == "web" && p == 99);
    let out = knock_all(
        &mut tracker,
        ip("192.0.2.1"),
        &seq.knocks("web", 99),
        Instant::now(),
    );
    assert!(!granted(&out, 0), "{out:?}");
}

#[test]
fn progress_across_a_boundary_is_kept() {
    let seq = rotating();
    let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
    tracker.rotate_to(at(100), |_, _| false);
    let knocks = seq.knocks("web", 100);
    let t = Instant::now();
    let mut out = Vec::new();
    for &k in &knocks[..2] {
        tracker.judge(ip("192.0.2.1"), k, t, &mut out);
    }
    tracker.rotate_to(at(101), |_, _| false);
    out.clear();
    for &k in &knocks[2..] {
        tracker.judge(ip("192.0.2.1"), k, t + SEC, &mut out);
    }
    assert!(granted(&out, 0), "{out:?}");
}

#[test]
fn progress_on_a_period_that_rotates_out_is_forgotten() {
    let seq = rotating();
    let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
    tracker.rotate_to(at(100), |_, _| false);
    let old = seq.knocks("web", 99);
    let t = Instant::now();
    let mut out = Vec::new();
    tracker.judge(ip("192.0.2.1"), old[0], t, &mut out);
    assert_eq!(tracker.tracked(), 1);
    tracker.rotate_to(at(101), |_, _| false);
    assert_eq!(tracker.tracked(), 0, "period 99's progress went with it");
}

#[test]
fn verdicts_name_the_configurations_door_beside_fixed_doors() {
    let seq = rotating();
    let doors = [door("fixed", "1000,2000", &[], 5), rotating_door("web")];
    let mut tracker = KnockTracker::for_doors(&doors, 100);
    assert_eq!(tracker.doors(), 2);
    tracker.rotate_to(at(7), |_, _| false);
    let out = knock_all(
        &mut tracker,
        ip("192.0.2.1"),
        &seq.knocks("web", 8),
        Instant::now(),
    );
    assert!(granted(&out, 1), "{out:?}");
    let fixed = ["1000".parse().unwrap(), "2000".parse().unwrap()];
    let out = knock_all(&mut tracker, ip("192.0.2.2"), &fixed, Instant::now());
    assert!(granted(&out, 0), "{out:?}");
    assert_eq!(tracker.rotating_ports().len(), 12);
}

#[test]
fn a_spoofed_wrong_knock_does_not_keep_a_client_that_knows_the_sequence_out() {
    let seq = rotating();
    let mut tracker = KnockTracker::for_doors(&[rotating_door("web")], 100);
    tracker.rotate_to(at(100), |_, _| false);
    let victim = ip("192.0.2.1");
    let t = Instant::now();
    // A forged wrong knock with the victim's address: a port the server
    // hears (the next period's third knock) out of order.
    let wrong = seq.knocks("web", 101)[2];
    let mut out = Vec::new();
    tracker.judge(victim, wrong, t, &mut out);
    assert!(
        matches!(out[0].verdict, Verdict::LockedOut { .. }),
        "{out:?}"
    );
    // Knocks that are not a right first knock stay ignored...
    out.clear();
    tracker.judge(victim, seq.knocks("web", 100)[1], t + SEC, &mut out);
    assert!(matches!(out[0].verdict, Verdict::Ignored { .. }), "{out:?}");
    // ...but the client's own attempt, inside the lockout, opens.
    let out = knock_all(&mut tracker, victim, &seq.knocks("web", 100), t + 2 * SEC);
    assert!(granted(&out, 0), "{out:?}");
    assert_eq!(tracker.stats().lockouts_lifted, 1);
}

#[test]
fn a_fixed_door_keeps_the_seeds_lockout() {
    let mut tracker = KnockTracker::for_doors(&[door("fixed", "1000,2000", &[], 5)], 100);
    let t = Instant::now();
    let mut out = Vec::new();
    tracker.judge(ip("192.0.2.1"), "2000".parse().unwrap(), t, &mut out);
    let fixed = ["1000".parse().unwrap(), "2000".parse().unwrap()];
    let out = knock_all(&mut tracker, ip("192.0.2.1"), &fixed, t + SEC);
    assert!(!granted(&out, 0), "{out:?}");
}
