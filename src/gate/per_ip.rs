//! Connections per client address: the gate's per-IP cap.
//!
//! Why: the gate's slots are shared by every granted client, and one of
//! them holding all of them (300 idle connections in issue 9 item 9) locked
//! the others out. Each address may hold at most `cap` connections at once;
//! a slot is returned when its [`IpSlot`] is dropped. Only addresses with a
//! live connection have an entry, so the table is bounded by the gate's
//! own connection cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Live connections per address, capped.
#[derive(Debug, Clone)]
pub struct ConnectionsPerIp {
    cap: usize,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's share of its address's cap; given back on drop.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    live: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionsPerIp {
    /// At most `cap` connections per address (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            live: Arc::default(),
        }
    }

    /// The cap per address.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A slot for `ip`, or `None` when it already holds `cap` connections.
    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut live = lock(&self.live);
        let count = live.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            live: Arc::clone(&self.live),
        })
    }

    /// Live connections of `ip`.
    pub fn live(&self, ip: IpAddr) -> usize {
        lock(&self.live)
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }

    /// Addresses with at least one live connection.
    pub fn addresses(&self) -> usize {
        lock(&self.live).len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        if let Some(count) = live.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.remove(&self.ip);
            }
        }
    }
}

/// A panic elsewhere cannot leave the counts inconsistent (each update is
/// one step), so a poisoned lock is used as it is.
fn lock(live: &Mutex<HashMap<IpAddr, usize>>) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
    live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_cap_and_no_more_while_others_still_get_theirs() {
        let table = ConnectionsPerIp::new(3);
        let a = ip("192.0.2.1");
        let held: Vec<IpSlot> = (0..3).map(|_| table.try_acquire(a).unwrap()).collect();
        assert!(table.try_acquire(a).is_none());
        assert_eq!(table.live(a), 3);
        let b = table.try_acquire(ip("192.0.2.2"));
        assert!(b.is_some());
        assert_eq!(table.addresses(), 2);
        drop(held);
        assert_eq!(table.live(a), 0);
        assert!(table.try_acquire(a).is_some());
    }

    #[test]
    fn dropping_the_last_slot_forgets_the_address() {
        let table = ConnectionsPerIp::new(2);
        let one = table.try_acquire(ip("2001:db8::1")).unwrap();
        let two = table.try_acquire(ip("2001:db8::1")).unwrap();
        drop(one);
        assert_eq!(table.addresses(), 1);
        drop(two);
        assert_eq!(table.addresses(), 0);
    }

    #[test]
    fn a_mapped_ipv6_address_shares_the_cap_of_its_ipv4_address() {
        let table = ConnectionsPerIp::new(1);
        let _held = table.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(table.try_acquire(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn a_zero_cap_is_raised_to_one() {
        let table = ConnectionsPerIp::new(0);
        assert_eq!(table.cap(), 1);
        let _held = table.try_acquire(ip("198.51.100.1")).unwrap();
        assert!(table.try_acquire(ip("198.51.100.1")).is_none());
    }
}
