//! Judging one knock: which doors it concerns, the lockout, and each
//! door's progress (the rules are in the module doc of `knock.rs`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::KnockPort;

use super::table::{COMPLETED, Key, LOCKED};
use super::{DoorId, Judged, KnockTracker, Verdict, nanos, to_state};

impl KnockTracker {
    /// Judges a knock from `ip` on `knock` at `now` (see the module doc)
    /// and appends its verdicts to `out`: at least one, at most one per
    /// door using the port plus one. A source no door allows gets
    /// [`Verdict::NotAllowed`] (door 0 for a port of no door). Calls must
    /// come with non-decreasing `now`. Allocates nothing once `out` and
    /// the table have grown.
    pub fn judge(&mut self, ip: IpAddr, knock: KnockPort, now: Instant, out: &mut Vec<Judged>) {
        let start = out.len();
        self.judge_core(ip, knock, now, out);
        // Verdicts name the configuration's door, not the core door (a
        // rotating door is three core doors: `knock/doors.rs`).
        for judged in &mut out[start..] {
            judged.door = self.doors.doors[usize::from(judged.door)].owner;
        }
    }

    fn judge_core(&mut self, ip: IpAddr, knock: KnockPort, now: Instant, out: &mut Vec<Judged>) {
        let ip = ip.to_canonical();
        let t = self.ticks(now);
        self.prune_ticks(t);
        let (lo, hi) = self.doors.range(knock);
        let mut first_door = None;
        for i in lo..hi {
            let door = self.doors.member(i);
            if self.doors.doors[usize::from(door)].allows(ip) {
                first_door.get_or_insert(door);
            } else {
                self.stats.not_allowed += 1;
                out.push(Judged {
                    door,
                    verdict: Verdict::NotAllowed { ip },
                });
            }
        }
        let stray = lo == hi;
        if stray {
            first_door = self.doors.first_allowing(ip);
            if first_door.is_none() {
                self.stats.not_allowed += 1;
                out.push(Judged {
                    door: 0,
                    verdict: Verdict::NotAllowed { ip },
                });
            }
        }
        let Some(first_door) = first_door else {
            return;
        };
        let lock_key = Key::new(ip, self.lock_door);
        // No lookup while nobody is locked out (the common case).
        let lock = if self.lockout_order.front().is_some() {
            self.entries.find(&lock_key)
        } else {
            None
        };
        if let Some(at) = lock {
            let slot = *self.entries.slot(at);
            if slot.state == LOCKED && t < slot.at && self.opens_attempt(ip, knock, lo, hi) {
                // A rotating door's correct first knock: a spoofer cannot
                // know it, so the lockout (perhaps aimed at this source
                // by a forged wrong knock) does not hold it back.
                self.stats.lockouts_lifted += 1;
                self.drop_entry(at);
            } else if slot.state == LOCKED && t < slot.at {
                out.push(Judged {
                    door: first_door,
                    verdict: Verdict::Ignored {
                        ip,
                        until: self.instant(slot.at),
                    },
                });
                return;
            }
        }
        if stray && self.doors.len() == 1 {
            // One door: a stray knock is wrong for it and resets its
            // progress, in the table or the ledger (as before doors).
            let wrong = self.judge_door(ip, 0, knock, t, now);
            debug_assert!(wrong.is_none(), "a stray knock matches no door");
        }
        let mut taken = false;
        let mut lockout = if stray {
            self.max_lockout
        } else {
            Duration::ZERO
        };
        for i in lo..hi {
            let door = self.doors.member(i);
            let rules = &self.doors.doors[usize::from(door)];
            if !rules.allows(ip) {
                continue;
            }
            let door_lockout = rules.lockout;
            if rules.used {
                // A rotating sequence that already opened its door: a
                // replay, wrong from any source.
                lockout = lockout.max(door_lockout);
                continue;
            }
            match self.judge_door(ip, door, knock, t, now) {
                Some(verdict) => {
                    taken = true;
                    out.push(Judged { door, verdict });
                }
                None => lockout = lockout.max(door_lockout),
            }
        }
        if taken {
            return;
        }
        let until = t.saturating_add(nanos(lockout));
        let found = self.entries.find(&lock_key);
        self.place(found, lock_key, LOCKED, until, None);
        out.push(Judged {
            door: first_door,
            verdict: Verdict::LockedOut {
                ip,
                until: now + lockout,
            },
        });
    }

    /// Whether `knock` is the first knock of an accepted, unused rotating
    /// sequence of a door `ip` may use (among the doors `lo..hi` of the
    /// port): the one knock that lifts a lockout (see `knock.rs`).
    fn opens_attempt(&self, ip: IpAddr, knock: KnockPort, lo: usize, hi: usize) -> bool {
        (lo..hi).any(|i| {
            let rules = &self.doors.doors[usize::from(self.doors.member(i))];
            rules.period.is_some()
                && !rules.used
                && rules.sequence.first() == Some(&knock)
                && rules.allows(ip)
        })
    }

    /// Judges `knock` for one door `ip` may use: its verdict, or None if
    /// the knock is wrong for this door (its progress there is dropped).
    fn judge_door(
        &mut self,
        ip: IpAddr,
        door: DoorId,
        knock: KnockPort,
        t: u64,
        now: Instant,
    ) -> Option<Verdict> {
        let key = Key::new(ip, door);
        let rules = &self.doors.doors[usize::from(door)];
        let (window, access, total) = (rules.window, rules.access, rules.sequence.len());
        let found = self.entries.find(&key);
        // Live progress: (matched, first knock), from the table or the ledger.
        let mut progress = None;
        let mut fingerprint = None;
        if let Some(slot) = found.map(|at| *self.entries.slot(at)) {
            // A LOCKED slot here (one door: the lockout's own entry) has
            // ended, or the knock would have been ignored: a fresh start.
            if slot.state != LOCKED && t.saturating_sub(slot.at) <= window {
                let matched = match slot.state {
                    COMPLETED => total,
                    state => usize::from(state),
                };
                progress = Some((matched, slot.at));
            }
        } else if !self.ledger.is_empty() {
            let fp = self.ledger.fingerprint(&key);
            fingerprint = Some(fp);
            if let Some((matched, first)) = self.ledger.take(fp) {
                if t.saturating_sub(first) <= window {
                    self.stats.restored += 1;
                    progress = Some((usize::from(matched), first));
                }
            }
        }
        let sequence = &self.doors.doors[usize::from(door)].sequence;
        let (matched, first) = match progress {
            // Completed within the window: a copy of the last knock changes
            // nothing; any other knock starts afresh (see the module doc).
            Some((done, _)) if done == total => {
                if knock == sequence[total - 1] && knock != sequence[0] {
                    self.stats.duplicates += 1;
                    return Some(Verdict::Progress {
                        ip,
                        matched: total,
                        total,
                    });
                }
                (0, t)
            }
            other => other.unwrap_or((0, t)),
        };
        if knock != sequence[matched] {
            if matched > 0 && knock == sequence[matched - 1] {
                // A duplicate of the knock just matched: nothing changes (a
                // record taken from the ledger goes back).
                self.stats.duplicates += 1;
                if let (None, Some(fp)) = (found, fingerprint) {
                    self.stats.forgotten += self.ledger.remember(fp, to_state(matched), first);
                }
                return Some(Verdict::Progress { ip, matched, total });
            }
            // Wrong for this door: its progress is reset (a record taken
            // from the ledger stays taken).
            if matched > 0 {
                self.stats.resets += 1;
            }
            if let Some(at) = found {
                self.drop_entry(at);
            }
            return None;
        }
        let done = matched + 1;
        if done == total {
            if total > 1 {
                // Kept as completed until the window ends (while there is
                // room), so a copy of this last knock is a duplicate, not a
                // wrong knock.
                self.place(found, key, COMPLETED, first, fingerprint);
            } else if let Some(at) = found {
                self.drop_entry(at);
            }
            self.mark_used(door);
            return Some(Verdict::Grant {
                ip,
                until: now + access,
            });
        }
        let state = to_state(done);
        match (found, progress) {
            // Advancing in the table keeps the first knock.
            (Some(at), Some(_)) if matched > 1 => self.entries.slot_mut(at).state = state,
            _ => self.place(found, key, state, first, fingerprint),
        }
        Some(Verdict::Progress {
            ip,
            matched: done,
            total,
        })
    }
}
