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

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::KnockRules;

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

/// The state kept per tracked source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// `matched` knocks of the sequence done, the first at `first_knock`.
    InProgress { matched: u8, first_knock: Instant },
    /// Knocks ignored until `until`.
    LockedOut { until: Instant },
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
    entries: HashMap<IpAddr, Entry>,
    /// `(first_knock, ip)` of in-progress entries, oldest first. Items whose
    /// entry has since changed are stale and skipped when met.
    progress_order: VecDeque<(Instant, IpAddr)>,
    /// `(until, ip)` of lockouts, soonest end first; stale items as above.
    lockout_order: VecDeque<(Instant, IpAddr)>,
    stats: TrackerStats,
}

impl KnockTracker {
    /// A tracker applying `rules`.
    pub fn new(rules: &KnockRules) -> Self {
        Self {
            sequence: rules.sequence.ports().to_vec(),
            window: rules.window,
            access: rules.access,
            lockout: rules.lockout,
            max_tracked: rules.max_tracked.max(1),
            entries: HashMap::new(),
            progress_order: VecDeque::new(),
            lockout_order: VecDeque::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Judges a knock from `ip` on `port` at `now`. Calls must come with
    /// non-decreasing `now`.
    pub fn knock(&mut self, ip: IpAddr, port: u16, now: Instant) -> Verdict {
        let ip = ip.to_canonical();
        self.prune(now);
        let matched = match self.entries.get(&ip).copied() {
            Some(Entry::LockedOut { until }) if now < until => {
                return Verdict::Ignored { ip, until };
            }
            Some(Entry::InProgress {
                matched,
                first_knock,
            }) if now.saturating_duration_since(first_knock) <= self.window => {
                Some((usize::from(matched), first_knock))
            }
            _ => None,
        };
        let expected = self.sequence[matched.map_or(0, |(m, _)| m)];
        if port != expected {
            let until = now + self.lockout;
            self.insert(ip, Entry::LockedOut { until });
            return Verdict::LockedOut { ip, until };
        }
        let done = matched.map_or(0, |(m, _)| m) + 1;
        if done == self.sequence.len() {
            self.entries.remove(&ip);
            return Verdict::Grant {
                ip,
                until: now + self.access,
            };
        }
        let first_knock = matched.map_or(now, |(_, first_knock)| first_knock);
        let matched = u8::try_from(done).expect("sequence length is bounded by MAX_SEQUENCE_LEN");
        self.insert(
            ip,
            Entry::InProgress {
                matched,
                first_knock,
            },
        );
        Verdict::Progress {
            ip,
            matched: done,
            total: self.sequence.len(),
        }
    }

    /// Forgets entries whose window or lockout has passed at `now`.
    pub fn prune(&mut self, now: Instant) {
        while let Some(&(first_knock, ip)) = self.progress_order.front() {
            if now.saturating_duration_since(first_knock) <= self.window {
                break;
            }
            self.progress_order.pop_front();
            if self.is_current_progress(first_knock, ip) {
                self.entries.remove(&ip);
                self.stats.expirations += 1;
            }
        }
        while let Some(&(until, ip)) = self.lockout_order.front() {
            if now < until {
                break;
            }
            self.lockout_order.pop_front();
            if self.is_current_lockout(until, ip) {
                self.entries.remove(&ip);
                self.stats.expirations += 1;
            }
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

    /// Inserts or replaces `ip`'s entry, making room first if it is new and
    /// the table is full, and queues it for expiry and eviction.
    fn insert(&mut self, ip: IpAddr, entry: Entry) {
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.max_tracked {
            self.evict_one();
        }
        let previous = self.entries.insert(ip, entry);
        match entry {
            Entry::InProgress { first_knock, .. } => {
                let queued = matches!(previous, Some(Entry::InProgress { first_knock: f, .. }) if f == first_knock);
                if !queued {
                    self.progress_order.push_back((first_knock, ip));
                }
            }
            Entry::LockedOut { until } => self.lockout_order.push_back((until, ip)),
        }
        self.compact_orders();
    }

    /// Removes the stalest in-progress entry or, if none, the lockout that
    /// ends soonest.
    fn evict_one(&mut self) {
        while let Some((first_knock, ip)) = self.progress_order.pop_front() {
            if self.is_current_progress(first_knock, ip) {
                self.entries.remove(&ip);
                self.stats.evictions += 1;
                return;
            }
        }
        while let Some((until, ip)) = self.lockout_order.pop_front() {
            if self.is_current_lockout(until, ip) {
                self.entries.remove(&ip);
                self.stats.evictions += 1;
                return;
            }
        }
    }

    /// Rebuilds an order queue when stale items outnumber live entries, so
    /// the queues stay proportional to the table whatever the traffic.
    fn compact_orders(&mut self) {
        let limit = 2 * self.entries.len() + 64;
        if self.progress_order.len() > limit {
            let mut live: Vec<_> = self
                .entries
                .iter()
                .filter_map(|(&ip, entry)| match *entry {
                    Entry::InProgress { first_knock, .. } => Some((first_knock, ip)),
                    Entry::LockedOut { .. } => None,
                })
                .collect();
            live.sort_unstable();
            self.progress_order = live.into();
        }
        if self.lockout_order.len() > limit {
            let mut live: Vec<_> = self
                .entries
                .iter()
                .filter_map(|(&ip, entry)| match *entry {
                    Entry::LockedOut { until } => Some((until, ip)),
                    Entry::InProgress { .. } => None,
                })
                .collect();
            live.sort_unstable();
            self.lockout_order = live.into();
        }
    }

    fn is_current_progress(&self, first_knock: Instant, ip: IpAddr) -> bool {
        matches!(self.entries.get(&ip), Some(Entry::InProgress { first_knock: f, .. }) if *f == first_knock)
    }

    fn is_current_lockout(&self, until: Instant, ip: IpAddr) -> bool {
        matches!(self.entries.get(&ip), Some(Entry::LockedOut { until: u }) if *u == until)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
