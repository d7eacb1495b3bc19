//! knockd's attempt matching, as a pure state machine (time passed in).
//!
//! knockd keeps a list of attempts, one per (source, door) in progress, and
//! on each packet (`sniff`, `process_attempt`; research note §2.5):
//! attempts older than their door's `Seq_Timeout` (from the first knock)
//! expire; if the source has live attempts, each is advanced by the right
//! knock or broken by any other (a copy of the knock just matched too); a
//! source without one starts an attempt on every door whose first knock
//! this is (a one-knock door opens at once).
//!
//! Kept: all of that, in file order. Fixed (README, "Migrating from
//! knockd"): the state is a map by source, O(1) per knock (knockd scans a
//! list twice per packet and loses the whole list when its head is
//! removed: 15 of 16 concurrent sequences lost); a knock that breaks an
//! attempt may start a door whose first knock it is (in knockd it starts
//! nothing, so a client retrying at once always fails). Options: a door's
//! `AllowDuplicates` ignores a copy of the knock just matched (PR #72), and
//! its `Lockout` ignores a source for that long after a broken attempt.
//! Bounded: at most `max_sources` sources are tracked; a new source then
//! displaces the one that started longest ago.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::KnockPort;

/// A door's rules as matching sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorRule {
    /// The knocks (None: a one-time door whose file is exhausted).
    pub sequence: Option<Vec<KnockPort>>,
    /// `Seq_Timeout`.
    pub timeout: Duration,
    /// `AllowDuplicates`.
    pub allow_duplicates: bool,
    /// `Lockout` (zero: off, knockd's behaviour).
    pub lockout: Duration,
}

/// What one knock did, per door (index in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The attempt advanced to `stage` knocks of `total`.
    Stage {
        /// Door index.
        door: usize,
        /// Knocks matched.
        stage: usize,
        /// Sequence length.
        total: usize,
    },
    /// The sequence is complete: "OPEN SESAME".
    Open {
        /// Door index.
        door: usize,
    },
    /// The attempt ran past `Seq_Timeout` at stage `stage`.
    Timeout {
        /// Door index.
        door: usize,
        /// Knocks it had matched.
        stage: usize,
    },
    /// A wrong knock broke the attempt at stage `stage`.
    Broken {
        /// Door index.
        door: usize,
        /// Knocks it had matched.
        stage: usize,
    },
    /// The knock was ignored: the source is locked out.
    LockedOut,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    door: usize,
    stage: usize,
    first: Instant,
}

#[derive(Debug, Default)]
struct Source {
    attempts: Vec<Attempt>,
    locked_until: Option<Instant>,
    since: Option<Instant>,
}

/// Every source's attempts.
#[derive(Debug)]
pub struct Attempts {
    doors: Vec<DoorRule>,
    sources: HashMap<IpAddr, Source>,
    /// Sources in the order they were first tracked (stale entries are
    /// skipped): who is displaced when the map is full.
    order: VecDeque<(IpAddr, Instant)>,
    max_sources: usize,
}

impl Attempts {
    /// Matching for `doors`, tracking at most `max_sources` sources (at least 1).
    pub fn new(doors: Vec<DoorRule>, max_sources: usize) -> Self {
        Self {
            doors,
            sources: HashMap::new(),
            order: VecDeque::new(),
            max_sources: max_sources.max(1),
        }
    }

    /// The rule of door `door`.
    pub fn rule(&self, door: usize) -> &DoorRule {
        &self.doors[door]
    }

    /// Replaces door `door`'s sequence (a one-time door's next line, or
    /// None when its file is exhausted); attempts on it are dropped.
    pub fn set_sequence(&mut self, door: usize, sequence: Option<Vec<KnockPort>>) {
        self.doors[door].sequence = sequence;
        for source in self.sources.values_mut() {
            source.attempts.retain(|a| a.door != door);
        }
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Judges `knock` from `ip` at `now`; appends what happened to `out`.
    pub fn knock(&mut self, ip: IpAddr, knock: KnockPort, now: Instant, out: &mut Vec<Event>) {
        let ip = ip.to_canonical();
        let doors = &self.doors;
        let mut opened = Vec::new();
        let mut live_doors = Vec::new();
        if let Some(source) = self.sources.get_mut(&ip) {
            if source.locked_until.is_some_and(|until| now < until) {
                out.push(Event::LockedOut);
                return;
            }
            source.locked_until = None;
            let mut lock = Duration::ZERO;
            source.attempts.retain_mut(|attempt| {
                let rule = &doors[attempt.door];
                let Some(sequence) = rule.sequence.as_deref() else {
                    return false;
                };
                if now.saturating_duration_since(attempt.first) >= rule.timeout {
                    out.push(Event::Timeout {
                        door: attempt.door,
                        stage: attempt.stage,
                    });
                    return false;
                }
                if sequence[attempt.stage] == knock {
                    attempt.stage += 1;
                    if attempt.stage == sequence.len() {
                        out.push(Event::Open { door: attempt.door });
                        opened.push(attempt.door);
                        return false;
                    }
                    out.push(Event::Stage {
                        door: attempt.door,
                        stage: attempt.stage,
                        total: sequence.len(),
                    });
                    return true;
                }
                if rule.allow_duplicates && sequence[attempt.stage - 1] == knock {
                    return true;
                }
                out.push(Event::Broken {
                    door: attempt.door,
                    stage: attempt.stage,
                });
                lock = lock.max(rule.lockout);
                false
            });
            live_doors.extend(source.attempts.iter().map(|a| a.door));
            if !lock.is_zero() {
                source.attempts.clear();
                source.locked_until = Some(now + lock);
                return;
            }
        }
        // Start every door whose first knock this is and that has no live
        // attempt from this source (and was not just opened by it).
        for door in 0..self.doors.len() {
            let Some(sequence) = self.doors[door].sequence.as_deref() else {
                continue;
            };
            if sequence[0] != knock || live_doors.contains(&door) || opened.contains(&door) {
                continue;
            }
            let total = sequence.len();
            if total == 1 {
                out.push(Event::Open { door });
                continue;
            }
            out.push(Event::Stage {
                door,
                stage: 1,
                total,
            });
            let attempt = Attempt {
                door,
                stage: 1,
                first: now,
            };
            self.source_mut(ip, now).attempts.push(attempt);
        }
        if let Some(source) = self.sources.get(&ip) {
            if source.attempts.is_empty() && source.locked_until.is_none() {
                self.sources.remove(&ip);
            }
        }
    }

    fn source_mut(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) {
            while self.sources.len() >= self.max_sources {
                let Some((old, since)) = self.order.pop_front() else {
                    break;
                };
                if self.sources.get(&old).and_then(|s| s.since) == Some(since) {
                    self.sources.remove(&old);
                }
            }
            if self.order.len() > 2 * self.max_sources + 16 {
                let sources = &self.sources;
                self.order
                    .retain(|(ip, since)| sources.get(ip).and_then(|s| s.since) == Some(*since));
            }
            self.order.push_back((ip, now));
            self.sources.insert(
                ip,
                Source {
                    since: Some(now),
                    ..Source::default()
                },
            );
        }
        self.sources.get_mut(&ip).expect("inserted")
    }

    /// Forgets attempts past their timeout and ended lockouts (knockd
    /// expires only when a packet arrives; this is called by a timer so
    /// the state never outlives its windows). Appends the timeouts.
    pub fn prune(&mut self, now: Instant, out: &mut Vec<(IpAddr, Event)>) {
        let doors = &self.doors;
        self.sources.retain(|ip, source| {
            source.attempts.retain(|attempt| {
                let rule = &doors[attempt.door];
                let over = now.saturating_duration_since(attempt.first) >= rule.timeout;
                if over {
                    out.push((
                        *ip,
                        Event::Timeout {
                            door: attempt.door,
                            stage: attempt.stage,
                        },
                    ));
                }
                !over
            });
            if source.locked_until.is_some_and(|until| now >= until) {
                source.locked_until = None;
            }
            !source.attempts.is_empty() || source.locked_until.is_some()
        });
    }
}

#[cfg(test)]
mod tests;
