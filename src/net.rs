//! Socket helpers shared by the server, the gate and the service.
//!
//! IPv6 sockets are made v6-only so a wildcard `0.0.0.0` and `::` can be
//! bound side by side on the same port, each family on its own socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::warn;

/// The default listen addresses: every IPv4 and every IPv6 address.
pub const WILDCARDS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
];

/// Binds a non-blocking UDP socket on `addr` (v6-only for IPv6).
pub fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Binds a non-blocking TCP listener on `addr` (v6-only for IPv6).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Whether `addrs` is exactly the default pair of wildcards: then an IPv6
/// failure (IPv6 disabled on the host) is a warning, not an error.
pub fn is_default_bind(addrs: &[IpAddr]) -> bool {
    addrs == WILDCARDS
}

/// Binds with `bind` on each address; with the default wildcards, an IPv6
/// address the host cannot use is skipped with a warning.
pub fn bind_each<T>(
    addrs: &[IpAddr],
    port: u16,
    bind: impl Fn(SocketAddr) -> io::Result<T>,
) -> Result<Vec<T>, (SocketAddr, io::Error)> {
    let lenient = is_default_bind(addrs);
    let mut bound = Vec::new();
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        match bind(addr) {
            Ok(socket) => bound.push(socket),
            Err(err) if lenient && ip.is_ipv6() && ipv6_unavailable(&err) => {
                warn!(%addr, error = %err, "IPv6 unavailable on this host; listening on IPv4 only");
            }
            Err(err) => return Err((addr, err)),
        }
    }
    Ok(bound)
}

fn ipv6_unavailable(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == 97 /* EAFNOSUPPORT */ || code == 99 /* EADDRNOTAVAIL */)
}
