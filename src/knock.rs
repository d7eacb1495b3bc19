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
//! The table is bounded by `max_tracked`. Expired entries go first. Then a
//! newcomer evicts the stalest entry of its own kind: a new knock in progress
//! evicts the stalest in-progress entry (DESIGN.md), a new lockout the
//! lockout nearest its end; only when there is none of its kind does it
//! evict the other kind. So a flood of spoofed wrong knocks churns lockouts
//! among themselves and never pushes out a client that is halfway through
//! its sequence, and a flood of first knocks is first-in-first-out, so a
//! client gets in if it finishes before `max_tracked` newer sources arrive.
//! Losing a lockout costs little: it only lets that source knock again.
//! Grants are not tracked here (see `grants.rs`), so they are never evicted.

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
                    self.evict_one(state == LOCKED);
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

    /// Makes room for a newcomer: removes the stalest entry of its kind
    /// (the lockout ending soonest for a new lockout, the oldest knock in
    /// progress otherwise), or of the other kind if there is none.
    fn evict_one(&mut self, for_lockout: bool) {
        let (own, other) = if for_lockout {
            (&self.lockout_order, &self.progress_order)
        } else {
            (&self.progress_order, &self.lockout_order)
        };
        let victim = own.front().or_else(|| other.front());
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
mod tests;

#[cfg(test)]
mod props;
