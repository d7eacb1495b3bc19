//! The core: a pure state machine that judges knocks.
//!
//! No I/O and no clock of its own: every call takes `now`, so each rule of
//! DESIGN.md is a plain unit test. The I/O shell (`server.rs`) feeds it
//! `(source IP, port, now)` and carries out the [`Verdict`] it returns.
//!
//! For a knock from `ip` on port `p` at `now`:
//! 1. `ip` locked out (`now < until`): ignored; the lockout is not extended.
//! 2. Progress older than the window (`now - first_knock > window`) is
//!    forgotten; the knock is judged as a fresh start.
//! 3. `p` is the next expected port: advance. Completing the sequence yields
//!    [`Verdict::Grant`] and resets the progress.
//! 4. Anything else is a wrong knock: [`Verdict::LockedOut`], progress reset.
//!
//! The table is bounded by `max_tracked`: expired entries go first, then the
//! stalest in-progress entry is evicted; only when every entry is a lockout
//! does the lockout nearest its end make room. Grants are not tracked here
//! (see `grants.rs`), so they are never evicted.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::KnockRules;

mod table;

use table::{Entries, Key, LOCKED, Order};

/// What the core decided about one knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The knock was the next expected port; `matched` of `total` done.
    Progress {
        /// Source of the knock.
        ip: IpAddr,
        /// Knocks matched so far, including this one.
        matched: usize,
        /// Length of the sequence.
        total: usize,
    },
    /// The sequence is complete: open access for `ip` until `until`.
    Grant {
        /// Source that completed the sequence.
        ip: IpAddr,
        /// End of the access.
        until: Instant,
    },
    /// A wrong knock: `ip` is locked out until `until`.
    LockedOut {
        /// Source of the wrong knock.
        ip: IpAddr,
        /// End of the lockout.
        until: Instant,
    },
    /// The knock was ignored because `ip` is locked out until `until`.
    Ignored {
        /// Source of the ignored knock.
        ip: IpAddr,
        /// End of the (unchanged) lockout.
        until: Instant,
    },
}

impl Verdict {
    /// Short name of the verdict, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Progress { .. } => "progress",
            Verdict::Grant { .. } => "grant",
            Verdict::LockedOut { .. } => "locked_out",
            Verdict::Ignored { .. } => "ignored",
        }
    }
}

/// Counters of what the tracker did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Entries removed to make room while the table was full.
    pub evictions: u64,
    /// Entries removed because their window or lockout had passed.
    pub expirations: u64,
}

/// Tracks every source IP's progress through the knock sequence.
#[derive(Debug)]
pub struct KnockTracker {
    sequence: Vec<u16>,
    window: Duration,
    access: Duration,
    lockout: Duration,
    max_tracked: usize,
    /// Times are kept as nanoseconds since this instant (the first `now`
    /// seen): 8 bytes instead of 16, and exact, so verdicts carry the very
    /// instants the rules define.
    epoch: Option<Instant>,
    entries: Entries,
    /// In-progress entries by first knock, oldest first.
    progress_order: Order,
    /// Lockouts by end, soonest first.
    lockout_order: Order,
    stats: TrackerStats,
}

impl KnockTracker {
    /// A tracker applying `rules`.
    pub fn new(rules: &KnockRules) -> Self {
        let max_tracked = rules.max_tracked.max(1);
        Self {
            sequence: rules.sequence.ports().to_vec(),
            window: rules.window,
            access: rules.access,
            lockout: rules.lockout,
            max_tracked,
            epoch: None,
            entries: Entries::new(max_tracked),
            progress_order: Order::new(),
            lockout_order: Order::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Judges a knock from `ip` on `port` at `now`. Calls must come with
    /// non-decreasing `now`.
    pub fn knock(&mut self, ip: IpAddr, port: u16, now: Instant) -> Verdict {
        let ip = ip.to_canonical();
        let key = Key::from_ip(ip);
        let t = self.ticks(now);
        self.prune_ticks(t);
        let found = self.entries.find(&key);
        let mut progress = None;
        if let Some(slot) = found.map(|at| *self.entries.slot(at)) {
            if slot.state == LOCKED {
                if t < slot.at {
                    return Verdict::Ignored {
                        ip,
                        until: self.instant(slot.at),
                    };
                }
            } else if t.saturating_sub(slot.at) <= nanos(self.window) {
                progress = Some(usize::from(slot.state));
            }
        }
        let matched = progress.unwrap_or(0);
        if port != self.sequence[matched] {
            let until = t.saturating_add(nanos(self.lockout));
            self.place(found, key, LOCKED, until);
            return Verdict::LockedOut {
                ip,
                until: now + self.lockout,
            };
        }
        let done = matched + 1;
        if done == self.sequence.len() {
            if let Some(at) = found {
                self.drop_entry(at);
            }
            return Verdict::Grant {
                ip,
                until: now + self.access,
            };
        }
        let state = u8::try_from(done).expect("sequence length is bounded by MAX_SEQUENCE_LEN");
        match (found, progress) {
            // Advancing keeps the first knock, so the place in the order.
            (Some(at), Some(_)) => self.entries.slot_mut(at).state = state,
            _ => self.place(found, key, state, t),
        }
        Verdict::Progress {
            ip,
            matched: done,
            total: self.sequence.len(),
        }
    }

    /// Forgets entries whose window or lockout has passed at `now`.
    pub fn prune(&mut self, now: Instant) {
        if self.epoch.is_some() {
            let t = self.ticks(now);
            self.prune_ticks(t);
        }
    }

    /// Number of tracked source IPs (in progress or locked out).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// What the tracker has done so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Length of a complete sequence.
    pub fn sequence_len(&self) -> usize {
        self.sequence.len()
    }

    /// Bytes the table holds on the heap now (slab and index).
    pub fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes()
    }

    fn ticks(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        nanos(now.saturating_duration_since(epoch))
    }

    fn instant(&self, ticks: u64) -> Instant {
        self.epoch.expect("set by the first call") + Duration::from_nanos(ticks)
    }

    fn prune_ticks(&mut self, t: u64) {
        let window = nanos(self.window);
        while let Some(at) = self.progress_order.front() {
            if t.saturating_sub(self.entries.slot(at).at) <= window {
                break;
            }
            self.drop_entry(at);
            self.stats.expirations += 1;
        }
        while let Some(at) = self.lockout_order.front() {
            if t < self.entries.slot(at).at {
                break;
            }
            self.drop_entry(at);
            self.stats.expirations += 1;
        }
    }

    /// Gives `key` the state `state` from time `at`, appended as the newest
    /// of its order; a new key first makes room if the table is full.
    fn place(&mut self, found: Option<u32>, key: Key, state: u8, at: u64) {
        let slot = match found {
            Some(slot) => {
                self.unlink(slot);
                let entry = self.entries.slot_mut(slot);
                entry.state = state;
                entry.at = at;
                slot
            }
            None => {
                if self.entries.len() >= self.max_tracked {
                    self.evict_one();
                }
                self.entries.add(key, state, at)
            }
        };
        let order = if state == LOCKED {
            &mut self.lockout_order
        } else {
            &mut self.progress_order
        };
        order.push_back(&mut self.entries, slot);
    }

    /// Removes the stalest in-progress entry or, if none, the lockout that
    /// ends soonest.
    fn evict_one(&mut self) {
        let victim = self
            .progress_order
            .front()
            .or_else(|| self.lockout_order.front());
        if let Some(at) = victim {
            self.drop_entry(at);
            self.stats.evictions += 1;
        }
    }

    fn drop_entry(&mut self, at: u32) {
        self.unlink(at);
        self.entries.remove(at);
    }

    #[cfg(test)]
    fn oldest_in_progress(&self) -> Option<IpAddr> {
        self.progress_order
            .front()
            .map(|at| self.entries.slot(at).ip())
    }

    /// Takes slot `at` out of the order its state puts it in.
    fn unlink(&mut self, at: u32) {
        let order = if self.entries.slot(at).state == LOCKED {
            &mut self.lockout_order
        } else {
            &mut self.progress_order
        };
        order.unlink(&mut self.entries, at);
    }
}

/// A duration in nanoseconds, saturating (durations are bounded by config).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
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
        // ip 2 was evicted to make room for ip 1's lockout; ip 3 stays locked out.
        assert!(matches!(
            t.knock(ip(3), 1234, t0 + 2 * SEC),
            Verdict::Ignored { .. }
        ));
        assert!(matches!(
            t.knock(ip(4), 5678, t0 + 2 * SEC),
            Verdict::Progress { matched: 2, .. }
        ));
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
}

#[cfg(test)]
mod props;
