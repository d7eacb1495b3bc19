//! The client's knock sequence with protocols: `1234:tcp,5678,9012:udp`
//! (knockd's syntax; a bare port is UDP, the seed's default), and how a
//! TCP knock goes out.
//!
//! A TCP knock is one non-blocking `connect`, whose SYN the kernel sends
//! inside the call, and an immediate close: the socket is gone before any
//! answer, so no handshake ever completes (the knock port answers RST like
//! any closed port, or a SYN-ACK the kernel then resets). Debian's `knock`
//! does the same (connect, close).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{ConfigError, KnockPort, Proto, Sequence};

/// A knock sequence that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum KnocksError {
    /// One element is not `PORT`, `PORT:udp` or `PORT:tcp`.
    #[error(
        "invalid knock '{value}': expected PORT, PORT:udp or PORT:tcp with PORT from 1 to 65535"
    )]
    Knock {
        /// The element as given.
        value: String,
    },
    /// The list is empty or too long.
    #[error(transparent)]
    Sequence(#[from] ConfigError),
}

/// A knock sequence whose knocks each carry their protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knocks(Vec<KnockPort>);

impl Knocks {
    /// The knocks in order.
    pub fn knocks(&self) -> &[KnockPort] {
        &self.0
    }

    /// The ports in order, without protocols.
    pub fn sequence(&self) -> Sequence {
        Sequence::new(self.0.iter().map(|k| k.port).collect()).expect("checked when parsed")
    }

    /// A sequence the server must judge wrong from the first knock (see
    /// [`super::wrong_sequence`]); each port keeps the protocol it has in
    /// the sequence (a port from outside takes the first knock's).
    pub fn wrong(&self) -> Vec<KnockPort> {
        let first = self.0[0].proto;
        super::wrong_sequence(&self.sequence())
            .into_iter()
            .map(|port| {
                let proto = self
                    .0
                    .iter()
                    .find(|k| k.port == port)
                    .map_or(first, |k| k.proto);
                KnockPort { port, proto }
            })
            .collect()
    }
}

impl FromStr for Knocks {
    type Err = KnocksError;

    /// Parses `PORT[:udp|:tcp],...`; an unknown suffix or a bad port is an
    /// error naming the element, a bad length one naming the list.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let knocks = text
            .split(',')
            .map(|item| {
                item.trim()
                    .parse::<KnockPort>()
                    .map_err(|_| KnocksError::Knock {
                        value: item.trim().to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>();
        let knocks = match knocks {
            Ok(knocks) => knocks,
            Err(_) if text.trim().is_empty() => {
                return Err(ConfigError::Sequence {
                    value: text.to_string(),
                }
                .into());
            }
            Err(err) => return Err(err),
        };
        Sequence::new(knocks.iter().map(|k| k.port).collect()).map_err(|err| match err {
            ConfigError::Sequence { .. } => ConfigError::Sequence {
                value: text.to_string(),
            },
            other => other,
        })?;
        Ok(Self(knocks))
    }
}

impl fmt::Display for Knocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(KnockPort::to_string).collect();
        f.write_str(&items.join(","))
    }
}

/// Sends one TCP knock to `dest` from `source` (or any local address): a
/// SYN, and the socket closed at once (see the module docs).
pub fn tcp_knock(dest: SocketAddr, source: Option<IpAddr>) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&dest.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        // A loopback RST can beat the call's return.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `knock` is a TCP knock.
pub fn is_tcp(knock: &KnockPort) -> bool {
    knock.proto == Proto::Tcp
}
