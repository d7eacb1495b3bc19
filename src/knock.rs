//! The core: a pure state machine that judges knocks.
//!
//! No I/O and no clock of its own: every call takes `now`, so each rule of
//! DESIGN.md is a plain unit test. The I/O shell (`server.rs`) feeds it
//! `(source IP, port and protocol, now)` and carries out the [`Judged`]
//! verdicts it returns, one per door concerned. The judging itself is in
//! `knock/judge.rs`; the doors and their port index in `knock/doors.rs`.
//!
//! **Doors.** A daemon protects several doors (issue 10); the core holds
//! them all, and a knock is a `(port, protocol)`, matched against each
//! door's sequence by both (the socket receiver hears UDP only and passes
//! [`Proto::Udp`]; TCP knocks arrive with stealth capture). For a knock
//! from `ip` on `p` at `now`, the doors concerned are those whose sequence
//! has `p` anywhere (found through an index by port: O(doors sharing `p`)):
//! 1. For a door whose `allow` list does not hold `ip`, the knock is
//!    ignored and counted ([`Verdict::NotAllowed`]); nothing changes there.
//!    If no concerned door allows `ip`, that is all.
//! 2. `ip` locked out (`now < until`): ignored ([`Verdict::Ignored`]) on
//!    every door; the lockout is not extended.
//! 3. Each allowed door is judged on its own, with that source's progress
//!    on that door: progress older than the door's window
//!    (`now - first_knock > window`) is forgotten (a fresh start); `p` as
//!    the door's next expected port advances it, and completing the
//!    sequence yields [`Verdict::Grant`] for that door; a duplicate (below)
//!    changes nothing; anything else is wrong *for that door* and resets
//!    its progress there. So one packet can complete one door and advance
//!    another, and a port shared by doors, or repeated in one sequence,
//!    works.
//! 4. A knock that is wrong for every allowed door that has `p` is a wrong
//!    knock: [`Verdict::LockedOut`], one lockout of `ip` for all doors, as
//!    long as the longest lockout of those doors. A knock on a port that no
//!    door has with that protocol (a "stray" knock, which the receiver only
//!    delivers when it hears more than the doors' ports) is a wrong knock
//!    too if some door allows `ip` (lockout: the longest of all doors), as
//!    with one door. Progress on doors that do not have `p` is not reset
//!    (that would cost O(doors) per wrong knock): the lockout ignores every
//!    knock until it ends, and their windows keep running.
//!
//! **Lockouts an attacker cannot aim** (issue 14). A UDP source address
//! can be forged, so one spoofed wrong knock carrying a client's address
//! locks that client out. On a rotating door the first knock of each
//! accepted sequence is a secret a spoofer does not have (a fresh
//! `log2(span)` bits each period), so that knock **lifts** a lockout and is
//! judged as a fresh start: a wrong knock still ends the attempt it
//! interrupts and locks its source out for everything else, but it cannot
//! keep a client that knows the sequence out. Brute force is not made
//! easier: a guesser gets no answer, so it cannot tell which of its knocks
//! was a right first knock; it must guess whole sequences, `span^length`
//! of them (README: the figure). Fixed doors and the seed's flags keep the
//! seed's lockout (their first port is no secret from whoever saw it).
//!
//! With one door these are exactly the single-door rules of issue 9: the
//! lockout lives in the door's own entry (one lookup per knock), so a
//! stray knock's lockout replaces that door's progress too.
//!
//! Two tolerances (DESIGN.md: a real client must not be locked out by the
//! network or by someone else's flood):
//! - **Duplicates** (knockd PR #90's rule): a knock on the port just
//!   matched that is not the next expected port is a copy the network made
//!   (UDP may duplicate) or a retry; it changes nothing and is answered
//!   with [`Verdict::Progress`] at the unchanged count. A sequence that
//!   repeats a port (`1111,1111,2222`) still advances, because the next
//!   expected port is checked first. The last knock of a sequence counts
//!   too: a source that completed the sequence stays tracked as completed
//!   until its window ends, and a copy of its last knock changes nothing
//!   (no second grant, no lockout), while a knock on the first port starts
//!   afresh (so a one-port sequence, or one whose last port is its first,
//!   renews as before) and any other knock is judged as a fresh start.
//!   A completed sequence is kept only while there is room: any newcomer
//!   to a full table displaces it first, and it never goes to the ledger,
//!   so a sustained load of real clients does not fill the table with
//!   sequences that are done (losing one costs only the tolerance of a
//!   late copy of its last knock).
//! - **Eviction never turns into a lockout.** The table is bounded by
//!   `max_tracked` in total: an entry is a `(source, door)` pair, or a
//!   source's lockout (with several doors, under a key no door uses).
//!   Expired entries go first. Progress the table must drop is written to
//!   the ledger (`knock/ledger.rs`: 16-byte records, twice
//!   `max_tracked` of them, first in first out); a source's next knock
//!   finds its record there and is judged with exactly the progress it had,
//!   so eviction changes no verdict while the record lasts. Only a source
//!   whose record the ledger has also dropped is judged as a fresh start.
//!
//! Whom a newcomer displaces when the table is full (every displaced
//! knock in progress goes to the ledger, never lost outright):
//! - a **first knock** displaces the oldest entry that has matched one
//!   knock only if that entry is younger than [`SETTLED`] (progress that
//!   has waited longer is likely a client about to knock again), else the
//!   lockout nearest its end; failing both, the newcomer itself goes to the
//!   ledger.
//! - **progress past the first knock** (restored from the ledger) displaces
//!   a first-knock-only entry, else the least recently advanced one, else a
//!   lockout: only a source that knows two ports gets here, which a flood of
//!   spoofed first knocks cannot.
//! - a **lockout** displaces the lockout nearest its end, else progress.
//!   So a flood of spoofed wrong knocks churns lockouts among themselves.
//!
//! A client therefore survives a first-knock flood of `rate` new sources a
//! second if it knocks again within `3 * max_tracked / rate` seconds while
//! the table turns over faster than [`SETTLED`] (0.76 s for 20 000 at
//! 79 000/s; before the ledger, 0.25 s), or within `2 * max_tracked / rate`
//! (more than `2 * SETTLED`) when it turns over slower; once past its
//! second knock only sources that know the sequence compete with it. Losing a
//! lockout costs little: it only lets that source knock again. Grants are
//! not tracked here (see `grants.rs`), so they are never evicted.

use std::net::IpAddr;
use std::time::{Duration, Instant};

#[cfg(doc)]
use crate::config::Proto;
use crate::config::{Door, KnockPort, KnockRules};

mod census;
mod doors;
mod judge;
mod ledger;
mod reload;
mod rotation;
mod table;
mod verdict;

use doors::Doors;
use ledger::{Fingerprint, Ledger};
use table::{COMPLETED, Entries, Key, LOCKED, Order};
pub use verdict::{DoorId, Judged, TrackerStats, Verdict};

/// Age after which a first knock in the table is no longer displaced by a
/// brand-new first knock. Clients knock a few hundred milliseconds apart
/// (knock-client's default delay is 0.5 s; knockd's `knock -d` is set by
/// hand to hundreds of ms when a server needs it), so an entry this old is
/// likely a client about to knock again, while a brand-new first knock is
/// all a spoofing flood can send without knowing the sequence. Below
/// knock-client's delay, so a client's first knock is settled before its
/// second arrives.
pub const SETTLED: Duration = Duration::from_millis(300);

/// Ledger records per tracked entry: a record costs about a quarter of an
/// entry, and twice the table lets a client's first knock survive three
/// times as many newer sources as the table alone (see the module doc).
const LEDGER_PER_TRACKED: usize = 2;

/// The key's door of a source's lockout when there are several doors: no
/// door has this index (a configuration has fewer doors).
const LOCK_DOOR: DoorId = DoorId::MAX;

/// Whom a newcomer to a full table may displace (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Newcomer {
    FirstKnock,
    Advanced,
    Lockout,
    /// A completed sequence: kept only while there is room, displaced
    /// first by any newcomer and never written to the ledger.
    Completed,
}

/// Tracks every source IP's progress through each door's knock sequence.
#[derive(Debug)]
pub struct KnockTracker {
    doors: Doors,
    /// The door of lockout keys: door 0's own entry with one door (as
    /// before doors: one lookup per knock), else [`LOCK_DOOR`].
    lock_door: DoorId,
    /// The longest lockout of any door (a stray knock's lockout).
    max_lockout: Duration,
    max_tracked: usize,
    /// Times are kept as nanoseconds since this instant (the first `now`
    /// seen): 8 bytes instead of 16, and exact, so verdicts carry the very
    /// instants the rules define.
    epoch: Option<Instant>,
    entries: Entries,
    /// Entries that matched one knock, by first knock, oldest first.
    first_order: Order,
    /// Entries that matched two knocks or more, least recently advanced
    /// first.
    advanced_order: Order,
    /// Lockouts by end, soonest first.
    lockout_order: Order,
    /// Completed sequences, oldest first.
    completed_order: Order,
    ledger: Ledger,
    stats: TrackerStats,
    /// Verdicts of [`KnockTracker::knock`], reused (no allocation per knock).
    scratch: Vec<Judged>,
    /// The wall clock of the last rotation (`knock/rotation.rs`).
    unix: Option<Duration>,
    /// Rotating sequences used since the shell last asked.
    used_now: Vec<(DoorId, u64)>,
}

impl KnockTracker {
    /// A tracker applying `rules`: the seed's single door (UDP knocks,
    /// from everywhere), door 0.
    pub fn new(rules: &KnockRules) -> Self {
        Self::build(Doors::from_rules(rules), rules.max_tracked)
    }

    /// A tracker for `doors` (at least one; door `i` of the verdicts is
    /// `doors[i]`), holding at most `max_tracked` entries in total.
    pub fn for_doors(doors: &[Door], max_tracked: usize) -> Self {
        Self::build(Doors::from_doors(doors), max_tracked)
    }

    fn build(doors: Doors, max_tracked: usize) -> Self {
        let max_tracked = max_tracked.max(1);
        let lock_door = if doors.len() == 1 { 0 } else { LOCK_DOOR };
        let max_lockout = doors.doors.iter().map(|d| d.lockout).max();
        Self {
            scratch: Vec::with_capacity(doors.len() + 1),
            max_lockout: max_lockout.unwrap_or_default(),
            doors,
            lock_door,
            max_tracked,
            epoch: None,
            entries: Entries::new(max_tracked),
            first_order: Order::new(),
            advanced_order: Order::new(),
            completed_order: Order::new(),
            lockout_order: Order::new(),
            ledger: Ledger::new(max_tracked.saturating_mul(LEDGER_PER_TRACKED)),
            stats: TrackerStats::default(),
            unix: None,
            used_now: Vec::new(),
        }
    }

    /// Judges a UDP knock from `ip` on `port` at `now` and returns the
    /// first verdict (door 0's, with the seed's single door). Calls must
    /// come with non-decreasing `now`.
    pub fn knock(&mut self, ip: IpAddr, port: u16, now: Instant) -> Verdict {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.judge(ip, KnockPort::udp(port), now, &mut out);
        let verdict = out[0].verdict;
        self.scratch = out;
        verdict
    }

    /// Forgets entries whose window or lockout has passed at `now`.
    pub fn prune(&mut self, now: Instant) {
        if self.epoch.is_some() {
            let t = self.ticks(now);
            self.prune_ticks(t);
        }
    }

    /// Number of tracked source IPs (in progress or locked out), not
    /// counting the ledger's records.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// What the tracker has done so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Length of door 0's sequence.
    pub fn sequence_len(&self) -> usize {
        self.doors.doors[0].sequence.len()
    }

    /// Number of doors (of the configuration; a rotating door is one).
    pub fn doors(&self) -> usize {
        self.doors.owners()
    }

    /// Bytes the table and the ledger hold on the heap now.
    pub fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes() + self.ledger.heap_bytes()
    }

    fn ticks(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        nanos(now.saturating_duration_since(epoch))
    }

    fn instant(&self, ticks: u64) -> Instant {
        self.epoch.expect("set by the first call") + Duration::from_nanos(ticks)
    }

    /// Drops expired entries from the front of each order. The advanced
    /// order is by last advance, not first knock, so an expired entry
    /// behind a live one waits at most one more window (it is judged
    /// fresh meanwhile: every lookup checks the window).
    fn prune_ticks(&mut self, t: u64) {
        let window = self.doors.max_window;
        for which in [
            Newcomer::FirstKnock,
            Newcomer::Advanced,
            Newcomer::Completed,
        ] {
            while let Some(at) = self.order(which).front() {
                if t.saturating_sub(self.entries.slot(at).at) <= window {
                    break;
                }
                self.drop_entry(at);
                self.stats.expirations += 1;
            }
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
    /// of its order. A new key first makes room if the table is full; a
    /// first knock that may not displace anyone goes to the ledger instead.
    fn place(&mut self, found: Option<u32>, key: Key, state: u8, at: u64, fp: Option<Fingerprint>) {
        let slot = match found {
            Some(slot) => {
                self.unlink(slot);
                let entry = self.entries.slot_mut(slot);
                entry.state = state;
                entry.at = at;
                slot
            }
            None => {
                if self.entries.len() >= self.max_tracked && !self.make_room(kind_of(state), at) {
                    if state == COMPLETED {
                        // No room: a completed sequence is simply not kept.
                        self.stats.completed_dropped += 1;
                        return;
                    }
                    let fp = fp.unwrap_or_else(|| self.ledger.fingerprint(&key));
                    self.stats.forgotten += self.ledger.remember(fp, state, at);
                    self.stats.evictions += 1;
                    return;
                }
                self.entries.add(key, state, at)
            }
        };
        let order = match kind_of(state) {
            Newcomer::FirstKnock => &mut self.first_order,
            Newcomer::Advanced => &mut self.advanced_order,
            Newcomer::Lockout => &mut self.lockout_order,
            Newcomer::Completed => &mut self.completed_order,
        };
        order.push_back(&mut self.entries, slot);
    }

    /// Makes room for a newcomer of kind `kind` arriving at `t` (see the
    /// module doc); false if it may not displace anyone.
    fn make_room(&mut self, kind: Newcomer, t: u64) -> bool {
        let first = self.first_order.front();
        let advanced = self.advanced_order.front();
        let lockout = self.lockout_order.front();
        // A completed sequence goes first, to anyone: it only serves to
        // tolerate a copy of its last knock.
        let victim = self.completed_order.front().or(match kind {
            Newcomer::FirstKnock => first
                .filter(|&at| t.saturating_sub(self.entries.slot(at).at) < nanos(SETTLED))
                .or(lockout),
            Newcomer::Advanced => first.or(advanced).or(lockout),
            Newcomer::Lockout => lockout.or(first).or(advanced),
            Newcomer::Completed => None,
        });
        let Some(at) = victim else {
            return false;
        };
        let slot = *self.entries.slot(at);
        if slot.state == LOCKED {
            self.stats.lockouts_evicted += 1;
        } else if slot.state == COMPLETED {
            self.stats.completed_dropped += 1;
        } else {
            let fp = self.ledger.fingerprint(&slot.key());
            self.stats.forgotten += self.ledger.remember(fp, slot.state, slot.at);
        }
        self.drop_entry(at);
        self.stats.evictions += 1;
        true
    }

    fn drop_entry(&mut self, at: u32) {
        self.unlink(at);
        self.entries.remove(at);
    }

    fn order(&self, kind: Newcomer) -> &Order {
        match kind {
            Newcomer::FirstKnock => &self.first_order,
            Newcomer::Advanced => &self.advanced_order,
            Newcomer::Lockout => &self.lockout_order,
            Newcomer::Completed => &self.completed_order,
        }
    }

    #[cfg(test)]
    fn oldest_in_progress(&self) -> Option<IpAddr> {
        self.first_order
            .front()
            .map(|at| self.entries.slot(at).ip())
    }

    /// Takes slot `at` out of the order its state puts it in.
    fn unlink(&mut self, at: u32) {
        let kind = kind_of(self.entries.slot(at).state);
        let order = match kind {
            Newcomer::FirstKnock => &mut self.first_order,
            Newcomer::Advanced => &mut self.advanced_order,
            Newcomer::Lockout => &mut self.lockout_order,
            Newcomer::Completed => &mut self.completed_order,
        };
        order.unlink(&mut self.entries, at);
    }
}

/// The order (and newcomer kind) of an entry in `state`.
fn kind_of(state: u8) -> Newcomer {
    match state {
        LOCKED => Newcomer::Lockout,
        COMPLETED => Newcomer::Completed,
        1 => Newcomer::FirstKnock,
        _ => Newcomer::Advanced,
    }
}

/// Knocks matched as a slot state.
fn to_state(matched: usize) -> u8 {
    u8::try_from(matched).expect("sequence length is bounded by MAX_SEQUENCE_LEN")
}

/// A duration in nanoseconds, saturating (durations are bounded by config).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;

#[cfg(test)]
mod doors_props;
