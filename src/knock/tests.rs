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
    assert_eq!(t.tracked(), 1, "kept as completed until the window ends");
    // A copy of the last knock (the network duplicated it) changes
    // nothing: no second grant, no lockout.
    assert_eq!(
        t.knock(ip(1), 9012, t0 + 2 * SEC),
        Verdict::Progress {
            ip: ip(1),
            matched: 3,
            total: 3
        }
    );
    // The first port starts afresh (a renewal); the window then forgets it.
    assert_eq!(
        t.knock(ip(1), 1234, t0 + 3 * SEC),
        Verdict::Progress {
            ip: ip(1),
            matched: 1,
            total: 3
        }
    );
    t.prune(t0 + 14 * SEC);
    assert_eq!(t.tracked(), 0, "progress resets when its window ends");
}

#[test]
fn after_a_grant_another_knock_than_the_last_or_first_port_is_a_wrong_knock() {
    let (mut t, t0) = tracker();
    for (i, port) in [1234, 5678, 9012].into_iter().enumerate() {
        t.knock(ip(1), port, t0 + SEC * i as u32);
    }
    assert!(matches!(
        t.knock(ip(1), 5678, t0 + 3 * SEC),
        Verdict::LockedOut { .. }
    ));
}

#[test]
fn a_completed_sequence_is_displaced_first_and_never_ledgered() {
    // A full table of completed sequences (a sustained load of real
    // clients): a new client's first knock takes a slot at once instead of
    // going to the ledger, and its sequence completes.
    let mut t = KnockTracker::new(&rules("1234,5678", 10));
    let t0 = Instant::now();
    for n in 0..10u8 {
        t.knock(ip(100 + n), 1234, t0);
        assert!(matches!(
            t.knock(ip(100 + n), 5678, t0),
            Verdict::Grant { .. }
        ));
    }
    assert_eq!(t.tracked(), 10);
    let later = t0 + Duration::from_millis(10);
    t.knock(ip(1), 1234, later);
    assert!(matches!(t.knock(ip(1), 5678, later), Verdict::Grant { .. }));
    assert_eq!(t.stats().restored, 0, "nothing went through the ledger");
    assert_eq!(t.stats().forgotten, 0);
    // The displaced completed source's copy of its last knock is now a
    // fresh start (a wrong knock), the price of a full table.
    assert!(matches!(
        t.knock(ip(100), 5678, later),
        Verdict::LockedOut { .. }
    ));
}

#[test]
fn a_one_port_sequence_renews_on_every_knock() {
    let mut t = KnockTracker::new(&rules("1234", 100));
    let t0 = Instant::now();
    for i in 0..3u32 {
        assert!(matches!(
            t.knock(ip(1), 1234, t0 + SEC * i),
            Verdict::Grant { .. }
        ));
    }
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
    // A third 1111 where 2222 is expected repeats the knock just matched:
    // a tolerated duplicate, then 2222 grants.
    t.knock(ip(2), 1111, t0);
    t.knock(ip(2), 1111, t0);
    assert!(matches!(
        t.knock(ip(2), 1111, t0),
        Verdict::Progress { matched: 2, .. }
    ));
    assert!(matches!(t.knock(ip(2), 2222, t0), Verdict::Grant { .. }));
    // Any other port there is wrong.
    t.knock(ip(3), 1111, t0);
    t.knock(ip(3), 1111, t0);
    assert!(matches!(
        t.knock(ip(3), 3333, t0),
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
fn a_full_table_moves_the_stalest_first_knock_to_the_ledger_and_it_resumes() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 3));
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    t.knock(ip(1), 1234, t0);
    t.knock(ip(2), 1234, t0 + ms);
    t.knock(ip(3), 1, t0 + ms); // a lockout
    t.knock(ip(4), 1234, t0 + 2 * ms);
    assert_eq!(t.tracked(), 3);
    assert_eq!(t.stats().evictions, 1);
    // ip 1 was the stalest first knock: its progress went to the ledger,
    // so its next knock resumes (before: judged fresh, a wrong knock).
    assert!(matches!(
        t.knock(ip(1), 5678, t0 + 2 * ms),
        Verdict::Progress { matched: 2, .. }
    ));
    assert_eq!(t.stats().restored, 1);
    // Back in the table past its first knock, it displaced ip 2's first
    // knock (to the ledger, not the lockout); everyone still resumes.
    assert!(matches!(
        t.knock(ip(1), 9012, t0 + 3 * ms),
        Verdict::Grant { .. }
    ));
    assert!(matches!(
        t.knock(ip(2), 5678, t0 + 3 * ms),
        Verdict::Progress { matched: 2, .. }
    ));
    assert!(matches!(
        t.knock(ip(3), 1234, t0 + 3 * ms),
        Verdict::Ignored { .. }
    ));
    assert!(matches!(
        t.knock(ip(4), 5678, t0 + 3 * ms),
        Verdict::Progress { matched: 2, .. }
    ));
    assert_eq!(t.stats().forgotten, 0);
}

#[test]
fn settled_first_knocks_are_not_displaced_by_brand_new_ones() {
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 2));
    let t0 = Instant::now();
    t.knock(ip(1), 1234, t0);
    t.knock(ip(2), 1234, t0);
    // Past SETTLED, a brand-new first knock goes to the ledger instead.
    let later = t0 + SETTLED;
    t.knock(ip(3), 1234, later);
    assert_eq!(
        t.oldest_in_progress(),
        Some(ip(1)),
        "ip 1 stays in the table"
    );
    assert_eq!(t.tracked(), 2);
    assert_eq!(t.stats().evictions, 1);
    for n in 1..=3 {
        assert!(matches!(
            t.knock(ip(n), 5678, later),
            Verdict::Progress { matched: 2, .. }
        ));
    }
    // Younger than SETTLED, the oldest first knock is displaced (to the
    // ledger) as before.
    let mut young = KnockTracker::new(&rules("1234,5678,9012", 2));
    young.knock(ip(1), 1234, t0);
    young.knock(ip(2), 1234, t0);
    young.knock(ip(3), 1234, t0 + SETTLED - Duration::from_nanos(1));
    assert_eq!(young.oldest_in_progress(), Some(ip(2)));
}

#[test]
fn issue_9_item_8_a_client_half_a_second_apart_survives_a_79k_per_second_flood() {
    // The reported case scaled down 100 times: max_tracked 200 (20 000),
    // 790 (79 000) spoofed first knocks a second, knocks 0.5 s apart. The
    // table turns over every 0.25 s; before the ledger, the client was
    // evicted and its second knock locked it out.
    let bound = 200;
    let mut t = KnockTracker::new(&rules("1234,5678,9012", bound));
    let t0 = Instant::now();
    let spacing = Duration::from_secs(1) / 790;
    let client = IpAddr::from([192, 0, 2, 7]);
    let mut n = 0u32;
    let mut now = t0;
    let mut flood = |t: &mut KnockTracker, until: Instant, now: &mut Instant| {
        while *now + spacing < until {
            *now += spacing;
            t.knock(
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)),
                1234,
                *now,
            );
            n += 1;
            assert!(t.tracked() <= bound);
        }
    };
    flood(&mut t, t0 + SEC, &mut now);
    let start = now;
    for (i, port) in [1234, 5678, 9012].into_iter().enumerate() {
        let at = start + Duration::from_millis(500 * i as u64);
        flood(&mut t, at, &mut now);
        now = at;
        let verdict = t.knock(client, port, now);
        assert!(
            matches!(verdict, Verdict::Progress { .. } | Verdict::Grant { .. }),
            "knock {i}: {verdict:?}"
        );
        if i == 2 {
            assert!(matches!(verdict, Verdict::Grant { .. }));
        }
    }
    assert!(
        t.stats().restored >= 1,
        "the client came back from the ledger"
    );
}

#[test]
fn a_source_the_ledger_forgot_is_judged_as_a_fresh_start() {
    // Bound 1, ledger 2: three newer sources push ip 1's record out.
    let mut t = KnockTracker::new(&rules("1234,5678,9012", 1));
    let t0 = Instant::now();
    for n in 1..=4 {
        t.knock(ip(n), 1234, t0);
    }
    assert_eq!(t.stats().forgotten, 1);
    assert!(matches!(
        t.knock(ip(1), 1234, t0),
        Verdict::Progress { matched: 1, .. }
    ));
}

#[test]
fn issue_9_item_14_a_duplicated_knock_is_tolerated() {
    let (mut t, t0) = tracker();
    let ms = Duration::from_millis(1);
    for (i, (port, matched)) in [(1234, 1), (1234, 1), (5678, 2), (5678, 2), (5678, 2)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            t.knock(ip(1), port, t0 + ms * i as u32),
            Verdict::Progress {
                ip: ip(1),
                matched,
                total: 3
            },
            "knock {i}"
        );
    }
    assert!(matches!(
        t.knock(ip(1), 9012, t0 + 5 * ms),
        Verdict::Grant { .. }
    ));
    assert_eq!(t.stats().duplicates, 3);
    // Only the port just matched: an earlier port of the sequence is wrong.
    t.knock(ip(2), 1234, t0);
    t.knock(ip(2), 5678, t0);
    assert!(matches!(
        t.knock(ip(2), 1234, t0),
        Verdict::LockedOut { .. }
    ));
    // A duplicate of a knock in the ledger leaves the record there.
    let mut small = KnockTracker::new(&rules("1234,5678,9012", 1));
    small.knock(ip(1), 1234, t0);
    small.knock(ip(2), 1234, t0);
    assert!(matches!(
        small.knock(ip(1), 1234, t0),
        Verdict::Progress { matched: 1, .. }
    ));
    assert!(matches!(
        small.knock(ip(1), 5678, t0),
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
    assert!(t.first_order.len() + t.advanced_order.len() <= 2 * t.entries.len() + 65);
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
    // The granted client's completed sequence went first (a completed
    // sequence is displaced before anything else): the newest `bound`
    // flood sources fill the table.
    assert_eq!(t.oldest_in_progress(), Some(flood(n - bound as u32)));
    assert_eq!(t.stats().evictions, u64::from(n) - bound as u64 + 1);
    // The table stays under 128 bytes an entry; the ledger adds two
    // records of under 40 bytes (16 in the ring, the rest its index).
    assert!(t.entries.heap_bytes() <= 128 * bound);
    assert!(
        t.heap_bytes() <= (128 + 2 * 40) * bound,
        "{}",
        t.heap_bytes()
    );
}

mod doors;
mod rotating;
