//! What the control socket's `list` shows of the knock core: how many
//! sources are in progress and how many are locked out, and the lockouts
//! themselves (bounded). Read-only walks of the tracker's orders, apart
//! from the hot path.

use std::net::IpAddr;
use std::time::Instant;

use super::{KnockTracker, table::LOCKED};

impl KnockTracker {
    /// Sources locked out now (entries, not counting expired ones not yet
    /// pruned).
    pub fn locked_out(&self) -> usize {
        self.lockout_order.len()
    }

    /// Up to `limit` locked-out sources with the end of their lockout,
    /// soonest end first.
    pub fn lockouts(&self, limit: usize) -> Vec<(IpAddr, Instant)> {
        let mut out = Vec::new();
        let mut at = self.lockout_order.front();
        while let Some(i) = at {
            if out.len() >= limit {
                break;
            }
            let slot = self.entries.slot(i);
            if slot.state == LOCKED {
                out.push((slot.ip(), self.instant(slot.at)));
            }
            at = slot.next();
        }
        out
    }
}
