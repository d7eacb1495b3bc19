//! Unit tests of the core with several doors (the rules in knock.rs's
//! module doc, "Doors"), with injected time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::door::parse_network;
use crate::config::{AllowList, Door, KnockPort, ProtectedPort, Proto, Timing};
use crate::knock::{Judged, KnockTracker, Verdict};

const SEC: Duration = Duration::from_secs(1);

/// A door named `name` knocked on `ports` (`"1000,2000:tcp"`), opening
/// tcp/22, window 10 s, access 30 s, lockout `lockout` s, for `allow`
/// (everything if empty).
pub(super) fn door(name: &str, ports: &str, allow: &[&str], lockout: u32) -> Door {
    let sequence = ports.split(',').map(|p| p.parse().unwrap()).collect();
    let allow = if allow.is_empty() {
        AllowList::everything()
    } else {
        AllowList::new(allow.iter().map(|n| parse_network(n).unwrap()).collect()).unwrap()
    };
    let timing = Timing {
        window: 10 * SEC,
        access: 30 * SEC,
        lockout: lockout * SEC,
    };
    Door::new(
        name.parse().unwrap(),
        sequence,
        timing,
        vec![ProtectedPort::tcp(22)],
        allow,
    )
    .unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn udp(port: u16) -> KnockPort {
    KnockPort::udp(port)
}

/// Judges one knock and returns its verdicts.
fn judge(t: &mut KnockTracker, ip: IpAddr, knock: KnockPort, now: Instant) -> Vec<Judged> {
    let mut out = Vec::new();
    t.judge(ip, knock, now, &mut out);
    assert!(!out.is_empty(), "every knock gets a verdict");
    out
}

fn progress(door: u16, ip: IpAddr, matched: usize, total: usize) -> Judged {
    Judged {
        door,
        verdict: Verdict::Progress { ip, matched, total },
    }
}

fn grant(door: u16, ip: IpAddr, until: Instant) -> Judged {
    Judged {
        door,
        verdict: Verdict::Grant { ip, until },
    }
}

fn locked(door: u16, ip: IpAddr, until: Instant) -> Judged {
    Judged {
        door,
        verdict: Verdict::LockedOut { ip, until },
    }
}

#[test]
fn each_door_progresses_independently_per_source() {
    let doors = [
        door("a", "1000,1001,1002", &[], 5),
        door("b", "2000,2001", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    assert_eq!(judge(&mut t, c, udp(1000), t0), [progress(0, c, 1, 3)]);
    assert_eq!(
        judge(&mut t, c, udp(2000), t0 + SEC),
        [progress(1, c, 1, 2)]
    );
    assert_eq!(
        judge(&mut t, c, udp(1001), t0 + 2 * SEC),
        [progress(0, c, 2, 3)]
    );
    let other = ip("192.0.2.8");
    assert_eq!(
        judge(&mut t, other, udp(1000), t0 + 2 * SEC),
        [progress(0, other, 1, 3)]
    );
    assert_eq!(
        judge(&mut t, c, udp(2001), t0 + 3 * SEC),
        [grant(1, c, t0 + 33 * SEC)]
    );
    assert_eq!(
        judge(&mut t, c, udp(1002), t0 + 4 * SEC),
        [grant(0, c, t0 + 34 * SEC)]
    );
    assert_eq!(t.stats().resets, 0);
}

#[test]
fn a_knock_that_advances_no_door_but_belongs_to_one_locks_the_source_out_of_every_door() {
    let doors = [
        door("a", "1000,1001,1002", &[], 5),
        door("b", "2000,2001", &[], 7),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    judge(&mut t, c, udp(1000), t0);
    // 2001 is door b's second knock: wrong for b (no progress there).
    assert_eq!(
        judge(&mut t, c, udp(2001), t0 + SEC),
        [locked(1, c, t0 + 8 * SEC)]
    );
    let ignored = judge(&mut t, c, udp(1001), t0 + 2 * SEC);
    assert!(matches!(
        ignored[..],
        [Judged {
            door: 0,
            verdict: Verdict::Ignored { .. }
        }]
    ));
    let ignored = judge(&mut t, c, udp(2000), t0 + 2 * SEC);
    assert!(matches!(
        ignored[..],
        [Judged {
            door: 1,
            verdict: Verdict::Ignored { .. }
        }]
    ));
    // After the lockout door a's progress (its window still running) was
    // not reset: the lockout only ignored knocks meanwhile.
    assert_eq!(
        judge(&mut t, c, udp(1001), t0 + 8 * SEC),
        [progress(0, c, 2, 3)]
    );
}

#[test]
fn a_port_of_no_door_is_a_wrong_knock_with_the_longest_lockout() {
    let doors = [
        door("a", "1000,1001", &[], 5),
        door("b", "2000,2001", &[], 7),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    assert_eq!(
        judge(&mut t, c, udp(4444), t0),
        [locked(0, c, t0 + 7 * SEC)]
    );
}

#[test]
fn the_protocol_must_match() {
    let doors = [
        door("a", "1000:tcp,1001", &[], 5),
        door("b", "2000,2001", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    // A UDP knock on a TCP knock port belongs to no door: wrong.
    assert!(matches!(
        judge(&mut t, c, udp(1000), t0)[..],
        [Judged {
            verdict: Verdict::LockedOut { .. },
            ..
        }]
    ));
    let d = ip("192.0.2.8");
    let tcp = KnockPort {
        port: 1000,
        proto: Proto::Tcp,
    };
    assert_eq!(judge(&mut t, d, tcp, t0), [progress(0, d, 1, 2)]);
    assert_eq!(
        judge(&mut t, d, udp(1001), t0),
        [grant(0, d, t0 + 30 * SEC)]
    );
}

#[test]
fn a_port_shared_by_doors_advances_each_and_one_packet_completes_one_door_while_advancing_another()
{
    let doors = [
        door("a", "1000,1001", &[], 5),
        door("b", "1000,1001,1002", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    assert_eq!(
        judge(&mut t, c, udp(1000), t0),
        [progress(0, c, 1, 2), progress(1, c, 1, 3)]
    );
    assert_eq!(
        judge(&mut t, c, udp(1001), t0 + SEC),
        [grant(0, c, t0 + 31 * SEC), progress(1, c, 2, 3)]
    );
    assert_eq!(
        judge(&mut t, c, udp(1002), t0 + 2 * SEC),
        [grant(1, c, t0 + 32 * SEC)]
    );
}

#[test]
fn a_knock_one_door_takes_resets_another_doors_progress_without_a_lockout() {
    let doors = [
        door("a", "1000,3000", &[], 5),
        door("b", "2000,2001,1000", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    assert_eq!(judge(&mut t, c, udp(2000), t0), [progress(1, c, 1, 3)]);
    // b expects 2001: 1000 is wrong for b (its progress resets), but door
    // a takes it, so no lockout.
    assert_eq!(
        judge(&mut t, c, udp(1000), t0 + SEC),
        [progress(0, c, 1, 2)]
    );
    assert_eq!(t.stats().resets, 1);
    // b starts afresh: 2001 is now wrong for b, and only b has it.
    assert_eq!(
        judge(&mut t, c, udp(2001), t0 + 2 * SEC),
        [locked(1, c, t0 + 7 * SEC)]
    );
}

#[test]
fn a_port_repeated_in_one_sequence_and_shared_with_another_door_works() {
    let doors = [
        door("a", "1000,1000,2000", &[], 5),
        door("b", "1000,3000", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (c, t0) = (ip("192.0.2.7"), Instant::now());
    assert_eq!(
        judge(&mut t, c, udp(1000), t0),
        [progress(0, c, 1, 3), progress(1, c, 1, 2)]
    );
    // a advances; on b it is a duplicate of the knock just matched.
    assert_eq!(
        judge(&mut t, c, udp(1000), t0),
        [progress(0, c, 2, 3), progress(1, c, 1, 2)]
    );
    assert_eq!(
        judge(&mut t, c, udp(2000), t0),
        [grant(0, c, t0 + 30 * SEC)]
    );
    assert_eq!(
        judge(&mut t, c, udp(3000), t0),
        [grant(1, c, t0 + 30 * SEC)]
    );
}

#[test]
fn a_source_outside_a_doors_allow_list_is_ignored_there_and_counted() {
    let doors = [
        door("lan", "1000,1001", &["192.0.2.0/24"], 5),
        door("all", "1000,2000", &[], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (out, t0) = (ip("198.51.100.7"), Instant::now());
    let not_allowed = Judged {
        door: 0,
        verdict: Verdict::NotAllowed { ip: out },
    };
    assert_eq!(
        judge(&mut t, out, udp(1000), t0),
        [not_allowed, progress(1, out, 1, 2)]
    );
    // 1001 belongs to "lan" only: ignored, no lockout, no progress lost.
    assert_eq!(judge(&mut t, out, udp(1001), t0), [not_allowed]);
    assert_eq!(
        judge(&mut t, out, udp(2000), t0),
        [grant(1, out, t0 + 30 * SEC)]
    );
    assert_eq!(t.stats().not_allowed, 2);
    let lan = ip("192.0.2.7");
    judge(&mut t, lan, udp(1000), t0);
    assert_eq!(
        judge(&mut t, lan, udp(1001), t0),
        [grant(0, lan, t0 + 30 * SEC)]
    );
}

#[test]
fn a_source_no_door_allows_never_opens_nor_locks_out() {
    let doors = [
        door("lan", "1000,1001", &["192.0.2.0/24"], 5),
        door("v6", "2000", &["2001:db8::/32"], 5),
    ];
    let mut t = KnockTracker::for_doors(&doors, 100);
    let (out, t0) = (ip("198.51.100.7"), Instant::now());
    for port in [1000, 1001, 2000, 4444] {
        let verdicts = judge(&mut t, out, udp(port), t0);
        assert!(
            verdicts
                .iter()
                .all(|j| j.verdict == Verdict::NotAllowed { ip: out }),
            "{verdicts:?}"
        );
    }
    assert_eq!(t.tracked(), 0);
}

#[test]
fn the_table_is_bounded_in_total_not_per_door() {
    let doors: Vec<Door> = (0..10u16)
        .map(|i| {
            door(
                &format!("d{i}"),
                &format!("{},{}", 1000 + i, 2000 + i),
                &[],
                5,
            )
        })
        .collect();
    let mut t = KnockTracker::for_doors(&doors, 16);
    let t0 = Instant::now();
    for n in 0..200u32 {
        let source = IpAddr::from(std::net::Ipv4Addr::from(0xc000_0200 + n));
        for i in 0..10u16 {
            judge(&mut t, source, udp(1000 + i), t0);
            assert!(t.tracked() <= 16, "{} tracked", t.tracked());
        }
    }
}
