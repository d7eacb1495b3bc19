//! The helper protocol: fixed-size binary records, one message per
//! datagram of a `SOCK_SEQPACKET` socketpair (so a message arrives whole
//! or not at all, and a closed peer reads as end of file).
//!
//! Every message starts with [`VERSION`] and an opcode byte. Why binary
//! and fixed-size: the helper is the privileged side; its parser is a few
//! bounds-checked slices with nothing to allocate beyond the count the
//! header gives (at most [`MAX_CHANGES`]), so a hostile packet process
//! cannot make it do much work or allocate much memory.
//!
//! Packet process -> helper: `Hello`, `Setup`, `Apply(changes)`,
//! `Reconfigure(tcp, udp)`, `Bye`. Helper -> packet process:
//! `Backend(kind)`, `Ready`, `Results(codes)`, `Reconfigured`,
//! `Failed(message)`.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use thiserror::Error;

use crate::firewall::{Change, FirewallKind};

/// The protocol version both sides must speak.
pub const VERSION: u8 = 1;
/// Most changes in one `Apply` (the worker's batch bound).
pub const MAX_CHANGES: usize = crate::firewall_worker::MAX_BATCH;
/// Most ports in one `Reconfigure`, per protocol.
pub const MAX_PORTS: usize = 1024;
/// Longest `Failed` message, bytes (longer ones are cut).
pub const MAX_MESSAGE: usize = 1024;
/// One encoded change: kind, family, port, ttl in ms, 16 address bytes.
const CHANGE_LEN: usize = 24;
/// The largest datagram either side ever sends (and reads).
pub const MAX_DATAGRAM: usize = 4 + MAX_CHANGES * CHANGE_LEN;
/// Longest grant a request may ask for: a day (fwknop's longest
/// `MAX_FW_TIMEOUT` in practice is far below; a knock's access is minutes).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A request from the packet process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// First message: which backend runs? (nothing is set up yet)
    Hello,
    /// Set the backend up (the packet process has bound its sockets).
    Setup,
    /// Apply these changes, in order.
    Apply(Vec<Change>),
    /// Protect these TCP and UDP ports from now on (a reload).
    Reconfigure(Vec<u16>, Vec<u16>),
    /// The packet process is stopping: tear down.
    Bye,
}

/// What one change came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Applied,
    /// Refused by the helper's policy (a port the config does not protect,
    /// a ttl over [`MAX_TTL`], too many grants).
    Refused,
    /// The backend failed to apply it.
    Failed,
}

/// A reply from the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The backend the helper runs.
    Backend(FirewallKind),
    /// The backend is set up.
    Ready,
    /// One outcome per change of an `Apply`.
    Results(Vec<Outcome>),
    /// The protected ports changed.
    Reconfigured,
    /// A request failed or was refused, and why.
    Failed(String),
}

/// A message that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Empty, cut short, or longer than its header says.
    #[error("malformed message ({0})")]
    Malformed(&'static str),
    /// Another protocol version.
    #[error("protocol version {0}, expected {VERSION}")]
    Version(u8),
    /// An opcode we do not know.
    #[error("unknown opcode {0:#04x}")]
    Opcode(u8),
    /// A count over its bound.
    #[error("too many entries ({0})")]
    TooMany(usize),
}

const HELLO: u8 = 0x01;
const SETUP: u8 = 0x02;
const APPLY: u8 = 0x03;
const RECONFIGURE: u8 = 0x04;
const BYE: u8 = 0x05;
const BACKEND: u8 = 0x81;
const READY: u8 = 0x82;
const RESULTS: u8 = 0x83;
const RECONFIGURED: u8 = 0x84;
const FAILED: u8 = 0x85;

impl Request {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Hello => vec![VERSION, HELLO],
            Request::Setup => vec![VERSION, SETUP],
            Request::Bye => vec![VERSION, BYE],
            Request::Apply(changes) => {
                let mut out = vec![VERSION, APPLY];
                out.extend((changes.len() as u16).to_be_bytes());
                for change in changes {
                    encode_change(change, &mut out);
                }
                out
            }
            Request::Reconfigure(tcp, udp) => {
                let mut out = vec![VERSION, RECONFIGURE];
                out.extend((tcp.len() as u16).to_be_bytes());
                out.extend((udp.len() as u16).to_be_bytes());
                for port in tcp.iter().chain(udp) {
                    out.extend(port.to_be_bytes());
                }
                out
            }
        }
    }

    /// Reads a datagram; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        let (op, body) = header(bytes)?;
        match op {
            HELLO | SETUP | BYE if !body.is_empty() => Err(WireError::Malformed("trailing bytes")),
            HELLO => Ok(Request::Hello),
            SETUP => Ok(Request::Setup),
            BYE => Ok(Request::Bye),
            APPLY => {
                let (count, rest) = count(body, MAX_CHANGES)?;
                if rest.len() != count * CHANGE_LEN {
                    return Err(WireError::Malformed("change count and length differ"));
                }
                rest.chunks_exact(CHANGE_LEN)
                    .map(decode_change)
                    .collect::<Result<_, _>>()
                    .map(Request::Apply)
            }
            RECONFIGURE => {
                let (tcp, rest) = count(body, MAX_PORTS)?;
                let (udp, rest) = count(rest, MAX_PORTS)?;
                if rest.len() != (tcp + udp) * 2 {
                    return Err(WireError::Malformed("port counts and length differ"));
                }
                let ports: Vec<u16> = rest
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                Ok(Request::Reconfigure(
                    ports[..tcp].to_vec(),
                    ports[tcp..].to_vec(),
                ))
            }
            other => Err(WireError::Opcode(other)),
        }
    }
}

impl Reply {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Backend(kind) => vec![VERSION, BACKEND, kind_code(*kind)],
            Reply::Ready => vec![VERSION, READY],
            Reply::Reconfigured => vec![VERSION, RECONFIGURED],
            Reply::Results(outcomes) => {
                let mut out = vec![VERSION, RESULTS];
                out.extend((outcomes.len() as u16).to_be_bytes());
                out.extend(outcomes.iter().map(|o| match o {
                    Outcome::Applied => 0u8,
                    Outcome::Refused => 1,
                    Outcome::Failed => 2,
                }));
                out
            }
            Reply::Failed(message) => {
                let mut end = message.len().min(MAX_MESSAGE);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                let mut out = vec![VERSION, FAILED];
                out.extend(&message.as_bytes()[..end]);
                out
            }
        }
    }

    /// Reads a datagram; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let (op, body) = header(bytes)?;
        match op {
            BACKEND => match body {
                [code] => kind_of(*code)
                    .map(Reply::Backend)
                    .ok_or(WireError::Malformed("unknown backend")),
                _ => Err(WireError::Malformed("backend is one byte")),
            },
            READY | RECONFIGURED if !body.is_empty() => Err(WireError::Malformed("trailing bytes")),
            READY => Ok(Reply::Ready),
            RECONFIGURED => Ok(Reply::Reconfigured),
            RESULTS => {
                let (count, rest) = count(body, MAX_CHANGES)?;
                if rest.len() != count {
                    return Err(WireError::Malformed("result count and length differ"));
                }
                rest.iter()
                    .map(|code| match code {
                        0 => Ok(Outcome::Applied),
                        1 => Ok(Outcome::Refused),
                        2 => Ok(Outcome::Failed),
                        _ => Err(WireError::Malformed("unknown outcome")),
                    })
                    .collect::<Result<_, _>>()
                    .map(Reply::Results)
            }
            FAILED if body.len() > MAX_MESSAGE => Err(WireError::TooMany(body.len())),
            FAILED => Ok(Reply::Failed(String::from_utf8_lossy(body).into_owned())),
            other => Err(WireError::Opcode(other)),
        }
    }
}

fn header(bytes: &[u8]) -> Result<(u8, &[u8]), WireError> {
    match bytes {
        [] | [_] => Err(WireError::Malformed("shorter than a header")),
        [version, ..] if *version != VERSION => Err(WireError::Version(*version)),
        [_, op, body @ ..] => Ok((*op, body)),
    }
}

/// A big-endian u16 count, at most `max`, and what follows it.
fn count(body: &[u8], max: usize) -> Result<(usize, &[u8]), WireError> {
    let [hi, lo, rest @ ..] = body else {
        return Err(WireError::Malformed("no count"));
    };
    let n = usize::from(u16::from_be_bytes([*hi, *lo]));
    if n > max {
        return Err(WireError::TooMany(n));
    }
    Ok((n, rest))
}

fn encode_change(change: &Change, out: &mut Vec<u8>) {
    let (kind, ip, port, ttl) = match *change {
        Change::Grant { ip, port, ttl } => (1u8, ip, port, ttl),
        Change::Revoke { ip, port } => (2u8, ip, port, Duration::ZERO),
    };
    let (family, addr) = match ip {
        IpAddr::V4(v4) => (4u8, v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => (6u8, v6.octets()),
    };
    let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    out.extend([kind, family]);
    out.extend(port.to_be_bytes());
    out.extend(ms.to_be_bytes());
    out.extend(addr);
}

fn decode_change(bytes: &[u8]) -> Result<Change, WireError> {
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ms = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&bytes[8..24]);
    let v6 = Ipv6Addr::from(addr);
    let ip = match bytes[1] {
        4 => IpAddr::V4(
            v6.to_ipv4_mapped()
                .ok_or(WireError::Malformed("IPv4 not mapped"))?,
        ),
        6 => IpAddr::V6(v6),
        _ => return Err(WireError::Malformed("unknown family")),
    };
    match bytes[0] {
        1 => Ok(Change::Grant {
            ip,
            port,
            ttl: Duration::from_millis(u64::from(ms)),
        }),
        2 if ms == 0 => Ok(Change::Revoke { ip, port }),
        2 => Err(WireError::Malformed("revoke with a ttl")),
        _ => Err(WireError::Malformed("unknown change")),
    }
}

fn kind_code(kind: FirewallKind) -> u8 {
    match kind {
        FirewallKind::Auto => 0,
        FirewallKind::Userspace => 1,
        FirewallKind::Iptables => 2,
        FirewallKind::Nftables => 3,
    }
}

fn kind_of(code: u8) -> Option<FirewallKind> {
    match code {
        2 => Some(FirewallKind::Iptables),
        3 => Some(FirewallKind::Nftables),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
