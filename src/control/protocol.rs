//! The control protocol, version 1: one JSON object per line each way.
//!
//! A request names its version and command, `{"v":1,"cmd":"list","all":true}`;
//! unknown fields are refused, so a typo never silently does something else.
//! A reply is `{"v":1,"ok":true, ...}` with one body (`status`, `list` or
//! `done`), or `{"v":1,"ok":false,"error":"..."}`. Parsing is pure and
//! total: any bytes give a [`Request`] or a [`RequestError`] naming what
//! is wrong, never a panic (a property test feeds it garbage).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::door::ACCESS_BOUNDS;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest request line accepted, newline included: far above any real
/// request (a few hundred bytes), small enough that a client cannot make
/// the daemon buffer much.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Version, uptime, backend, capture source, doors, counters.
    Status,
    /// Open grants; with `all`, the locked-out sources too.
    List {
        /// Also list the locked-out sources.
        all: bool,
    },
    /// Opens access for `ip` by hand.
    Grant {
        /// Who to let in.
        ip: IpAddr,
        /// A door's ports, or one port.
        target: Target,
        /// For how long (default: the door's access time).
        duration: Option<Duration>,
    },
    /// Closes `ip`'s access: on a door's ports, or everywhere.
    Revoke {
        /// Whose access.
        ip: IpAddr,
        /// Only this door's ports (by name).
        door: Option<String>,
    },
    /// Revokes every grant.
    Flush,
    /// Re-reads the configuration file (as SIGHUP does).
    Reload,
}

/// What a manual grant opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every protected port of the door so named.
    Door(String),
    /// One protected port (`tcp/N`, `udp/N` or `N`).
    Port(u16),
    /// The first door's ports (neither given).
    FirstDoor,
}

/// A request that was refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`].
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Not UTF-8 or not a JSON object of the known fields.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A version this build does not speak.
    #[error("unsupported protocol version {0} (this daemon speaks {VERSION})")]
    Version(u64),
    /// A command this build does not know.
    #[error("unknown command '{0}' (known: status, list, grant, revoke, flush, reload)")]
    Command(String),
    /// A field's value was refused.
    #[error("invalid {field} '{value}': {why}")]
    Value {
        /// Which field.
        field: &'static str,
        /// What was given.
        value: String,
        /// What is allowed.
        why: String,
    },
}

/// A request as it travels, before its fields are checked.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    /// Protocol version.
    pub v: u64,
    /// Command name.
    pub cmd: String,
    /// `list`: also the locked-out sources.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// `grant`, `revoke`: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `grant`, `revoke`: a door's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    /// `grant`: one port, `tcp/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// `grant`: a duration, `60s`, `5m`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

impl WireRequest {
    /// A request for `cmd` with no arguments yet.
    pub fn new(cmd: &str) -> Self {
        Self {
            v: u64::from(VERSION),
            cmd: cmd.to_string(),
            ..Self::default()
        }
    }

    /// Its line on the wire, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Parses one request line (trailing newline optional).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    let text =
        std::str::from_utf8(line).map_err(|_| RequestError::Malformed("not UTF-8".to_string()))?;
    let wire: WireRequest = serde_json::from_str(text.trim_end())
        .map_err(|err| RequestError::Malformed(err.to_string()))?;
    if wire.v != u64::from(VERSION) {
        return Err(RequestError::Version(wire.v));
    }
    let unused = |field: &'static str, given: bool| match given {
        true => Err(RequestError::Value {
            field,
            value: wire.cmd.clone(),
            why: format!("command '{}' takes no {field}", wire.cmd),
        }),
        false => Ok(()),
    };
    let cmd = wire.cmd.as_str();
    if !matches!(cmd, "grant" | "revoke") {
        unused("ip", wire.ip.is_some())?;
        unused("door", wire.door.is_some())?;
    }
    if cmd != "grant" {
        unused("port", wire.port.is_some())?;
        unused("for", wire.duration.is_some())?;
    }
    if cmd != "list" {
        unused("all", wire.all)?;
    }
    match cmd {
        "status" => Ok(Request::Status),
        "list" => Ok(Request::List { all: wire.all }),
        "flush" => Ok(Request::Flush),
        "reload" => Ok(Request::Reload),
        "revoke" => Ok(Request::Revoke {
            ip: parse_ip(wire.ip.as_deref())?,
            door: wire.door,
        }),
        "grant" => {
            let ip = parse_ip(wire.ip.as_deref())?;
            let target = match (wire.door, wire.port) {
                (Some(_), Some(port)) => {
                    return Err(RequestError::Value {
                        field: "port",
                        value: port,
                        why: "give a door or a port, not both".to_string(),
                    });
                }
                (Some(door), None) => Target::Door(door),
                (None, Some(port)) => Target::Port(parse_target_port(&port)?),
                (None, None) => Target::FirstDoor,
            };
            let duration = wire
                .duration
                .as_deref()
                .map(parse_grant_duration)
                .transpose()?;
            Ok(Request::Grant {
                ip,
                target,
                duration,
            })
        }
        other => Err(RequestError::Command(other.chars().take(64).collect())),
    }
}

fn parse_ip(text: Option<&str>) -> Result<IpAddr, RequestError> {
    let text = text.ok_or_else(|| RequestError::Value {
        field: "ip",
        value: String::new(),
        why: "an address is required".to_string(),
    })?;
    text.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| RequestError::Value {
            field: "ip",
            value: text.chars().take(64).collect(),
            why: "expected an IPv4 or IPv6 address".to_string(),
        })
}

/// Parses `tcp/N`, `udp/N` or `N` (a protected port's number: the grant
/// table and the firewall key grants by number).
pub fn parse_target_port(text: &str) -> Result<u16, RequestError> {
    let refuse = || RequestError::Value {
        field: "port",
        value: text.chars().take(64).collect(),
        why: "expected tcp/N, udp/N or N with N from 1 to 65535".to_string(),
    };
    let number = match text.split_once('/') {
        Some(("tcp" | "udp", number)) => number,
        Some(_) => return Err(refuse()),
        None => text,
    };
    match number.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(refuse()),
    }
}

/// Parses a manual grant's duration: `60s`, `5m`, within a door's access
/// bounds (1 s to 24 h).
pub fn parse_grant_duration(text: &str) -> Result<Duration, RequestError> {
    let refuse = || RequestError::Value {
        field: "for",
        value: text.chars().take(64).collect(),
        why: format!(
            "expected a duration from {}s to {}h (e.g. 60s, 5m)",
            ACCESS_BOUNDS.min.as_secs(),
            ACCESS_BOUNDS.max.as_secs() / 3600
        ),
    };
    let duration = crate::config::parse_duration_unbounded(text).ok_or_else(refuse)?;
    if duration < ACCESS_BOUNDS.min || duration > ACCESS_BOUNDS.max {
        return Err(refuse());
    }
    Ok(duration)
}

/// A reply: `ok` with one body, or an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version.
    pub v: u32,
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `status`'s answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `list`'s answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<GrantList>,
    /// What a `grant`, `revoke`, `flush` or `reload` did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Done>,
}

impl Reply {
    /// A refusal.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            v: VERSION,
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// A success carrying nothing yet.
    pub fn ok() -> Self {
        Self {
            v: VERSION,
            ok: true,
            ..Self::default()
        }
    }

    /// Its line on the wire, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// `status`: what runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The firewall backend.
    pub backend: String,
    /// Where knocks are heard.
    pub capture: String,
    /// The doors.
    pub doors: Vec<DoorStatus>,
    /// Open grants.
    pub grants: usize,
    /// The counters, by name (as the stats line has them).
    pub counters: BTreeMap<String, u64>,
}

/// One door in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DoorStatus {
    /// Its name.
    pub name: String,
    /// Its protected ports.
    pub ports: Vec<u16>,
    /// How long its grants last, in seconds.
    pub access_secs: f64,
}

/// `list`: open grants and the knock core's sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantList {
    /// Every open grant, soonest end first.
    pub grants: Vec<GrantRow>,
    /// Sources tracked by the knock core (in progress or locked out).
    pub tracked: usize,
    /// Of those, locked out.
    pub locked_out: usize,
    /// With `all`: the locked-out sources (at most [`MAX_LISTED_LOCKOUTS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockouts: Option<Vec<LockoutRow>>,
}

/// Most locked-out sources one `list --all` reply names.
pub const MAX_LISTED_LOCKOUTS: usize = 10_000;

/// One open grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRow {
    /// The address let in.
    pub ip: IpAddr,
    /// The door (for SPA and manual grants: the door protecting the port,
    /// if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    /// The protected port.
    pub port: u16,
    /// Seconds left, to the millisecond.
    pub left_secs: f64,
    /// How it was granted: knock, spa, manual (fleet later).
    pub origin: String,
}

/// One locked-out source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockoutRow {
    /// The address.
    pub ip: IpAddr,
    /// Seconds left.
    pub left_secs: f64,
}

/// What a changing command did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// One line for people.
    pub message: String,
    /// `(ip, port)` entries opened or closed in the firewall.
    pub changed: usize,
}

#[cfg(test)]
mod tests;
