//! Unit tests of knock.rs.

use super::*;
use crate::config::Sequence;

const SEC: Duration = Duration::from_secs(1);

fn rules(sequence: &str, max_tracked: usize) -> KnockRules {
    KnockRules {
        sequence: sequence.parse::<Sequence>().unwrap(),
        window: 10 * SEC,
        access: 30 * SEC,
        lockout: 5 * SEC,
        max_tracked,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn tracker() -> (KnockTracker, Instant) {
    (
        KnockTracker::new(&rules("1234,5678,9012", 100)),
        Instant::now(),
    )
}

#[test]
fn the_full_sequence_in_order_grants_access_for_the_access_duration() {
    let (mut t, t0) = tracker();
    assert_eq!(
        t.knock(ip(1), 1234, t0),
        Verdict::Progress {
            ip: ip(1),
            matched: 1,
            total: 3
        }
    );
    assert_eq!(
        t.knock(ip(1), 5678, t0 + SEC),
        Verdict::Progress {
            ip: ip(1),
            matched: 2,
            total: 3
        }
    );
    assert_eq!(
        t.knock(ip(1), 9012, t0 + 2 * SEC),
        Verdict::Grant {
            ip: ip(1),
            until: t0 + 32 * SEC
        }
    );
    assert_eq!(t.tracked(), 0, "progress resets after a grant");
}

#[test]
fn a_wrong_knock_locks_out_and_resets_progress() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 1234, t0);
    assert_eq!(
        t.knock(ip(1), 9012, t0 + SEC),
        Verdict::LockedOut {
            ip: ip(1),
            until: t0 + 6 * SEC
        }
    );
    // A fresh IP whose first knock is not the first port is locked out too.
    assert_eq!(
        t.knock(ip(2), 5678, t0),
        Verdict::LockedOut {
            ip: ip(2),
            until: t0 + 5 * SEC
        }
    );
}

#[test]
fn knocks_during_a_lockout_are_ignored_and_do_not_extend_it() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 1, t0);
    for (i, port) in [1234, 5678, 9012, 1].into_iter().enumerate() {
        let now = t0 + Duration::from_millis(1000 * i as u64 + 500);
        assert_eq!(
            t.knock(ip(1), port, now),
            Verdict::Ignored {
                ip: ip(1),
                until: t0 + 5 * SEC
            }
        );
    }
    // Just before the end: still ignored. At the end: judged fresh.
    assert!(matches!(
        t.knock(ip(1), 1234, t0 + 5 * SEC - Duration::from_nanos(1)),
        Verdict::Ignored { .. }
    ));
    assert_eq!(
        t.knock(ip(1), 1234, t0 + 5 * SEC),
        Verdict::Progress {
            ip: ip(1),
            matched: 1,
            total: 3
        }
    );
}

#[test]
fn lockout_expiry_restores_knocking() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 9012, t0);
    let later = t0 + 6 * SEC;
    t.knock(ip(1), 1234, later);
    t.knock(ip(1), 5678, later);
    assert!(matches!(t.knock(ip(1), 9012, later), Verdict::Grant { .. }));
}

#[test]
fn progress_older_than_the_window_is_forgotten_and_the_knock_judged_fresh() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(1), 5678, t0 + 5 * SEC);
    // Exactly at the window: still in time.
    assert!(matches!(
        t.knock(ip(1), 9012, t0 + 10 * SEC),
        Verdict::Grant { .. }
    ));

    t.knock(ip(2), 1234, t0);
    t.knock(ip(2), 5678, t0 + 5 * SEC);
    // Past the window, the last port is a wrong first knock.
    assert!(matches!(
        t.knock(ip(2), 9012, t0 + 10 * SEC + Duration::from_millis(1)),
        Verdict::LockedOut { .. }
    ));

    t.knock(ip(3), 1234, t0);
    // Past the window, the first port starts over.
    assert_eq!(
        t.knock(ip(3), 1234, t0 + 11 * SEC),
        Verdict::Progress {
            ip: ip(3),
            matched: 1,
            total: 3
        }
    );
}

#[test]
fn sequences_may_repeat_a_port() {
    let mut t = KnockTracker::new(&rules("1111,1111,2222", 100));
    let t0 = Instant::now();
    assert!(matches!(
        t.knock(ip(1), 1111, t0),
        Verdict::Progress { matched: 1, .. }
    ));
    assert!(matches!(
        t.knock(ip(1), 1111, t0),
        Verdict::Progress { matched: 2, .. }
    ));
    assert!(matches!(t.knock(ip(1), 2222, t0), Verdict::Grant { .. }));
    // A third 1111 where 2222 is expected is wrong.
    t.knock(ip(2), 1111, t0);
    t.knock(ip(2), 1111, t0);
    assert!(matches!(
        t.knock(ip(2), 1111, t0),
        Verdict::LockedOut { .. }
    ));
    // One-port sequence: every knock on it grants.
    let mut one = KnockTracker::new(&rules("7000", 100));
    assert!(matches!(one.knock(ip(1), 7000, t0), Verdict::Grant { .. }));
    assert!(matches!(one.knock(ip(1), 7000, t0), Verdict::Grant { .. }));
}

#[test]
fn a_new_sequence_after_a_grant_grants_again_with_a_later_end() {
    let (mut t, t0) = tracker();
    for port in [1234, 5678, 9012] {
        t.knock(ip(1), port, t0);
    }
    let later = t0 + 20 * SEC;
    t.knock(ip(1), 1234, later);
    t.knock(ip(1), 5678, later);
    assert_eq!(
        t.knock(ip(1), 9012, later),
        Verdict::Grant {
            ip: ip(1),
            until: later + 30 * SEC
        }
    );
}

#[test]
fn sources_are_independent() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(2), 1, t0);
    assert!(matches!(t.knock(ip(2), 5678, t0), Verdict::Ignored { .. }));
    assert!(matches!(
        t.knock(ip(1), 5678, t0),
        Verdict::Progress { matched: 2, .. }
    ));
    assert!(matches!(
        t.knock(ip(3), 1234, t0),
        Verdict::Progress { matched: 1, .. }
    ));
    assert!(matches!(t.knock(ip(1), 9012, t0), Verdict::Grant { .. }));
    assert!(matches!(
        t.knock(ip(3), 9012, t0),
        Verdict::LockedOut { .. }
    ));
}

#[test]
fn ipv4_mapped_ipv6_is_the_same_source() {
    let (mut t, t0) = tracker();
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    t.knock(mapped, 1234, t0);
    t.knock(ip(1), 5678, t0);
    assert_eq!(
        t.knock(mapped, 9012, t0),
        Verdict::Grant {
            ip: ip(1),
            until: t0 + 30 * SEC
        }
    );
}

#[test]
fn expired_entries_are_pruned_so_the_table_shrinks() {
    let (mut t, t0) = tracker();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(2), 1, t0);
    assert_eq!(t.tracked(), 2);
    t.prune(t0 + 6 * SEC);
    assert_eq!(t.tracked(), 1, "the lockout ended");
    t.prune(t0 + 11 * SEC);
    assert_eq!(t.tracked(), 0, "the window passed");
    assert_eq!(t.stats().expirations, 2);
    assert_eq!(t.stats().evictions, 0);
}

#[test]
fn a_full_table_evicts_the_stalest_in_progress_entry() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 3));
    let t0 = Instant::now();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(2), 1234, t0 + SEC);
    t.knock(ip(3), 1, t0 + SEC); // a lockout
    t.knock(ip(4), 1234, t0 + 2 * SEC);
    assert_eq!(t.tracked(), 3);
    assert_eq!(t.stats().evictions, 1);
    // ip 1 was the stalest in progress: its next knock is judged fresh.
    assert!(matches!(
        t.knock(ip(1), 5678, t0 + 2 * SEC),
        Verdict::LockedOut { .. }
    ));
    // ip 1's new lockout made room by evicting the other lockout (ip 3),
    // not a knock in progress: ip 2 and ip 4 carry on.
    assert!(matches!(
        t.knock(ip(3), 1234, t0 + 2 * SEC),
        Verdict::Progress { matched: 1, .. }
    ));
    assert_eq!(t.stats().evictions, 3, "ip 3's fresh start evicted ip 2");
    assert!(matches!(
        t.knock(ip(4), 5678, t0 + 2 * SEC),
        Verdict::Progress { matched: 2, .. }
    ));
}

#[test]
fn a_wrong_knock_flood_never_evicts_a_client_in_progress() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 100));
    let t0 = Instant::now();
    for i in 0..99u32 {
        t.knock(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), 1, t0);
    }
    let client = IpAddr::from([192, 0, 2, 7]);
    t.knock(client, 1234, t0);
    // Ten thousand more spoofed sources knock wrong while the client knocks.
    for i in 0..10_000u32 {
        t.knock(IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), 1, t0);
        assert!(t.tracked() <= 100);
    }
    assert!(matches!(
        t.knock(client, 5678, t0),
        Verdict::Progress { matched: 2, .. }
    ));
    assert!(matches!(t.knock(client, 9012, t0), Verdict::Grant { .. }));
}

#[test]
fn a_table_full_of_lockouts_evicts_the_one_ending_soonest() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 2));
    let t0 = Instant::now();
    t.knock(ip(1), 1, t0);
    t.knock(ip(2), 1, t0 + SEC);
    t.knock(ip(3), 1234, t0 + 2 * SEC);
    assert_eq!(t.tracked(), 2);
    assert!(matches!(
        t.knock(ip(2), 1234, t0 + 2 * SEC),
        Verdict::Ignored { .. }
    ));
    assert!(matches!(
        t.knock(ip(1), 1234, t0 + 2 * SEC),
        Verdict::Progress { .. }
    ));
}

#[test]
fn a_bound_of_one_still_lets_a_lone_client_in() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 1));
    let t0 = Instant::now();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(1), 5678, t0);
    assert!(matches!(t.knock(ip(1), 9012, t0), Verdict::Grant { .. }));
}

#[test]
fn order_queues_stay_proportional_to_the_table() {
    let mut t = KnockTracker::new(&rules("1234,5678", 10));
    let t0 = Instant::now();
    // One source completing over and over leaves stale queue items behind.
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_micros(i);
        t.knock(ip(1), 1234, now);
        t.knock(ip(1), 5678, now);
    }
    assert!(t.progress_order.len() <= 2 * t.entries.len() + 65);
    assert!(t.lockout_order.len() <= 2 * t.entries.len() + 65);
}

#[test]
fn a_flood_of_new_sources_holds_the_table_at_its_bound_and_spares_the_newest() {
    let bound = 1_000;
    let mut t = KnockTracker::new(&rules("1234,5678,9012", bound));
    let t0 = Instant::now();
    let flood = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x7f10_0000 + n));
    let client = ip(1);
    let mut n = 0;
    for round in 0..3u32 {
        let now = t0 + Duration::from_millis(u64::from(round));
        // Eviction goes by first knock: the client stays as long as
        // at most `bound - 1` new sources arrive between its first knock
        // and its last (here two gaps of just under half the bound).
        let verdict = t.knock(client, [1234, 5678, 9012][round as usize], now);
        assert!(!matches!(verdict, Verdict::LockedOut { .. }), "{verdict:?}");
        if round == 2 {
            assert!(matches!(verdict, Verdict::Grant { .. }));
        }
        for _ in 0..(bound - 1) / 2 {
            t.knock(flood(n), 1234, now);
            n += 1;
            assert!(t.tracked() <= bound);
        }
    }
    assert_eq!(t.tracked(), bound);
    assert_eq!(t.oldest_in_progress(), Some(flood(n - bound as u32)));
    // Every source but the granted client went in; the bound pushed the rest out.
    assert_eq!(t.stats().evictions, u64::from(n) - bound as u64);
    assert!(t.heap_bytes() <= 128 * bound);
}
