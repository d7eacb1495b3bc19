//! Holders renumbered by a reload: doors are numbered by their place in
//! the configuration, so removing or reordering doors moves the numbers.
//! A door that stays keeps its grants under its new number; a removed
//! door's grants are revoked ([`GrantTable::remove_holder`]'s rule); SPA
//! keeps its own.

use std::net::IpAddr;

use super::{GrantTable, Holder, SPA};

impl GrantTable {
    /// Renumbers every door holder by `map` (`None`: the door is gone and
    /// its grants are revoked); SPA's grants are untouched. Returns the
    /// `(ip, port)`s the firewall must close (no holder left).
    pub fn remap_holders(&mut self, map: impl Fn(Holder) -> Option<Holder>) -> Vec<(IpAddr, u16)> {
        let old: Vec<_> = self.until.iter().map(|(&k, &v)| (k, v)).collect();
        let mut closed = Vec::new();
        let mut moved = Vec::new();
        for ((ip, holder, port), until) in old {
            if holder == SPA {
                continue;
            }
            let target = map(holder);
            if target == Some(holder) {
                continue;
            }
            self.until.remove(&(ip, holder, port));
            self.by_deadline.remove(&(until, ip, port, holder));
            if self.release(ip, port, holder) && target.is_none() {
                closed.push((ip, port));
            }
            if let Some(new) = target {
                moved.push(((ip, new, port), until));
            }
        }
        for ((ip, holder, port), until) in moved {
            // Two old doors never map to one new door, but be safe: keep
            // the later end.
            let end = self.until.entry((ip, holder, port)).or_insert(until);
            if *end < until {
                self.by_deadline.remove(&(*end, ip, port, holder));
                *end = until;
            }
            let end = *end;
            self.by_deadline.insert((end, ip, port, holder));
            let holders = self.holders.entry((ip, port)).or_default();
            if !holders.contains(&holder) {
                holders.push(holder);
            }
        }
        // A moved grant may have been released as its (ip, port)'s last
        // holder and then re-added: only ports with no holder now close.
        closed.retain(|key| !self.holders.contains_key(key));
        closed
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use super::super::{GrantTable, SPA};

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn a_kept_door_is_renumbered_a_removed_one_revoked_and_spa_untouched() {
        let now = Instant::now();
        let mut table = GrantTable::new(100);
        let end = now + Duration::from_secs(60);
        table.grant_for(ip(1), 0, 22, end).unwrap(); // door 0: removed
        table.grant_for(ip(2), 1, 22, end).unwrap(); // door 1: becomes 0
        table.grant_for(ip(2), 1, 443, end).unwrap();
        table.grant_for(ip(3), 0, 80, end).unwrap(); // removed, but SPA holds it too
        table.grant_for(ip(3), SPA, 80, end).unwrap();
        let mut closed = table.remap_holders(|door| (door == 1).then_some(0));
        closed.sort();
        assert_eq!(closed, vec![(ip(1), 22)]);
        assert_eq!(table.len(), 3);
        assert!(table.is_granted(ip(2), 22, now));
        assert!(table.is_granted(ip(2), 443, now));
        assert!(table.is_granted(ip(3), 80, now));
        // The renumbered grant is held by door 0 now: removing door 0 closes it.
        let mut gone = table.remove_holder(0);
        gone.sort();
        assert_eq!(gone, vec![(ip(2), 22), (ip(2), 443)]);
        // Expiry still finds the moved grants' deadlines.
        assert_eq!(table.next_expiry(), Some(end));
        assert_eq!(table.expire(end), vec![(ip(3), 80)]);
        assert!(table.is_empty());
    }
}
