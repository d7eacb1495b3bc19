//! A door: one knock sequence and what it opens, for whom.
//!
//! A daemon protects any number of doors (issue 10). Each door is checked
//! here on its own: a valid name (it becomes part of log lines, metrics
//! labels and firewall set names), a non-empty sequence, one or more
//! protected ports, durations inside [`WINDOW_BOUNDS`], [`ACCESS_BOUNDS`]
//! and [`LOCKOUT_BOUNDS`], and the source networks allowed to use it.
//! Checks that span several doors or the global settings live in
//! [`super::server_config`].
//!
//! Ports are compared by number, whatever the protocol: a knock port may
//! never be a protected port of the same door, as with the seed's flags.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

pub use super::decoys::Decoys;
use super::issue::{Issue, Key, Problem};
pub use super::rotating::RotatingSequence;
use super::{KnockRules, MAX_SEQUENCE_LEN, Sequence};

/// Longest door name: it must fit in nftables set names with a suffix.
pub const MAX_NAME_LEN: usize = 32;

/// The inclusive range a duration of a door must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Shortest accepted value.
    pub min: Duration,
    /// Longest accepted value.
    pub max: Duration,
    /// Why the minimum, for the error message.
    pub why_min: &'static str,
}

/// Window: below 100 ms even a loopback client's three knocks can miss it
/// (scheduler jitter), so no sequence would ever complete; over an hour a
/// half-done sequence is no longer a secret knock but a port scan.
pub const WINDOW_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(60 * 60),
    why_min: "no knock sequence could complete in less",
};
/// Access: a grant shorter than a second closes before a client connects;
/// longer than a day is a typo (use a firewall rule instead).
pub const ACCESS_BOUNDS: Bounds = Bounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(24 * 60 * 60),
    why_min: "the port would close before a client could connect",
};
/// Lockout: shorter than the window's minimum punishes nothing.
pub const LOCKOUT_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(24 * 60 * 60),
    why_min: "a shorter lockout does not slow a guesser down",
};

/// Checks `value` against `bounds`; `key` names it in the error.
pub fn check_bounds(key: Key, value: Duration, bounds: &Bounds) -> Result<Duration, Problem> {
    if value < bounds.min || value > bounds.max {
        return Err(Problem::DurationOutOfRange {
            key,
            value,
            bounds: *bounds,
        });
    }
    Ok(value)
}

/// The transport protocol of a knock or a protected port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// UDP: the default for knocks.
    Udp,
    /// TCP: knocks are SYNs (heard once stealth capture lands).
    Tcp,
}

impl Proto {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn port_number(text: &str) -> Option<u16> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// One knock of a sequence: `1234` (UDP), `1234:udp` or `5678:tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KnockPort {
    /// Destination port, 1..=65535.
    pub port: u16,
    /// Protocol of the knock.
    pub proto: Proto,
}

impl KnockPort {
    /// A UDP knock, the seed's kind.
    pub fn udp(port: u16) -> Self {
        Self {
            port,
            proto: Proto::Udp,
        }
    }
}

impl FromStr for KnockPort {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        let refuse = || Problem::KnockPort(text.to_string());
        let (port, proto) = match text.split_once(':') {
            Some((port, proto)) => (port, Proto::parse(proto).ok_or_else(refuse)?),
            None => (text, Proto::Udp),
        };
        let port = port_number(port).ok_or_else(refuse)?;
        Ok(Self { port, proto })
    }
}

impl fmt::Display for KnockPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Udp => write!(f, "{}", self.port),
            Proto::Tcp => write!(f, "{}:tcp", self.port),
        }
    }
}

/// A port a door opens: `tcp/22`, `udp/51820` (a bare `22` means TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtectedPort {
    /// Protocol of the protected service.
    pub proto: Proto,
    /// Its port, 1..=65535.
    pub port: u16,
}

impl ProtectedPort {
    /// A TCP protected port, the seed's kind.
    pub fn tcp(port: u16) -> Self {
        Self {
            proto: Proto::Tcp,
            port,
        }
    }
}

impl FromStr for ProtectedPort {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        let refuse = || Problem::ProtectedPort(text.to_string());
        let (proto, port) = match text.split_once('/') {
            Some((proto, port)) => (Proto::parse(proto).ok_or_else(refuse)?, port),
            None => (Proto::Tcp, text),
        };
        let port = port_number(port).ok_or_else(refuse)?;
        Ok(Self { proto, port })
    }
}

impl fmt::Display for ProtectedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)
    }
}

/// A door's name: an ASCII letter, then letters, digits, `-` or `_`, at
/// most [`MAX_NAME_LEN`] in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DoorName(String);

impl DoorName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DoorName {
    type Err = Problem;

    fn from_str(text: &str) -> Result<Self, Problem> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !first_ok || !rest_ok || text.len() > MAX_NAME_LEN {
            return Err(Problem::DoorName(text.to_string()));
        }
        Ok(Self(text.to_string()))
    }
}

impl fmt::Display for DoorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one allowed source network: a CIDR (`192.0.2.0/24`) or a single
/// address (`192.0.2.7`, taken as /32 or /128). A network with host bits
/// set (`192.0.2.7/24`) is refused: it is usually a typo for /32.
pub fn parse_network(text: &str) -> Result<IpNet, Problem> {
    let trimmed = text.trim();
    let net = match trimmed.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match trimmed.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(Problem::Network(text.to_string())),
        },
    };
    if net.trunc() != net {
        return Err(Problem::NetworkHostBits {
            value: text.to_string(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// The source networks allowed to use a door; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Every IPv4 and IPv6 source: the default.
    pub fn everything() -> Self {
        Self(vec![
            "0.0.0.0/0".parse().expect("valid"),
            "::/0".parse().expect("valid"),
        ])
    }

    /// A list of networks; refuses an empty one (nobody could use the door).
    pub fn new(nets: Vec<IpNet>) -> Result<Self, Problem> {
        if nets.is_empty() {
            return Err(Problem::EmptyAllow);
        }
        Ok(Self(nets))
    }

    /// The networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is inside one of the networks. An IPv4-mapped IPv6
    /// address (`::ffff:192.0.2.1`, from a dual-stack socket) counts as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl Default for AllowList {
    fn default() -> Self {
        Self::everything()
    }
}

/// How fast a door must be knocked, how long it opens, how long a wrong
/// knock locks its source out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Longest time from the first knock to the last.
    pub window: Duration,
    /// How long a grant keeps the protected ports open.
    pub access: Duration,
    /// How long a wrong knock locks its source out.
    pub lockout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            window: super::DEFAULT_WINDOW,
            access: super::DEFAULT_ACCESS,
            lockout: super::DEFAULT_LOCKOUT,
        }
    }
}

/// A validated door. Build it with [`Door::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    name: DoorName,
    sequence: Vec<KnockPort>,
    timing: Timing,
    protected: Vec<ProtectedPort>,
    allow: AllowList,
    /// Shared with the fleet (`fleet = true`, issue 15).
    fleet: bool,
    /// A rotating sequence (then `sequence` is empty).
    rotating: Option<RotatingSequence>,
    /// Ports heard as wrong knocks (`config/decoys.rs`).
    decoys: Decoys,
}

impl Door {
    /// A door whose sequence rotates (issue 14): checked as [`Door::new`]
    /// checks a fixed one, plus no protected port inside the rotating range.
    pub fn rotating(
        name: DoorName,
        rotating: RotatingSequence,
        timing: Timing,
        protected: Vec<ProtectedPort>,
        allow: AllowList,
    ) -> Result<Self, Vec<Issue>> {
        let r = rotating.rotation;
        let placeholder = vec![KnockPort {
            port: r.first,
            proto: rotating.proto,
        }];
        let mut issues = match Self::new(name, placeholder, timing, protected.clone(), allow) {
            Ok(door) => {
                let mut door = door;
                door.sequence.clear();
                door.rotating = Some(rotating);
                return Self::check_range(door);
            }
            Err(issues) => issues,
        };
        // The placeholder knock is not the user's: drop what it caused.
        issues.retain(|i| !matches!(i.problem, Problem::KnockIsProtected { .. }));
        Err(issues)
    }

    fn check_range(door: Self) -> Result<Self, Vec<Issue>> {
        let Some(rotating) = &door.rotating else {
            return Ok(door);
        };
        let (first, last) = (rotating.rotation.first, rotating.rotation.last);
        let issues: Vec<Issue> = door
            .protected
            .iter()
            .enumerate()
            .filter(|(_, p)| (first..=last).contains(&p.port))
            .map(|(i, &protected)| {
                let problem = Problem::ProtectedInRange {
                    protected,
                    first,
                    last,
                };
                Issue::at(Key::Protected, Some(i), problem)
            })
            .collect();
        match issues.is_empty() {
            true => Ok(door),
            false => Err(issues),
        }
    }

    /// The door with `decoys` (see `config/decoys.rs`).
    pub fn with_decoys(mut self, decoys: Decoys) -> Self {
        self.decoys = decoys;
        self
    }

    /// The door's decoys.
    pub fn decoys(&self) -> &Decoys {
        &self.decoys
    }

    /// The door's rotating sequence, if its sequence rotates.
    pub fn rotating_sequence(&self) -> Option<&RotatingSequence> {
        self.rotating.as_ref()
    }

    /// Checks a door on its own and builds it. Every problem found is
    /// returned (each with the key it is about), not just the first.
    pub fn new(
        name: DoorName,
        sequence: Vec<KnockPort>,
        timing: Timing,
        protected: Vec<ProtectedPort>,
        allow: AllowList,
    ) -> Result<Self, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut push = |key, item, problem| issues.push(Issue::at(key, item, problem));
        if sequence.is_empty() || sequence.len() > MAX_SEQUENCE_LEN {
            push(Key::Sequence, None, Problem::SequenceLength(sequence.len()));
        }
        for (key, value, bounds) in [
            (Key::Window, timing.window, &WINDOW_BOUNDS),
            (Key::Access, timing.access, &ACCESS_BOUNDS),
            (Key::Lockout, timing.lockout, &LOCKOUT_BOUNDS),
        ] {
            if let Err(problem) = check_bounds(key, value, bounds) {
                push(key, None, problem);
            }
        }
        if protected.is_empty() {
            push(Key::Protected, None, Problem::NoProtectedPort);
        }
        for (i, port) in protected.iter().enumerate() {
            if protected[..i].contains(port) {
                push(Key::Protected, Some(i), Problem::DuplicateProtected(*port));
            } else if let Some(other) = protected[..i].iter().find(|p| p.port == port.port) {
                let problem = Problem::ProtocolConflict {
                    port: *port,
                    other: *other,
                    door: name.clone(),
                };
                push(Key::Protected, Some(i), problem);
            }
        }
        for (i, knock) in sequence.iter().enumerate() {
            if let Some(port) = protected.iter().find(|p| p.port == knock.port) {
                let problem = Problem::KnockIsProtected {
                    knock: *knock,
                    protected: *port,
                    door: name.clone(),
                };
                push(Key::Sequence, Some(i), problem);
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            name,
            sequence,
            timing,
            protected,
            allow,
            fleet: false,
            rotating: None,
            decoys: Decoys::Off,
        })
    }

    /// The seed's door: `default`, knocks 1234,5678,9012 (UDP), opens
    /// tcp/2222 for 30 s, window 10 s, lockout 5 s, from everywhere.
    pub fn seed_default() -> Self {
        Self::new(
            "default".parse().expect("valid name"),
            Sequence::default()
                .ports()
                .iter()
                .map(|&p| KnockPort::udp(p))
                .collect(),
            Timing::default(),
            vec![ProtectedPort::tcp(super::DEFAULT_PROTECTED_PORT)],
            AllowList::everything(),
        )
        .expect("the seed's door is valid")
    }

    /// The door's name.
    pub fn name(&self) -> &DoorName {
        &self.name
    }

    /// The knocks, in order (repeats allowed).
    pub fn sequence(&self) -> &[KnockPort] {
        &self.sequence
    }

    /// Window, access and lockout.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The ports a completed sequence opens (one or more, no repeats).
    pub fn protected(&self) -> &[ProtectedPort] {
        &self.protected
    }

    /// The sources allowed to use the door.
    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    /// The door shared with the fleet (`fleet = true`): its grants are
    /// published to, and applied from, the group's bucket.
    pub fn with_fleet(mut self, fleet: bool) -> Self {
        self.fleet = fleet;
        self
    }

    /// Whether the door is shared with the fleet.
    pub fn fleet(&self) -> bool {
        self.fleet
    }

    /// Whether `ip` may use this door; knocks from elsewhere are ignored.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip)
    }

    /// The rules of today's single-door core: the knock port numbers, in
    /// order, and the door's timing. The core hears UDP only until the
    /// stealth issue's capture lands; `:tcp` knocks are passed as numbers.
    /// A rotating door has no fixed ports: its range's first port stands
    /// in (only logs read these rules when doors are configured).
    pub fn knock_rules(&self, max_tracked: usize) -> KnockRules {
        let mut ports: Vec<u16> = self.sequence.iter().map(|k| k.port).collect();
        if let Some(r) = &self.rotating {
            ports = vec![r.rotation.first];
        }
        KnockRules {
            sequence: Sequence::new(ports).expect("a door's sequence is valid"),
            window: self.timing.window,
            access: self.timing.access,
            lockout: self.timing.lockout,
            max_tracked,
        }
    }
}

#[cfg(test)]
mod tests;
