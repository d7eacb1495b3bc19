//! One validated configuration of the daemon: global settings and doors.
//!
//! [`ServerConfig::new`] is the one place that checks how values relate:
//! unique door names, knock ports that are nobody's protected port, a
//! protected port shared by doors only with one access duration (a grant
//! is per IP and port in the firewall, so two durations would fight), an
//! SPA port apart from every knock and protected port, ranges of the
//! bounds, and something to listen for. Every problem is returned, each
//! with its place, so a file's reader can point at its line.
//!
//! Built from a TOML file ([`super::file`]) or from the seed's flags
//! ([`ServerConfig::from_flags`]); flags beside a file override its
//! globals ([`ServerConfig::with_overrides`]).

use std::collections::HashMap;
use std::time::Duration;

use super::Sequence;
use super::door::{AllowList, Bounds, Door, KnockPort, ProtectedPort, Timing, check_bounds};
use super::globals::{GlobalOverrides, Globals};
use super::issue::{Issue, Issues, Key, Problem};

/// Largest `max-tracked` and `max-grants` (ten million entries: far more
/// than one host's memory should hold for a knock daemon).
pub const MAX_TABLE_BOUND: u64 = 10_000_000;
/// Largest `max-connections` of the userspace gate.
pub const MAX_CONNECTIONS_BOUND: u64 = 65_536;
/// Largest `spa.max-age`, seconds (as `--spa-max-age`).
pub const MAX_SPA_AGE: u64 = 24 * 60 * 60;

/// The built-in service's `close-after`: long enough to read a banner,
/// short enough that a connection does not hold a slot for ages.
pub const CLOSE_AFTER_BOUNDS: Bounds = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(60 * 60),
    why_min: "a client could not read the answer",
};

/// The seed's flags that describe its one door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFlags {
    /// `--sequence` (UDP knocks).
    pub sequence: Sequence,
    /// `--protected-port` (TCP).
    pub protected_port: u16,
    /// `--window`.
    pub window: Duration,
    /// `--access-duration`.
    pub access: Duration,
    /// `--lockout`.
    pub lockout: Duration,
    /// `--no-sequence`: SPA only, no door.
    pub no_sequence: bool,
}

impl Default for SeedFlags {
    fn default() -> Self {
        let timing = Timing::default();
        Self {
            sequence: Sequence::default(),
            protected_port: super::DEFAULT_PROTECTED_PORT,
            window: timing.window,
            access: timing.access,
            lockout: timing.lockout,
            no_sequence: false,
        }
    }
}

/// A validated configuration. Build it with [`ServerConfig::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    globals: Globals,
    doors: Vec<Door>,
}

impl ServerConfig {
    /// Checks the globals and how they relate to the doors and each other.
    pub fn new(globals: Globals, doors: Vec<Door>) -> Result<Self, Issues> {
        let mut issues = check_globals(&globals);
        issues.extend(check_doors(&doors));
        issues.extend(check_spa_port(&globals, &doors));
        if doors.is_empty() && globals.spa.is_none() {
            issues.push(Issue::at(Key::Doors, None, Problem::NothingToListen));
        }
        if issues.is_empty() {
            Ok(Self { globals, doors })
        } else {
            Err(Issues(issues))
        }
    }

    /// The built-in service's `close-after`: long enough to read a banner,
    /// short enough that a connection does not hold a slot for ages.
    pub const CLOSE_AFTER_BOUNDS: Bounds = Bounds {
        min: Duration::from_millis(100),
        max: Duration::from_secs(60 * 60),
        why_min: "a client could not read the answer",
    };

    /// The seed's flags: one door named `default` (none with
    /// `--no-sequence`), and `globals` as given by the other flags.
    pub fn from_flags(flags: SeedFlags, globals: Globals) -> Result<Self, Issues> {
        let mut doors = Vec::new();
        if !flags.no_sequence {
            let door = Door::new(
                "default".parse().expect("valid name"),
                flags
                    .sequence
                    .ports()
                    .iter()
                    .map(|&p| KnockPort::udp(p))
                    .collect(),
                Timing {
                    window: flags.window,
                    access: flags.access,
                    lockout: flags.lockout,
                },
                vec![ProtectedPort::tcp(flags.protected_port)],
                AllowList::everything(),
            )
            .map_err(|issues| {
                Issues(
                    issues
                        .into_iter()
                        .map(|i| i.in_door(0, "default"))
                        .collect(),
                )
            })?;
            // Flags-only with --fleet-url: the seed's door is shared.
            doors.push(door.with_fleet(globals.fleet.is_some()));
        }
        Self::new(globals, doors)
    }

    /// This configuration with the globals that `overrides` gives replaced,
    /// checked again (an overriding SPA port may clash with a knock port).
    pub fn with_overrides(self, overrides: GlobalOverrides) -> Result<Self, Issues> {
        let mut globals = self.globals;
        globals.apply(overrides);
        Self::new(globals, self.doors)
    }

    /// The daemon-wide settings.
    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    /// The doors, in file order.
    pub fn doors(&self) -> &[Door] {
        &self.doors
    }

    /// The door named `name`.
    pub fn door(&self, name: &str) -> Option<&Door> {
        self.doors.iter().find(|d| d.name().as_str() == name)
    }

    /// Every protected port of every door, each once, sorted.
    pub fn protected_ports(&self) -> Vec<ProtectedPort> {
        let mut ports: Vec<_> = self
            .doors
            .iter()
            .flat_map(|d| d.protected().iter().copied())
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }
}

fn count(key: Key, value: u64, min: u64, max: u64) -> Option<Issue> {
    (!(min..=max).contains(&value)).then(|| {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        Issue::at(
            key,
            None,
            Problem::Count {
                key,
                value,
                min,
                max,
            },
        )
    })
}

fn check_globals(globals: &Globals) -> Vec<Issue> {
    let mut issues: Vec<Issue> = [
        count(
            Key::MaxTracked,
            globals.max_tracked as u64,
            1,
            MAX_TABLE_BOUND,
        ),
        count(
            Key::MaxGrants,
            globals.max_grants as u64,
            1,
            MAX_TABLE_BOUND,
        ),
        count(
            Key::MaxConnections,
            globals.max_connections as u64,
            1,
            MAX_CONNECTIONS_BOUND,
        ),
        globals
            .spa
            .as_ref()
            .and_then(|spa| count(Key::SpaMaxAge, spa.max_age_secs, 1, MAX_SPA_AGE)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (i, ip) in globals.bind.iter().enumerate() {
        if globals.bind[..i].contains(ip) {
            issues.push(Issue::at(Key::Bind, Some(i), Problem::DuplicateBind(*ip)));
        }
    }
    for (key, addr) in [
        (Key::StatsListen, globals.stats_listen),
        (Key::MetricsListen, globals.metrics_listen),
    ] {
        if let Some(addr) = addr.filter(|a| !a.ip().to_canonical().is_loopback()) {
            let reason = "expected a loopback IP:PORT (127.0.0.1 or ::1): the counters are not for the network".to_string();
            let problem = Problem::Listen {
                key,
                value: addr.to_string(),
                reason,
            };
            issues.push(Issue::at(key, None, problem));
        }
    }
    if let Some(addr) = globals
        .stats_listen
        .filter(|a| Some(*a) == globals.metrics_listen)
    {
        let problem = Problem::Listen {
            key: Key::MetricsListen,
            value: addr.to_string(),
            reason: "is also stats-listen: the two need their own addresses".to_string(),
        };
        issues.push(Issue::at(Key::MetricsListen, None, problem));
    }
    for (i, name) in globals.capture.interfaces.iter().enumerate() {
        if let Err(problem) = super::globals::check_interface(name) {
            issues.push(Issue::at(Key::Interface, Some(i), problem));
        } else if globals.capture.interfaces[..i].contains(name) {
            let problem = Problem::DuplicateInterface(name.clone());
            issues.push(Issue::at(Key::Interface, Some(i), problem));
        }
    }
    if let Err(problem) = check_bounds(Key::CloseAfter, globals.close_after, &CLOSE_AFTER_BOUNDS) {
        issues.push(Issue::at(Key::CloseAfter, None, problem));
    }
    if globals.flag.is_empty() {
        issues.push(Issue::at(Key::Flag, None, Problem::Empty(Key::Flag)));
    }
    issues
}

fn check_doors(doors: &[Door]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut protected: HashMap<u16, (ProtectedPort, &Door)> = HashMap::new();
    for (index, door) in doors.iter().enumerate() {
        let name = door.name().as_str();
        let place = |issue: Issue| issue.in_door(index, name);
        if names.insert(name, index).is_some() {
            let problem = Problem::DuplicateDoor(door.name().clone());
            issues.push(place(Issue::at(Key::Name, None, problem)));
        }
        for (item, knock) in door.sequence().iter().enumerate() {
            let other = doors
                .iter()
                .filter(|other| other.name() != door.name())
                .find_map(|other| {
                    Some(other).zip(other.protected().iter().find(|p| p.port == knock.port))
                });
            if let Some((other, port)) = other {
                let problem = Problem::KnockIsProtected {
                    knock: *knock,
                    protected: *port,
                    door: other.name().clone(),
                };
                issues.push(place(Issue::at(Key::Sequence, Some(item), problem)));
            }
        }
        for (item, port) in door.protected().iter().enumerate() {
            match protected.get(&port.port) {
                Some((other, earlier)) if other.proto != port.proto => {
                    if earlier.name() != door.name() {
                        let problem = Problem::ProtocolConflict {
                            port: *port,
                            other: *other,
                            door: earlier.name().clone(),
                        };
                        issues.push(place(Issue::at(Key::Protected, Some(item), problem)));
                    }
                }
                Some((_, earlier)) if earlier.timing().access != door.timing().access => {
                    let problem = Problem::AccessConflict {
                        port: *port,
                        door: door.name().clone(),
                        access: door.timing().access,
                        other: earlier.name().clone(),
                        other_access: earlier.timing().access,
                    };
                    issues.push(place(Issue::at(Key::Protected, Some(item), problem)));
                }
                Some(_) => {}
                None => {
                    protected.insert(port.port, (*port, door));
                }
            }
        }
    }
    issues
}

fn check_spa_port(globals: &Globals, doors: &[Door]) -> Vec<Issue> {
    let Some(spa) = &globals.spa else {
        return Vec::new();
    };
    let mut issues = Vec::new();
    if spa.port == 0 {
        let problem = Problem::Port {
            key: Key::SpaPort,
            value: 0,
        };
        issues.push(Issue::at(Key::SpaPort, None, problem));
    }
    for door in doors {
        let knock = door.sequence().iter().find(|k| k.port == spa.port);
        let what = match (knock, door.protected().iter().find(|p| p.port == spa.port)) {
            (Some(knock), _) => format!("knock port {knock} of door '{}'", door.name()),
            (None, Some(port)) => format!("protected port {port} of door '{}'", door.name()),
            (None, None) => continue,
        };
        let problem = Problem::SpaPortClash {
            port: spa.port,
            what,
        };
        issues.push(Issue::at(Key::SpaPort, None, problem));
    }
    issues
}

#[cfg(test)]
mod tests;
