//! Open grants and their expiry: which `(ip, port)` may reach the protected
//! service, and until when.
//!
//! Pure like the core: every call takes `now`. The server asks
//! [`GrantTable::next_expiry`] for the one deadline to sleep until (a timer,
//! not polling) and revokes what [`GrantTable::expire`] returns. Grants live
//! apart from the knock tracker so a flood of knocks can never evict one.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

/// Whether a grant was new or extended an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChange {
    /// No grant was open for this `(ip, port)`.
    New,
    /// An open grant was renewed to the new end.
    Renewed,
}

/// The open grants, keyed by `(ip, port)`.
#[derive(Debug, Default)]
pub struct GrantTable {
    until: HashMap<(IpAddr, u16), Instant>,
    by_deadline: BTreeSet<(Instant, IpAddr, u16)>,
}

impl GrantTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens (or renews) access for `(ip, port)` until `until`.
    pub fn grant(&mut self, ip: IpAddr, port: u16, until: Instant) -> GrantChange {
        let ip = ip.to_canonical();
        match self.until.insert((ip, port), until) {
            Some(old) => {
                self.by_deadline.remove(&(old, ip, port));
                self.by_deadline.insert((until, ip, port));
                GrantChange::Renewed
            }
            None => {
                self.by_deadline.insert((until, ip, port));
                GrantChange::New
            }
        }
    }

    /// Removes and returns every grant whose end is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(IpAddr, u16)> {
        let mut expired = Vec::new();
        while let Some(&(until, ip, port)) = self.by_deadline.first() {
            if until > now {
                break;
            }
            self.by_deadline.pop_first();
            self.until.remove(&(ip, port));
            expired.push((ip, port));
        }
        expired
    }

    /// Removes the grant for `(ip, port)`, if any; true if there was one.
    pub fn remove(&mut self, ip: IpAddr, port: u16) -> bool {
        let ip = ip.to_canonical();
        match self.until.remove(&(ip, port)) {
            Some(until) => {
                self.by_deadline.remove(&(until, ip, port));
                true
            }
            None => false,
        }
    }

    /// The earliest end of an open grant: when the server must next wake.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(until, _, _)| until)
    }

    /// Whether `(ip, port)` has a grant still open at `now`.
    pub fn is_granted(&self, ip: IpAddr, port: u16, now: Instant) -> bool {
        self.until
            .get(&(ip.to_canonical(), port))
            .is_some_and(|&until| now < until)
    }

    /// Every open grant, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u16, Instant)> + '_ {
        self.until
            .iter()
            .map(|(&(ip, port), &until)| (ip, port, until))
    }

    /// Number of open grants.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no grant is open.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn grants_expire_in_deadline_order_at_their_end() {
        let t0 = Instant::now();
        let mut table = GrantTable::new();
        assert_eq!(
            table.grant(ip(1), 22, t0 + Duration::from_secs(30)),
            GrantChange::New
        );
        assert_eq!(
            table.grant(ip(2), 22, t0 + Duration::from_secs(10)),
            GrantChange::New
        );
        assert_eq!(table.next_expiry(), Some(t0 + Duration::from_secs(10)));
        assert!(table.is_granted(ip(2), 22, t0 + Duration::from_secs(9)));
        assert!(!table.is_granted(ip(2), 22, t0 + Duration::from_secs(10)));
        assert!(!table.is_granted(ip(2), 23, t0));
        assert!(table.expire(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            table.expire(t0 + Duration::from_secs(10)),
            vec![(ip(2), 22)]
        );
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.expire(t0 + Duration::from_secs(60)),
            vec![(ip(1), 22)]
        );
        assert!(table.is_empty());
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn renewal_moves_the_deadline_and_leaves_one_grant() {
        let t0 = Instant::now();
        let mut table = GrantTable::new();
        table.grant(ip(1), 22, t0 + Duration::from_secs(30));
        assert_eq!(
            table.grant(ip(1), 22, t0 + Duration::from_secs(50)),
            GrantChange::Renewed
        );
        assert_eq!(table.len(), 1);
        assert!(table.expire(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(
            table.expire(t0 + Duration::from_secs(50)),
            vec![(ip(1), 22)]
        );
    }

    #[test]
    fn mapped_ipv6_is_the_same_source_as_ipv4() {
        let t0 = Instant::now();
        let mut table = GrantTable::new();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        table.grant(mapped, 22, t0 + Duration::from_secs(5));
        assert!(table.is_granted(ip(1), 22, t0));
        assert!(table.remove(ip(1), 22));
        assert!(!table.remove(ip(1), 22));
        assert_eq!(table.next_expiry(), None);
    }
}
