//! `proto/port` specs: what an access message requests and what an
//! `OPEN_PORTS` line or an rc `ACCESS` line allows, parsed by one strict rule.

use std::fmt;
use std::str::FromStr;

/// A protocol in an access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (fwknop allows it in the syntax).
    Icmp,
    /// `none` (fwknop allows it in the syntax).
    None,
}

impl Proto {
    /// The lowercase name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::None => "none",
        }
    }
}

/// One `proto/port` of an access request or an `OPEN_PORTS` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    /// The protocol.
    pub proto: Proto,
    /// The port, 1..=65535.
    pub port: u16,
}

/// A `proto/port` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port spec '{0}': expected tcp/PORT or udp/PORT with PORT from 1 to 65535")]
pub struct BadPortSpec(pub String);

impl FromStr for PortSpec {
    type Err = BadPortSpec;

    /// Parses `tcp/22`, `udp/53`, `icmp/1`, `none/1` (case-insensitive proto).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPortSpec(text.chars().take(40).collect());
        let (proto, port) = text.trim().split_once('/').ok_or_else(bad)?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "none" => Proto::None,
            _ => return Err(bad()),
        };
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(PortSpec { proto, port: p }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto.name(), self.port)
    }
}
