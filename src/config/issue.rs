//! What is wrong with a configuration, and where.
//!
//! A [`Problem`] says what is wrong with one value, naming the value and
//! what is allowed. An [`Issue`] adds where: which door (if any), which key,
//! which item of a list. The TOML reader turns that place into a file, line
//! and column; the flags' path prints it as is. Keeping the place apart
//! from the check lets one set of checks serve both.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use super::door::{Bounds, DoorName, KnockPort, ProtectedPort};

/// A key of the configuration: where a value sits in the TOML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the TOML key of its name
pub enum Key {
    Name,
    Sequence,
    Window,
    Access,
    Lockout,
    Protected,
    Allow,
    Bind,
    Firewall,
    Deny,
    MaxTracked,
    MaxGrants,
    Instance,
    IptablesPosition,
    LogLevel,
    LogFormat,
    StatsListen,
    MetricsListen,
    ControlSocket,
    ControlGroup,
    Upstream,
    Flag,
    CloseAfter,
    MaxConnections,
    SpaPort,
    SpaAccess,
    SpaMaxAge,
    Capture,
    Interface,
    NflogGroup,
    /// The `[fleet]` table.
    Fleet,
    /// The whole file (a problem of no single key).
    Doors,
}

impl Key {
    /// The key as written in the file (`spa.port` for the `[spa]` table).
    pub fn as_str(self) -> &'static str {
        match self {
            Key::Name => "name",
            Key::Sequence => "sequence",
            Key::Window => "window",
            Key::Access => "access",
            Key::Lockout => "lockout",
            Key::Protected => "protected",
            Key::Allow => "allow",
            Key::Bind => "bind",
            Key::Firewall => "firewall",
            Key::Deny => "deny",
            Key::MaxTracked => "max-tracked",
            Key::MaxGrants => "max-grants",
            Key::Instance => "instance",
            Key::IptablesPosition => "iptables-position",
            Key::LogLevel => "log-level",
            Key::LogFormat => "log-format",
            Key::StatsListen => "stats-listen",
            Key::MetricsListen => "metrics-listen",
            Key::ControlSocket => "control-socket",
            Key::ControlGroup => "control-group",
            Key::Upstream => "upstream",
            Key::Flag => "flag",
            Key::CloseAfter => "close-after",
            Key::MaxConnections => "max-connections",
            Key::SpaPort => "spa.port",
            Key::SpaAccess => "spa.access",
            Key::SpaMaxAge => "spa.max-age",
            Key::Capture => "capture",
            Key::Interface => "interface",
            Key::NflogGroup => "nflog-group",
            Key::Fleet => "fleet",
            Key::Doors => "door",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn human(d: &Duration) -> String {
    super::render::duration_text(*d)
}

/// One refused value: what it is and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// A `[fleet]` setting refused (the message names it).
    #[error("{0}")]
    Fleet(String),
    /// A knock port that does not parse.
    #[error("invalid knock port '{0}': expected PORT, PORT:udp or PORT:tcp, PORT from 1 to 65535")]
    KnockPort(String),
    /// A protected port that does not parse.
    #[error("invalid protected port '{0}': expected tcp/PORT or udp/PORT, PORT from 1 to 65535")]
    ProtectedPort(String),
    /// A door name that is not an identifier.
    #[error(
        "invalid door name '{0}': expected an ASCII letter, then letters, digits, '-' or '_', at most 32 in all"
    )]
    DoorName(String),
    /// An allowed network that does not parse.
    #[error(
        "invalid network '{0}': expected an address or a CIDR such as 192.0.2.0/24 or 2001:db8::/32"
    )]
    Network(String),
    /// An allowed network with host bits set.
    #[error(
        "invalid network '{value}': host bits are set (did you mean {network} or a single address?)"
    )]
    NetworkHostBits {
        /// The text given.
        value: String,
        /// The network it lies in.
        network: IpNet,
    },
    /// `allow = []`.
    #[error("allow is empty: nobody could use this door (leave it out to allow every source)")]
    EmptyAllow,
    /// No knocks, or too many.
    #[error("the sequence has {0} knocks: expected 1 to {max}", max = super::MAX_SEQUENCE_LEN)]
    SequenceLength(usize),
    /// A rotating sequence that is refused (period, length, ports,
    /// entropy, protocols): the message says why and what is allowed.
    #[error("rotating sequence: {0}")]
    Rotation(String),
    /// A rotating sequence's key file that cannot be used.
    #[error("rotating sequence: {0}")]
    RotateKey(String),
    /// A protected port inside a rotating door's port range.
    #[error(
        "protected port {protected} lies in the rotating range {first}-{last}: a derived knock could land on it"
    )]
    ProtectedInRange {
        /// The protected port.
        protected: ProtectedPort,
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
    },
    /// No protected port.
    #[error("no protected port: a door must open at least one (e.g. protected = [\"tcp/22\"])")]
    NoProtectedPort,
    /// A protected port listed twice in one door.
    #[error("protected port {0} is listed twice")]
    DuplicateProtected(ProtectedPort),
    /// A knock port that is also a protected port (compared by number).
    #[error(
        "knock port {knock} is also protected port {protected} of door '{door}': knock ports and protected ports must differ"
    )]
    KnockIsProtected {
        /// The knock.
        knock: KnockPort,
        /// The protected port with the same number.
        protected: ProtectedPort,
        /// The door that protects it.
        door: DoorName,
    },
    /// A duration that does not parse.
    #[error(
        "invalid {key} '{value}': expected seconds (10, 0.5) or a number with a unit (250ms, 10s, 1m, 1h)"
    )]
    Duration {
        /// Which duration.
        key: Key,
        /// The text given.
        value: String,
    },
    /// A negative duration.
    #[error("invalid {key} '{value}': a duration cannot be negative")]
    NegativeDuration {
        /// Which duration.
        key: Key,
        /// The text given.
        value: String,
    },
    /// A duration outside its bounds.
    #[error(
        "invalid {key} {}: expected {} to {}{}",
        human(value), human(&bounds.min), human(&bounds.max),
        if value < &bounds.min { format!(" ({})", bounds.why_min) } else { String::new() }
    )]
    DurationOutOfRange {
        /// Which duration.
        key: Key,
        /// The value given.
        value: Duration,
        /// What is allowed.
        bounds: Bounds,
    },
    /// Two doors with one name.
    #[error("door name '{0}' is used twice: door names must be unique")]
    DuplicateDoor(DoorName),
    /// One protected port in two doors with different access durations.
    #[error(
        "protected port {port} is opened by door '{door}' for {} and by door '{other}' for {}: doors sharing a protected port must give the same access",
        human(access),
        human(other_access)
    )]
    AccessConflict {
        /// The shared port.
        port: ProtectedPort,
        /// This door.
        door: DoorName,
        /// Its access.
        access: Duration,
        /// The earlier door.
        other: DoorName,
        /// The earlier door's access.
        other_access: Duration,
    },
    /// One port number protected under two protocols (`tcp/N` and `udp/N`),
    /// in one door or two: a grant is keyed by (address, port number), so
    /// the firewall could not tell which protocol it opens.
    #[error(
        "protected port {port} is also protected port {other} of door '{door}': a port number is protected under one protocol only"
    )]
    ProtocolConflict {
        /// This protected port.
        port: ProtectedPort,
        /// The same number under the other protocol.
        other: ProtectedPort,
        /// The door that protects `other`.
        door: DoorName,
    },
    /// The SPA port is also a knock or protected port.
    #[error(
        "SPA port {port} is also {what}: the SPA port must differ from every knock and protected port"
    )]
    SpaPortClash {
        /// The SPA port.
        port: u16,
        /// What else uses it.
        what: String,
    },
    /// No door and no SPA: the daemon would hear nothing.
    #[error("nothing to listen for: give at least one [[door]] or an [spa] table")]
    NothingToListen,
    /// An address that does not parse.
    #[error("invalid {key} '{value}': expected an IP address such as 0.0.0.0, :: or 192.0.2.1")]
    Address {
        /// Which key.
        key: Key,
        /// The text given.
        value: String,
    },
    /// One bind address given twice.
    #[error("bind address {0} is listed twice")]
    DuplicateBind(IpAddr),
    /// A listen address that is refused.
    #[error("invalid {key} '{value}': {reason}")]
    Listen {
        /// Which key.
        key: Key,
        /// The text given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A word outside its set (`deny`, `firewall`, `log-format`, ...).
    #[error("invalid {key} '{value}': expected one of {allowed}")]
    Choice {
        /// Which key.
        key: Key,
        /// The text given.
        value: String,
        /// The accepted words.
        allowed: &'static str,
    },
    /// A count outside its range.
    #[error("invalid {key} {value}: expected a whole number from {min} to {max}")]
    Count {
        /// Which key.
        key: Key,
        /// The value given.
        value: i64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A port that is not in 1..=65535.
    #[error("invalid {key} {value}: expected a port from 1 to 65535")]
    Port {
        /// Which key.
        key: Key,
        /// The value given.
        value: i64,
    },
    /// An instance name that is not an identifier.
    #[error(
        "invalid instance '{0}': expected 1 to {max} characters of a-z, 0-9, '_' and '-'",
        max = crate::firewall::instance::MAX_INSTANCE_LEN
    )]
    Instance(String),
    /// An interface name the kernel would refuse.
    #[error(
        "invalid interface '{0}': expected 1 to 15 characters without '/', ':' or spaces (a name from `ip link`)"
    )]
    Interface(String),
    /// The same interface named twice.
    #[error("interface '{0}' is named twice")]
    DuplicateInterface(String),
    /// A text value that must not be empty.
    #[error("{0} is empty")]
    Empty(Key),
}

/// A [`Problem`] and where it is: door (index and name), key, list item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Index of the `[[door]]` table (0-based), if the issue is in one.
    pub door: Option<usize>,
    /// The door's name as written, for the message.
    pub door_name: Option<String>,
    /// The key the issue is about.
    pub key: Key,
    /// Index in the key's list (a sequence's knock, a protected port).
    pub item: Option<usize>,
    /// What is wrong.
    pub problem: Problem,
}

impl Issue {
    /// An issue outside any door (a global or the `[spa]` table).
    pub fn at(key: Key, item: Option<usize>, problem: Problem) -> Self {
        Self {
            door: None,
            door_name: None,
            key,
            item,
            problem,
        }
    }

    /// Places the issue in door `index` named `name`.
    pub fn in_door(mut self, index: usize, name: &str) -> Self {
        self.door = Some(index);
        self.door_name = Some(name.to_string());
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.door, &self.door_name) {
            (Some(_), Some(name)) => write!(f, "door '{name}': {}", self.problem),
            (Some(index), None) => write!(f, "door #{}: {}", index + 1, self.problem),
            _ => write!(f, "{}", self.problem),
        }
    }
}

/// Several issues, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", join(.0))]
pub struct Issues(pub Vec<Issue>);

fn join(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
