//! Rotating doors in the core (issue 14): the shell tells the core which
//! period it is ([`KnockTracker::rotate_to`]), the core derives the
//! sequences of periods `c-1`, `c` and `c+1` (pure: HMAC of the door's
//! key), and judges knocks against all three at once, so a client whose
//! clock is off by up to one period gets in and no knock is lost at a
//! boundary. A sequence that opens its door is marked used: from then on
//! its knocks are wrong knocks, from any source, until its period is no
//! longer accepted. The shell persists what [`KnockTracker::take_used`]
//! hands it and passes the persisted set back at each rotation, so a
//! restart or a reload does not forget a use.
//!
//! Cost: a rotation drops the progress on the one core door it replaces
//! (a scan of the table, once a period) and rebuilds the port index; a
//! knock costs what it costs on a fixed door.

use std::time::Duration;

use super::doors::PERIODS;
use super::table::Key;
use super::{DoorId, KnockTracker};
use crate::rotate::SKEW_PERIODS;

impl KnockTracker {
    /// Sets the wall clock to `unix` (time since the Unix epoch): each
    /// rotating door accepts the sequences of its periods `c-1`, `c` and
    /// `c+1` around `unix`; `used(door name, period)` says which of them
    /// already opened their door (the shell's persisted memory). Progress
    /// on a sequence still accepted is kept.
    pub fn rotate_to(&mut self, unix: Duration, used: impl Fn(&str, u64) -> bool) {
        if self.doors.rotating.is_empty() {
            return;
        }
        let mut replaced = Vec::new();
        for r in 0..self.doors.rotating.len() {
            let door = self.doors.rotating[r].clone();
            let c = door.sequence.rotation.period_at(unix);
            for p in c.saturating_sub(SKEW_PERIODS)..=c.saturating_add(SKEW_PERIODS) {
                let core = door.first + (p % PERIODS) as DoorId;
                let rules = &mut self.doors.doors[usize::from(core)];
                if rules.period == Some(p) {
                    rules.used |= used(&door.name, p);
                    continue;
                }
                rules.sequence = door.sequence.knocks(&door.name, p);
                rules.period = Some(p);
                rules.used = used(&door.name, p);
                replaced.push(core);
            }
        }
        self.unix = Some(unix);
        if !replaced.is_empty() {
            self.forget_doors(&replaced);
            self.doors.index();
        }
    }

    /// The wall clock of the last [`KnockTracker::rotate_to`].
    pub fn rotated_at(&self) -> Option<Duration> {
        self.unix
    }

    /// Whether any door rotates.
    pub fn rotates(&self) -> bool {
        !self.doors.rotating.is_empty()
    }

    /// The rotating sequences that opened their door since the last call:
    /// `(door, period)`, for the shell to remember. Allocates nothing when
    /// there are none.
    pub fn take_used(&mut self) -> Vec<(DoorId, u64)> {
        std::mem::take(&mut self.used_now)
    }

    /// The ports every rotating door accepts now (periods `c-1..=c+1`,
    /// used ones included: their knocks must still be heard, as wrong).
    pub fn rotating_ports(&self) -> Vec<crate::config::KnockPort> {
        let mut ports: Vec<crate::config::KnockPort> = Vec::new();
        for door in &self.doors.rotating {
            for i in 0..PERIODS as DoorId {
                ports.extend(&self.doors.doors[usize::from(door.first + i)].sequence);
            }
        }
        ports.sort_unstable_by_key(|k| (k.port, k.proto));
        ports.dedup();
        ports
    }

    /// Marks core door `core`'s sequence used if it rotates (it just
    /// opened its door).
    pub(super) fn mark_used(&mut self, core: DoorId) {
        let rules = &mut self.doors.doors[usize::from(core)];
        if let Some(period) = rules.period {
            rules.used = true;
            self.used_now.push((rules.owner, period));
        }
    }

    /// Drops every entry of the core doors `doors` (their sequence changed).
    fn forget_doors(&mut self, doors: &[DoorId]) {
        let mut doomed = Vec::new();
        for order in [
            &self.first_order,
            &self.advanced_order,
            &self.completed_order,
        ] {
            let mut next = order.front();
            while let Some(at) = next {
                let slot = self.entries.slot(at);
                next = slot.next();
                let key: Key = slot.key();
                if doors.contains(&key.door()) {
                    doomed.push(at);
                }
            }
        }
        for at in doomed {
            self.drop_entry(at);
        }
    }
}
