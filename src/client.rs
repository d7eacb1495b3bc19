//! The knock client: resolve the target, send the knocks, check the port.
//!
//! The binary `knock-client` only prints; everything that touches the
//! network is here so tests can drive it against loopback listeners.
//!
//! Why the check reads as well as connects: the userspace gate *accepts*
//! every connection and then resets strangers (SO_LINGER 0), so a successful
//! `connect` alone proves nothing. A port counts as open only when the
//! connection survives a short probe or data arrives; a refusal or an
//! immediate reset/EOF is closed; no answer at all (a firewall dropping the
//! SYN) is filtered.

pub mod knocks;
pub mod printer;
pub mod report;
pub mod rotating;
pub mod spa;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, UdpSocket};

use crate::config::{ConfigError, KnockPort, Sequence, parse_duration};

/// Default pause between two knocks (the seed's 0.5 s).
pub const DEFAULT_DELAY: Duration = Duration::from_millis(500);
/// Default pause between the last knock and the check (the seed's 1 s).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);
/// Default time the check waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the check watches an accepted connection for a reset. The gate
/// resets strangers right after `accept`, well within this on any host.
pub const PROBE_WINDOW: Duration = Duration::from_millis(500);
/// What each knock carries: the server counts any datagram as a knock.
pub const KNOCK_PAYLOAD: &[u8] = b"knock";
/// Longest a name lookup may take before we give up.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the check found on the protected port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Accepted and kept open, or data arrived.
    Open,
    /// Refused, or accepted and then reset or closed at once with no bytes.
    Closed,
    /// No answer within the timeout: something drops the SYNs.
    Filtered,
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Filtered => "filtered",
        })
    }
}

/// Why knocking or checking failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The target is neither an IP address nor a well-formed host name.
    #[error("invalid target '{host}': expected a host name, an IPv4 address or an IPv6 address")]
    InvalidHost {
        /// The text that was given.
        host: String,
    },
    /// The name lookup failed.
    #[error("cannot resolve target '{host}'")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// Why the lookup failed.
        source: io::Error,
    },
    /// The name resolved, but not to an address usable from `--source`.
    #[error("target '{host}' has no {family} address to match --source {source_ip}")]
    FamilyMismatch {
        /// The name that was looked up.
        host: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The local address asked for.
        source_ip: IpAddr,
    },
    /// A local socket could not be bound (e.g. `--source` is not ours).
    #[error("cannot bind to local address {addr}")]
    Bind {
        /// The local address.
        addr: SocketAddr,
        /// Why binding failed.
        source: io::Error,
    },
    /// A knock could not be sent.
    #[error("cannot send a knock to {target}")]
    Send {
        /// Where the knock was going.
        target: SocketAddr,
        /// Why sending failed.
        source: io::Error,
    },
    /// The check hit an error that is neither a refusal nor a timeout.
    #[error("cannot check {target}")]
    Check {
        /// The protected address.
        target: SocketAddr,
        /// What went wrong.
        source: io::Error,
    },
}

impl ClientError {
    /// Whether the user gave input we cannot use (exit 2), as opposed to a
    /// failure on the way (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::InvalidHost { .. } | Self::Resolve { .. } | Self::FamilyMismatch { .. } => true,
            Self::Bind { source, .. } => source.kind() == io::ErrorKind::AddrNotAvailable,
            Self::Send { .. } | Self::Check { .. } => false,
        }
    }
}

/// Parses `--delay`: like any duration, but `0` (knock as fast as possible)
/// is allowed.
pub fn parse_delay(text: &str) -> Result<Duration, ConfigError> {
    let trimmed = text.trim();
    let number = trimmed
        .strip_suffix("ms")
        .or_else(|| trimmed.strip_suffix('s'))
        .unwrap_or(trimmed);
    match number.parse::<f64>() {
        Ok(zero) if zero == 0.0 && !number.starts_with('-') => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}

/// Parses an IP literal, also in the `[::1]` form.
fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Whether `host` is a syntactically valid host name (RFC 1123 labels;
/// `_` tolerated). Checked before any lookup so garbage never reaches DNS.
pub fn is_valid_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Resolves the target to one address. With a `source`, the address must be
/// of the same family (a knock from 127.0.0.2 cannot reach ::1).
pub async fn resolve(host: &str, source: Option<IpAddr>) -> Result<IpAddr, ClientError> {
    let host = host.trim();
    let candidates: Vec<IpAddr> = if let Some(ip) = parse_ip_literal(host) {
        vec![ip]
    } else if is_valid_host_name(host) {
        let lookup = tokio::net::lookup_host((host, 0));
        let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "lookup timed out"))
            .and_then(|result| result)
            .map_err(|source| ClientError::Resolve {
                host: host.to_string(),
                source,
            })?;
        resolved.map(|addr| addr.ip()).collect()
    } else {
        return Err(ClientError::InvalidHost {
            host: host.to_string(),
        });
    };
    let Some(&first) = candidates.first() else {
        return Err(ClientError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        });
    };
    match source {
        None => Ok(first),
        Some(source_ip) => candidates
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == source_ip.is_ipv4())
            .ok_or(ClientError::FamilyMismatch {
                host: host.to_string(),
                family: if source_ip.is_ipv4() { "IPv4" } else { "IPv6" },
                source_ip,
            }),
    }
}

/// A sequence the server must judge wrong from the first knock: the real
/// one reversed, its first port swapped for another knock port if reversing
/// left it in place. Knocks on the server's own ports are what it hears; only
/// when the sequence has a single distinct port is a port outside it used.
pub fn wrong_sequence(sequence: &Sequence) -> Vec<u16> {
    let ports = sequence.ports();
    let first = ports[0];
    let mut wrong: Vec<u16> = ports.iter().rev().copied().collect();
    if let Some(other) = wrong.iter().position(|&p| p != first) {
        if wrong[0] == first {
            wrong.swap(0, other);
        }
    } else {
        let mut outside = first;
        while outside == first {
            outside = outside.checked_add(1).unwrap_or(1);
        }
        wrong[0] = outside;
    }
    wrong
}

/// The local address to bind for talking to `target`: `source` or the
/// wildcard of the target's family.
fn local_addr(target: IpAddr, source: Option<IpAddr>) -> SocketAddr {
    let ip = source.unwrap_or(match target {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    SocketAddr::new(ip, 0)
}

/// Checks that `source` is one of our addresses (binds and drops a UDP
/// socket; nothing is sent), so a bad `--source` fails before any knock.
pub fn check_source(source: IpAddr) -> Result<(), ClientError> {
    let addr = SocketAddr::new(source, 0);
    std::net::UdpSocket::bind(addr)
        .map(drop)
        .map_err(|source| ClientError::Bind { addr, source })
}

/// Sends the knocks in order, `delay` apart: UDP ones from one socket
/// bound to `source` (or any local address), TCP ones as a SYN each from a
/// fresh socket closed at once ([`knocks::tcp_knock`]). `progress` is
/// called after each knock with its 1-based index and the knock.
pub async fn send_knocks(
    target: IpAddr,
    knocks: &[KnockPort],
    delay: Duration,
    source: Option<IpAddr>,
    mut progress: impl FnMut(usize, KnockPort),
) -> Result<(), ClientError> {
    let local = local_addr(target, source);
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|source| ClientError::Bind {
            addr: local,
            source,
        })?;
    for (index, &knock) in knocks.iter().enumerate() {
        if index > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let dest = SocketAddr::new(target, knock.port);
        tracing::debug!(%dest, %knock, "knock");
        let sent = if knocks::is_tcp(&knock) {
            knocks::tcp_knock(dest, source)
        } else {
            socket.send_to(KNOCK_PAYLOAD, dest).await.map(drop)
        };
        sent.map_err(|source| ClientError::Send {
            target: dest,
            source,
        })?;
        progress(index + 1, knock);
    }
    Ok(())
}

/// The local address the kernel would send from to reach `target`
/// (bound to `source` when given). Connects a UDP socket; sends nothing.
pub fn sending_address(target: SocketAddr, source: Option<IpAddr>) -> Result<IpAddr, ClientError> {
    let local = local_addr(target.ip(), source);
    let socket = std::net::UdpSocket::bind(local).map_err(|source| ClientError::Bind {
        addr: local,
        source,
    })?;
    socket
        .connect(target)
        .and_then(|()| socket.local_addr())
        .map(|addr| addr.ip())
        .map_err(|source| ClientError::Send { target, source })
}

/// Tries the protected port: [`PortState::Open`], `Closed` or `Filtered`
/// (no answer within `timeout`). Binds to `source` when given.
pub async fn check_port(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<PortState, ClientError> {
    let local = local_addr(target.ip(), source);
    let bind_error = |source| ClientError::Bind {
        addr: local,
        source,
    };
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(bind_error)?;
    if source.is_some() {
        socket.bind(local).map_err(bind_error)?;
    }
    let mut stream = match tokio::time::timeout(timeout, socket.connect(target)).await {
        Err(_elapsed) => return Ok(PortState::Filtered),
        Ok(Err(err)) => {
            return classify_connect_error(&err).ok_or(ClientError::Check {
                target,
                source: err,
            });
        }
        Ok(Ok(stream)) => stream,
    };
    let mut byte = [0u8; 1];
    let probe = tokio::time::timeout(timeout.min(PROBE_WINDOW), stream.read(&mut byte)).await;
    Ok(classify_probe(probe.ok()))
}

/// Classifies a failed `connect`: refused (or reset) is closed; a timeout or
/// an unreachable host or network (an ICMP answer from a firewall) is
/// filtered. Anything else is not about the port: `None`.
pub fn classify_connect_error(err: &io::Error) -> Option<PortState> {
    match err.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            Some(PortState::Closed)
        }
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => Some(PortState::Filtered),
        _ => None,
    }
}

/// Classifies what a read on an accepted connection gave within the probe
/// window (`None`: nothing yet, the connection is still up).
pub fn classify_probe(read: Option<io::Result<usize>>) -> PortState {
    match read {
        None => PortState::Open,
        Some(Ok(n)) if n > 0 => PortState::Open,
        // EOF with no bytes, or a reset: the gate turned us away.
        Some(Ok(_)) | Some(Err(_)) => PortState::Closed,
    }
}

#[cfg(test)]
mod tests;
