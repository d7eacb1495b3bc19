//! The doors as the core sees them: each door's sequence, timing and
//! allowed sources, and an index from a knock port to the doors that use
//! it, so a knock costs O(doors sharing its port), never O(doors).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{AllowList, Door, KnockPort, KnockRules, Timing};

use super::DoorId;

/// One door's rules, as the core applies them.
#[derive(Debug, Clone)]
pub(super) struct DoorRules {
    pub(super) sequence: Vec<KnockPort>,
    pub(super) window: u64,
    pub(super) access: Duration,
    pub(super) lockout: Duration,
    allow: AllowList,
    /// The allow list is everything: no network check per knock.
    open: bool,
}

impl DoorRules {
    fn new(sequence: Vec<KnockPort>, timing: Timing, allow: AllowList) -> Self {
        let open = allow == AllowList::everything();
        Self {
            sequence,
            window: super::nanos(timing.window),
            access: timing.access,
            lockout: timing.lockout,
            allow,
            open,
        }
    }

    pub(super) fn allows(&self, ip: IpAddr) -> bool {
        self.open || self.allow.contains(ip)
    }
}

/// Every door, and which doors each knock port belongs to.
#[derive(Debug)]
pub(super) struct Doors {
    pub(super) doors: Vec<DoorRules>,
    /// Knock port -> range of `members`: the doors using it, in order.
    by_port: HashMap<KnockPort, (u32, u32), BuildHasherDefault<PortHasher>>,
    members: Vec<DoorId>,
    /// The longest window: entries older than it are dropped by pruning.
    pub(super) max_window: u64,
}

impl Doors {
    /// The seed's single door from `rules`: UDP knocks, from everywhere.
    pub(super) fn from_rules(rules: &KnockRules) -> Self {
        let timing = Timing {
            window: rules.window,
            access: rules.access,
            lockout: rules.lockout,
        };
        let sequence = rules.sequence.ports().iter().map(|&p| KnockPort::udp(p));
        Self::new(vec![DoorRules::new(
            sequence.collect(),
            timing,
            AllowList::everything(),
        )])
    }

    /// The doors of a configuration, in its order (at least one).
    pub(super) fn from_doors(doors: &[Door]) -> Self {
        assert!(!doors.is_empty(), "a configuration has at least one door");
        assert!(doors.len() < usize::from(DoorId::MAX), "door index fits");
        let rules = doors
            .iter()
            .map(|d| DoorRules::new(d.sequence().to_vec(), d.timing(), d.allow().clone()));
        Self::new(rules.collect())
    }

    fn new(doors: Vec<DoorRules>) -> Self {
        let mut lists: HashMap<KnockPort, Vec<DoorId>> = HashMap::new();
        for (i, door) in doors.iter().enumerate() {
            for knock in &door.sequence {
                let list = lists.entry(*knock).or_default();
                let id = i as DoorId;
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        let mut members = Vec::new();
        let mut by_port = HashMap::with_capacity_and_hasher(lists.len(), Default::default());
        for (port, list) in lists {
            by_port.insert(port, (members.len() as u32, list.len() as u32));
            members.extend(list);
        }
        // Ranges are filled in map order; sort each so doors come in
        // configuration order (the first named in a lockout).
        for &(start, len) in by_port.values() {
            members[start as usize..(start + len) as usize].sort_unstable();
        }
        Self {
            max_window: doors.iter().map(|d| d.window).max().unwrap_or(0),
            doors,
            by_port,
            members,
        }
    }

    /// The doors that use `knock`, in configuration order: the indices
    /// `lo..hi` of [`Doors::member`] (empty for a port of no door).
    pub(super) fn range(&self, knock: KnockPort) -> (usize, usize) {
        match self.by_port.get(&knock) {
            Some(&(start, len)) => (start as usize, (start + len) as usize),
            None => (0, 0),
        }
    }

    /// The door at index `i` of a [`Doors::range`].
    pub(super) fn member(&self, i: usize) -> DoorId {
        self.members[i]
    }

    /// The first door `ip` may use, if any.
    pub(super) fn first_allowing(&self, ip: IpAddr) -> Option<DoorId> {
        self.doors
            .iter()
            .position(|d| d.allows(ip))
            .map(|i| i as DoorId)
    }

    pub(super) fn len(&self) -> usize {
        self.doors.len()
    }
}

/// The port index's hasher: one multiply. Its keys are the configuration's
/// knock ports, a fixed set a sender cannot add to, so a keyed hash buys
/// nothing there (the table of sources keeps SipHash).
#[derive(Debug, Default)]
struct PortHasher(u64);

impl Hasher for PortHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = (self.0 << 16) | u64::from(n);
    }

    fn write_isize(&mut self, n: isize) {
        self.0 = (self.0 << 8) | n as u64;
    }
}
