//! New doors for a running core, keeping what still means the same.
//!
//! A reload may change, add, remove or reorder doors. Progress is state
//! about one door's sequence, so it carries over only to a door that is
//! unchanged (same name, sequence, window and allow list; the caller
//! decides and passes the old-to-new index map): a half-done source
//! completes an unchanged door after the reload, while a changed door
//! starts afresh (a half-knocked old sequence must never complete the new
//! one) and a removed door's progress is forgotten. Lockouts are about the
//! source, not a door: they carry over whole, to their original end.
//!
//! Entries keep their times (the new core shares the old one's epoch) and
//! their order of age, so eviction under pressure treats them as before.
//! Progress the old core had written to its ledger (dropped under a full
//! table) is not carried over: the ledger knows fingerprints, not doors.

use crate::config::Door;

use super::table::{Key, LOCKED};
use super::{DoorId, KnockTracker};

impl KnockTracker {
    /// A core for `doors` holding at most `max_tracked` entries, with this
    /// core's lockouts and the progress of every old door `i` for which
    /// `kept[i]` names its new index (see the module doc).
    pub fn reconfigured(
        &self,
        doors: &[Door],
        max_tracked: usize,
        kept: &[Option<DoorId>],
    ) -> KnockTracker {
        let mut new = KnockTracker::for_doors(doors, max_tracked);
        new.epoch = self.epoch;
        new.stats = self.stats;
        // Oldest first in every order; lockouts last, so that with one
        // door (whose lockout lives in the door's own entry) a lockout
        // replaces that source's progress, as it would have when knocked.
        for order in [&self.first_order, &self.advanced_order, &self.lockout_order] {
            let mut next = order.front();
            while let Some(at) = next {
                let slot = *self.entries.slot(at);
                next = slot.next();
                let ip = slot.ip();
                let key = match slot.state {
                    LOCKED => Some(Key::new(ip, new.lock_door)),
                    // Progress of a fixed door that stays unchanged; a
                    // rotating door's progress starts afresh.
                    _ => {
                        let owner = self.doors.doors[usize::from(slot.key().door())].owner;
                        let fixed = self.doors.fixed_core(owner).is_some();
                        kept.get(usize::from(owner))
                            .copied()
                            .flatten()
                            .filter(|_| fixed)
                            .and_then(|door| new.doors.fixed_core(door))
                            .map(|door| Key::new(ip, door))
                    }
                };
                if let Some(key) = key {
                    let found = new.entries.find(&key);
                    new.place(found, key, slot.state, slot.at, None);
                }
            }
        }
        // Rotating doors take the current period again; the used ones
        // come from the shell's memory at its next rotation, and meanwhile
        // from this core's flags.
        if let Some(unix) = self.unix {
            let old = &self.doors;
            new.rotate_to(unix, |name, p| {
                old.rotating.iter().any(|r| {
                    r.name == name
                        && (0..super::doors::PERIODS as DoorId).any(|i| {
                            let core = &old.doors[usize::from(r.first + i)];
                            core.period == Some(p) && core.used
                        })
                })
            });
        }
        new
    }
}
