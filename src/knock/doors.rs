//! The doors as the core sees them: each door's sequence, timing and
//! allowed sources, and an index from a knock port to the doors that use
//! it, so a knock costs O(doors sharing its port), never O(doors).
//!
//! **Rotating doors** (issue 14). The core's doors are *core doors*: a
//! door with a fixed sequence is one, a rotating door is three, one per
//! accepted period (`c-1`, `c`, `c+1`), period `p` in core door
//! `first + p % 3`, so a rotation replaces one core door and leaves the
//! progress on the other two alone. Each core door knows its `owner`, the
//! configuration's door, which is what verdicts name. A core door whose
//! sequence has opened the door once is `used`: its knocks are wrong
//! knocks from then on, from any source.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use crate::config::rotating::RotatingSequence;
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
    /// The configuration's door this core door belongs to.
    pub(super) owner: DoorId,
    /// A rotating door's period (None: a fixed sequence, or no period yet).
    pub(super) period: Option<u64>,
    /// A rotating sequence that already opened the door: refused.
    pub(super) used: bool,
}

impl DoorRules {
    fn new(sequence: Vec<KnockPort>, timing: Timing, allow: AllowList) -> Self {
        let open = allow == AllowList::everything();
        Self {
            owner: 0,
            period: None,
            used: false,
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
    /// The rotating doors.
    pub(super) rotating: Vec<RotatingDoor>,
    /// Core door of each fixed configuration door (None: it rotates).
    fixed: Vec<Option<DoorId>>,
}

/// A rotating door as the core keeps it, to derive each period's ports.
#[derive(Debug, Clone)]
pub(super) struct RotatingDoor {
    /// Its first core door (three in a row).
    pub(super) first: DoorId,
    pub(super) name: String,
    pub(super) sequence: RotatingSequence,
}

/// Core doors per rotating door: periods c-1, c and c+1.
pub(super) const PERIODS: u64 = 3;

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
        let mut rules = Vec::new();
        let mut rotating = Vec::new();
        let mut fixed = Vec::new();
        for (owner, d) in doors.iter().enumerate() {
            let owner = owner as DoorId;
            let first = rules.len() as DoorId;
            let core = |sequence| {
                let mut core = DoorRules::new(sequence, d.timing(), d.allow().clone());
                core.owner = owner;
                core
            };
            match d.rotating_sequence() {
                None => {
                    fixed.push(Some(first));
                    rules.push(core(d.sequence().to_vec()));
                }
                Some(sequence) => {
                    fixed.push(None);
                    rules.extend((0..PERIODS).map(|_| core(Vec::new())));
                    rotating.push(RotatingDoor {
                        first,
                        name: d.name().as_str().to_string(),
                        sequence: sequence.clone(),
                    });
                }
            }
        }
        assert!(
            rules.len() < usize::from(DoorId::MAX),
            "core door index fits"
        );
        let mut doors = Self::new(rules);
        doors.rotating = rotating;
        doors.fixed = fixed;
        doors
    }

    /// The core door of configuration door `owner` if its sequence is fixed.
    pub(super) fn fixed_core(&self, owner: DoorId) -> Option<DoorId> {
        self.fixed.get(usize::from(owner)).copied().flatten()
    }

    fn new(doors: Vec<DoorRules>) -> Self {
        let fixed = (0..doors.len() as DoorId).map(Some).collect();
        let mut built = Self {
            max_window: doors.iter().map(|d| d.window).max().unwrap_or(0),
            doors,
            by_port: HashMap::default(),
            members: Vec::new(),
            rotating: Vec::new(),
            fixed,
        };
        built.index();
        built
    }

    /// Rebuilds the index from port to doors (after a rotation).
    pub(super) fn index(&mut self) {
        let doors = &self.doors;
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
        self.by_port = by_port;
        self.members = members;
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

    /// Number of core doors.
    pub(super) fn len(&self) -> usize {
        self.doors.len()
    }

    /// Number of configuration doors.
    pub(super) fn owners(&self) -> usize {
        self.fixed.len()
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
