//! The compact table behind the core: tracked sources in a slab, an index
//! from address to slot, and two intrusive lists giving the eviction and
//! expiry order.
//!
//! Why this shape: a flood of spoofed sources fills the table to its bound
//! and keeps it there, so every byte per entry and every allocation on the
//! way counts. A slot is 40 bytes (address as 16 bytes, one `u64`
//! nanosecond timestamp from the tracker's epoch, two `u32` links, the
//! state); the index adds 20 bytes plus a control byte per bucket. The
//! lists replace queues of `(time, ip)` items that went stale and had to be
//! compacted: an entry is unlinked when it changes, so the lists hold
//! exactly the live entries, already in time order (items are only ever
//! appended with a non-decreasing time), and eviction or expiry is O(1)
//! with no allocation once the slab has grown to the bound.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

/// No slot: the end of a list, or an empty free list.
const NIL: u32 = u32::MAX;
/// `Slot::state` of a lockout; anything else is the number of knocks matched.
pub(super) const LOCKED: u8 = u8::MAX;
/// `Slot::state` of a source that completed its door's sequence (kept so a
/// copy of its last knock is a duplicate). Above any sequence length.
pub(super) const COMPLETED: u8 = u8::MAX - 1;

/// A source address as 16 bytes (IPv4 as its mapped IPv6 form, so one
/// key type serves both families; the tracker canonicalises first) and
/// the door its entry is about (or the tracker's lockout door).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    addr: [u8; 16],
    door: u16,
}

impl Key {
    /// The key of `ip`'s entry for `door`.
    pub(super) fn new(ip: IpAddr, door: u16) -> Self {
        let addr = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        Key { addr, door }
    }

    /// The door this key's entry is about (or the lockout door).
    pub(super) fn door(&self) -> u16 {
        self.door
    }

    /// The key of `ip`'s entry for door 0.
    #[cfg(test)]
    pub(super) fn from_ip(ip: IpAddr) -> Self {
        Self::new(ip, 0)
    }
}

impl Hash for Key {
    // One 128-bit write instead of a length prefix and 16 byte writes. The
    // map keeps std's keyed SipHash: the keys are chosen by whoever sends
    // packets, so the hash must resist collision floods.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.addr));
        state.write_u16(self.door);
    }
}

impl From<Key> for IpAddr {
    fn from(key: Key) -> Self {
        Ipv6Addr::from(key.addr).to_canonical()
    }
}

/// One tracked source.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    key: Key,
    /// First knock (in progress) or end of the lockout, in ticks.
    pub(super) at: u64,
    prev: u32,
    next: u32,
    /// [`LOCKED`], [`COMPLETED`], or the knocks matched so far.
    pub(super) state: u8,
}

impl Slot {
    /// The next slot of its order, if any.
    pub(super) fn next(&self) -> Option<u32> {
        (self.next != NIL).then_some(self.next)
    }

    /// The source this slot tracks.
    pub(super) fn ip(&self) -> IpAddr {
        self.key.into()
    }

    /// The key of the source this slot tracks.
    pub(super) fn key(&self) -> Key {
        self.key
    }
}

/// The slab of slots and the index from address to slot.
#[derive(Debug)]
pub(super) struct Entries {
    index: HashMap<Key, u32>,
    slots: Vec<Slot>,
    free: u32,
    bound: usize,
}

impl Entries {
    /// An empty table that will hold at most `bound` entries.
    pub(super) fn new(bound: usize) -> Self {
        let start = bound.min(1024);
        Self {
            index: HashMap::with_capacity(start),
            slots: Vec::with_capacity(start),
            free: NIL,
            bound,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn find(&self, key: &Key) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub(super) fn slot(&self, at: u32) -> &Slot {
        &self.slots[at as usize]
    }

    pub(super) fn slot_mut(&mut self, at: u32) -> &mut Slot {
        &mut self.slots[at as usize]
    }

    /// Adds `key` (not yet present) in a fresh, unlinked slot. The caller
    /// keeps the table within its bound.
    pub(super) fn add(&mut self, key: Key, state: u8, at: u64) -> u32 {
        let slot = Slot {
            key,
            at,
            prev: NIL,
            next: NIL,
            state,
        };
        let index = if self.free != NIL {
            let index = self.free;
            self.free = self.slots[index as usize].next;
            self.slots[index as usize] = slot;
            index
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Grow by doubling, but never past the bound.
                let target = (self.slots.len() * 2).clamp(64, self.bound.max(1));
                self.slots
                    .reserve_exact(target.saturating_sub(self.slots.len()).max(1));
            }
            self.slots.push(slot);
            u32::try_from(self.slots.len() - 1).expect("the bound fits in u32")
        };
        self.index.insert(key, index);
        index
    }

    /// Removes slot `at` (already unlinked from its list).
    pub(super) fn remove(&mut self, at: u32) {
        let key = self.slots[at as usize].key;
        self.index.remove(&key);
        self.slots[at as usize].next = self.free;
        self.free = at;
    }

    /// Bytes held on the heap by the slab and the index (hashbrown keeps
    /// buckets at a power of two with a 7/8 load factor, one control byte
    /// each).
    pub(super) fn heap_bytes(&self) -> usize {
        let buckets = (self.index.capacity() * 8 / 7).next_power_of_two();
        let bucket = std::mem::size_of::<(Key, u32)>() + 1;
        self.slots.capacity() * std::mem::size_of::<Slot>() + buckets * bucket
    }
}

/// A doubly linked list through the slots, oldest first.
#[derive(Debug)]
pub(super) struct Order {
    head: u32,
    tail: u32,
    len: usize,
}

impl Order {
    pub(super) fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Number of entries in this order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The oldest entry.
    pub(super) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends slot `at` (not in any list) as the newest.
    pub(super) fn push_back(&mut self, entries: &mut Entries, at: u32) {
        let slot = entries.slot_mut(at);
        slot.prev = self.tail;
        slot.next = NIL;
        if self.tail == NIL {
            self.head = at;
        } else {
            entries.slot_mut(self.tail).next = at;
        }
        self.tail = at;
        self.len += 1;
    }

    /// Takes slot `at` out of this list.
    pub(super) fn unlink(&mut self, entries: &mut Entries, at: u32) {
        let Slot { prev, next, .. } = *entries.slot(at);
        if prev == NIL {
            self.head = next;
        } else {
            entries.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            entries.slot_mut(next).prev = prev;
        }
        let slot = entries.slot_mut(at);
        slot.prev = NIL;
        slot.next = NIL;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        Key::from_ip(IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + n)))
    }

    #[test]
    fn keys_round_trip_both_families() {
        for text in ["127.0.0.9", "::1", "2001:db8::7"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpAddr::from(Key::from_ip(ip)), ip);
        }
    }

    #[test]
    fn lists_keep_order_through_unlinks_and_slots_are_reused() {
        let mut entries = Entries::new(8);
        let mut order = Order::new();
        let slots: Vec<u32> = (0..4).map(|n| entries.add(key(n), 1, n.into())).collect();
        for &s in &slots {
            order.push_back(&mut entries, s);
        }
        order.unlink(&mut entries, slots[0]);
        order.unlink(&mut entries, slots[2]);
        assert_eq!(order.len(), 2);
        assert_eq!(order.front(), Some(slots[1]));
        entries.remove(slots[0]);
        let again = entries.add(key(9), 1, 9);
        assert_eq!(again, slots[0], "a freed slot is reused");
        order.push_back(&mut entries, again);
        order.unlink(&mut entries, slots[1]);
        order.unlink(&mut entries, slots[3]);
        assert_eq!(order.front(), Some(again));
        order.unlink(&mut entries, again);
        assert_eq!(order.front(), None);
        assert_eq!(order.len(), 0);
    }

    #[test]
    fn at_the_bound_the_slab_stops_growing_and_stays_under_128_bytes_per_entry() {
        let bound = 100_000;
        let mut entries = Entries::new(bound);
        for n in 0..bound as u32 {
            entries.add(key(n), 1, 0);
        }
        assert_eq!(entries.len(), bound);
        assert_eq!(
            entries.slots.capacity(),
            bound,
            "growth is capped at the bound"
        );
        let per_entry = entries.heap_bytes() / bound;
        assert!(per_entry <= 128, "{per_entry} bytes per tracked IP");
    }
}
