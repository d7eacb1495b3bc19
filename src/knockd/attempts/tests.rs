use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::config::KnockPort;

fn rule(ports: &[u16], timeout: u64) -> DoorRule {
    DoorRule {
        sequence: Some(ports.iter().map(|&p| KnockPort::udp(p)).collect()),
        timeout: Duration::from_secs(timeout),
        allow_duplicates: false,
        lockout: Duration::ZERO,
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

/// Knocks `ports` from `from` at `t0 + at` seconds; returns the doors opened.
fn opened(a: &mut Attempts, from: IpAddr, knocks: &[(u16, u64)], t0: Instant) -> Vec<usize> {
    let mut out = Vec::new();
    for &(port, at) in knocks {
        a.knock(
            from,
            KnockPort::udp(port),
            t0 + Duration::from_secs(at),
            &mut out,
        );
    }
    out.iter()
        .filter_map(|e| match e {
            Event::Open { door } => Some(*door),
            _ => None,
        })
        .collect()
}

#[test]
fn right_sequence_opens_and_is_forgotten() {
    let mut a = Attempts::new(vec![rule(&[1, 2, 3], 25)], 100);
    let t0 = Instant::now();
    assert_eq!(opened(&mut a, ip(1), &[(1, 0), (2, 1), (3, 2)], t0), [0]);
    assert_eq!(a.tracked(), 0);
}

#[test]
fn timeout_counts_from_the_first_knock() {
    let mut a = Attempts::new(vec![rule(&[1, 2, 3], 5)], 100);
    let t0 = Instant::now();
    let mut out = Vec::new();
    a.knock(ip(1), KnockPort::udp(1), t0, &mut out);
    a.knock(
        ip(1),
        KnockPort::udp(2),
        t0 + Duration::from_secs(4),
        &mut out,
    );
    out.clear();
    a.knock(
        ip(1),
        KnockPort::udp(3),
        t0 + Duration::from_secs(5),
        &mut out,
    );
    assert_eq!(out, [Event::Timeout { door: 0, stage: 2 }]);
}

#[test]
fn wrong_knock_breaks_and_a_duplicate_too_unless_allowed() {
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2, 3], 25)], 100);
    assert!(opened(&mut a, ip(1), &[(1, 0), (2, 0), (2, 0), (3, 0)], t0).is_empty());
    let mut dup = rule(&[1, 2, 3], 25);
    dup.allow_duplicates = true;
    let mut a = Attempts::new(vec![dup], 100);
    assert_eq!(
        opened(&mut a, ip(1), &[(1, 0), (2, 0), (2, 0), (3, 0)], t0),
        [0]
    );
}

#[test]
fn a_retry_right_after_a_broken_attempt_starts_afresh() {
    // knockd: the knock that breaks an attempt starts nothing, so the
    // retry 1,2,3 after 1,9 fails there (quirk fixed here).
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2, 3], 25)], 100);
    assert_eq!(
        opened(&mut a, ip(1), &[(1, 0), (9, 0), (1, 1), (2, 1), (3, 1)], t0),
        [0]
    );
    // A retransmitted first knock restarts at stage 1 and still opens.
    assert_eq!(
        opened(&mut a, ip(1), &[(1, 2), (1, 2), (2, 2), (3, 2)], t0),
        [0]
    );
}

#[test]
fn one_packet_starts_several_doors_and_a_one_knock_door_opens_at_once() {
    let t0 = Instant::now();
    let mut a = Attempts::new(
        vec![rule(&[1, 2], 25), rule(&[1, 3], 25), rule(&[1], 25)],
        100,
    );
    let mut out = Vec::new();
    a.knock(ip(1), KnockPort::udp(1), t0, &mut out);
    assert_eq!(
        out,
        [
            Event::Stage {
                door: 0,
                stage: 1,
                total: 2
            },
            Event::Stage {
                door: 1,
                stage: 1,
                total: 2
            },
            Event::Open { door: 2 }
        ]
    );
    out.clear();
    a.knock(ip(1), KnockPort::udp(3), t0, &mut out);
    assert_eq!(
        out,
        [Event::Broken { door: 0, stage: 1 }, Event::Open { door: 1 }]
    );
}

#[test]
fn sixteen_interleaved_sources_all_open() {
    // knockd opens 1 of 16 (quirk 1: removing the list head drops it all).
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2, 3], 25)], 100);
    let mut out = Vec::new();
    for port in [1, 2, 3] {
        for n in 1..=16 {
            a.knock(ip(n), KnockPort::udp(port), t0, &mut out);
        }
    }
    let opens = out
        .iter()
        .filter(|e| matches!(e, Event::Open { .. }))
        .count();
    assert_eq!(opens, 16);
}

#[test]
fn lockout_ignores_the_source_until_it_ends() {
    let t0 = Instant::now();
    let mut locked = rule(&[1, 2], 25);
    locked.lockout = Duration::from_secs(10);
    let mut a = Attempts::new(vec![locked], 100);
    let mut out = Vec::new();
    a.knock(ip(1), KnockPort::udp(1), t0, &mut out);
    a.knock(ip(1), KnockPort::udp(5), t0, &mut out);
    out.clear();
    a.knock(
        ip(1),
        KnockPort::udp(1),
        t0 + Duration::from_secs(9),
        &mut out,
    );
    assert_eq!(out, [Event::LockedOut]);
    assert_eq!(opened(&mut a, ip(1), &[(1, 10), (2, 10)], t0), [0]);
}

#[test]
fn a_disabled_door_is_never_started_and_live_attempts_on_it_drop() {
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2], 25)], 100);
    let mut out = Vec::new();
    a.knock(ip(1), KnockPort::udp(1), t0, &mut out);
    a.set_sequence(0, None);
    assert!(opened(&mut a, ip(1), &[(2, 0), (1, 0), (2, 0)], t0).is_empty());
    a.set_sequence(0, Some(vec![KnockPort::udp(7)]));
    assert_eq!(opened(&mut a, ip(1), &[(7, 0)], t0), [0]);
}

#[test]
fn the_table_is_bounded_and_displaces_the_oldest_source() {
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2], 25)], 4);
    let mut out = Vec::new();
    for n in 1..=10 {
        a.knock(
            ip(n),
            KnockPort::udp(1),
            t0 + Duration::from_millis(u64::from(n)),
            &mut out,
        );
        assert!(a.tracked() <= 4);
    }
    // The newest sources are kept.
    assert_eq!(opened(&mut a, ip(10), &[(2, 1)], t0), [0]);
    assert!(opened(&mut a, ip(1), &[(2, 1)], t0).is_empty());
}

#[test]
fn prune_forgets_timed_out_attempts() {
    let t0 = Instant::now();
    let mut a = Attempts::new(vec![rule(&[1, 2], 5)], 100);
    let mut out = Vec::new();
    a.knock(ip(1), KnockPort::udp(1), t0, &mut out);
    let mut timeouts = Vec::new();
    a.prune(t0 + Duration::from_secs(4), &mut timeouts);
    assert_eq!(a.tracked(), 1);
    a.prune(t0 + Duration::from_secs(5), &mut timeouts);
    assert_eq!(a.tracked(), 0);
    assert_eq!(timeouts, [(ip(1), Event::Timeout { door: 0, stage: 1 })]);
}
