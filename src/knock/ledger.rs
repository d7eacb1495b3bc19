//! The ledger: a compact, bounded memory of progress evicted from the
//! table, so a source pushed out by a flood resumes where it was.
//!
//! Why it exists: a flood of spoofed first knocks fills the table and turns
//! it over every `max_tracked / rate` seconds (20 000 / 79 000 per second =
//! 0.25 s), faster than a real client knocks (knock-client waits 0.5 s
//! between knocks). No ordering of one table can keep a client that looks,
//! at its first knock, exactly like the flood. A record here is 16 bytes
//! (a 56-bit keyed fingerprint of the source, the knocks matched, the first
//! knock's time) against the table's ~95, so the same memory remembers
//! several times as many sources for several times as long.
//!
//! Shape: a ring of records, first in first out (a record survives the
//! next `capacity - 1` evictions, whatever the flood sends), plus an index
//! from the fingerprint's low 32 bits to the ring position. Lookups,
//! inserts and overwrites are O(1); the ring and the index are allocated
//! at their bound at the first eviction and then allocate nothing. Fingerprints are
//! keyed (std's random SipHash keys), so a sender cannot aim a spoofed
//! source at a client's record. A record whose index key is taken by a
//! newer record, or whose slot the ring reuses, is forgotten: its source is
//! then judged as a fresh start, as it would be without the ledger.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::table::Key;

/// Top byte of a record's tag: the knocks matched; the other 56 bits are
/// the fingerprint. A tag of 0 (no knock matched) marks a used-up record.
const MATCHED_SHIFT: u32 = 56;
const FINGERPRINT_MASK: u64 = (1 << MATCHED_SHIFT) - 1;

/// One remembered source.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Knocks matched (top byte) and fingerprint (low 56 bits).
    tag: u64,
    /// First knock, in the tracker's ticks.
    first: u64,
}

impl Record {
    fn fingerprint(&self) -> u64 {
        self.tag & FINGERPRINT_MASK
    }

    fn matched(&self) -> u8 {
        (self.tag >> MATCHED_SHIFT) as u8
    }
}

/// A source's fingerprint in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint(u64);

impl Fingerprint {
    /// The index key: the fingerprint's low 32 bits.
    fn short(self) -> u32 {
        self.0 as u32
    }
}

/// Progress evicted from the table, oldest eviction first.
#[derive(Debug)]
pub(super) struct Ledger {
    ring: Vec<Record>,
    /// Where the next record goes once the ring is full.
    next: usize,
    index: HashMap<u32, u32, BuildHasherDefault<MixHasher>>,
    capacity: usize,
    keys: RandomState,
}

impl Ledger {
    /// An empty ledger that will hold at most `capacity` records.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            ring: Vec::new(),
            next: 0,
            index: HashMap::default(),
            capacity: capacity.max(1),
            keys: RandomState::new(),
        }
    }

    /// Whether nothing was ever remembered (the common, flood-free case:
    /// lookups are skipped and no fingerprint is computed).
    pub(super) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The keyed fingerprint of `key`.
    pub(super) fn fingerprint(&self, key: &Key) -> Fingerprint {
        Fingerprint(self.keys.hash_one(key) & FINGERPRINT_MASK)
    }

    /// Remembers that the source `fp` had matched `matched` knocks (at
    /// least 1) since its first knock at `first`; the oldest record goes
    /// if the ledger is full. Returns how many live records of other
    /// sources were forgotten to make room (0 or 1; 2 in the rare case of
    /// an index key shared too).
    pub(super) fn remember(&mut self, fp: Fingerprint, matched: u8, first: u64) -> u64 {
        let mut forgotten = 0;
        debug_assert!(matched > 0);
        let record = Record {
            tag: fp.0 | (u64::from(matched) << MATCHED_SHIFT),
            first,
        };
        let pos = if self.ring.len() < self.capacity {
            if self.ring.capacity() == 0 {
                // All at once, at the first eviction: the table is full
                // then, a flood is likely, and growing (rehashing) the
                // index under a flood costs bursts the socket pays in drops.
                self.ring.reserve_exact(self.capacity);
                self.index.reserve(self.capacity);
            }
            self.ring.push(record);
            self.ring.len() - 1
        } else {
            let pos = self.next;
            let old = self.ring[pos];
            let old_key = Fingerprint(old.fingerprint()).short();
            if old.tag != 0 && self.index.get(&old_key) == Some(&(pos as u32)) {
                self.index.remove(&old_key);
                forgotten += u64::from(old.fingerprint() != fp.0);
            }
            self.ring[pos] = record;
            pos
        };
        self.next = (pos + 1) % self.capacity;
        let pos = u32::try_from(pos).expect("the bound fits in u32");
        if let Some(before) = self.index.insert(fp.short(), pos) {
            let before = self.ring[before as usize];
            if before.tag != 0 && before.fingerprint() != fp.0 {
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Takes the record of `fp`, if it is remembered: `(matched, first)`.
    pub(super) fn take(&mut self, fp: Fingerprint) -> Option<(u8, u64)> {
        let pos = *self.index.get(&fp.short())? as usize;
        let record = self.ring[pos];
        if record.tag == 0 || record.fingerprint() != fp.0 {
            return None;
        }
        self.index.remove(&fp.short());
        self.ring[pos].tag = 0;
        Some((record.matched(), record.first))
    }

    /// Bytes held on the heap by the ring and the index.
    pub(super) fn heap_bytes(&self) -> usize {
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        let bucket = std::mem::size_of::<(u32, u32)>() + 1;
        self.ring.capacity() * std::mem::size_of::<Record>() + buckets * bucket
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

/// The index's hasher: its keys are already keyed hashes, so one multiply
/// spreads them over hashbrown's bucket bits and control byte.
#[derive(Debug, Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn fp(ledger: &Ledger, n: u32) -> Fingerprint {
        ledger.fingerprint(&Key::from_ip(IpAddr::from(std::net::Ipv4Addr::from(n))))
    }

    #[test]
    fn a_record_is_taken_once_and_keeps_matched_and_first_knock() {
        let mut ledger = Ledger::new(4);
        assert!(ledger.is_empty());
        let a = fp(&ledger, 1);
        ledger.remember(a, 2, 77);
        assert_eq!(ledger.take(fp(&ledger, 2)), None);
        assert_eq!(ledger.take(a), Some((2, 77)));
        assert_eq!(ledger.take(a), None, "used up");
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn the_ring_forgets_the_oldest_first_and_never_grows_past_its_bound() {
        let mut ledger = Ledger::new(100);
        let fps: Vec<Fingerprint> = (0..1_000).map(|n| fp(&ledger, n)).collect();
        for (n, &f) in fps.iter().enumerate() {
            ledger.remember(f, 1, n as u64);
            assert!(ledger.len() <= 100);
        }
        assert_eq!(ledger.ring.capacity(), 100);
        // The last 100 are all there (FIFO: a record survives the next
        // capacity - 1 inserts), everything older is gone.
        assert_eq!(ledger.take(fps[899]), None);
        for (n, &f) in fps.iter().enumerate().skip(900) {
            assert_eq!(ledger.take(f), Some((1, n as u64)), "record {n}");
        }
    }

    #[test]
    fn remembering_a_source_again_keeps_the_newest_record() {
        let mut ledger = Ledger::new(3);
        let a = fp(&ledger, 1);
        ledger.remember(a, 1, 10);
        ledger.remember(a, 2, 20);
        // The ring reuses the first slot: the newer record must survive.
        ledger.remember(fp(&ledger, 2), 1, 30);
        ledger.remember(fp(&ledger, 3), 1, 40);
        assert_eq!(ledger.take(a), Some((2, 20)));
    }
}
