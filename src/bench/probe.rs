//! The access probe: is the protected port open for this source yet?
//!
//! A TCP connection from the knocking address, which must yield at least
//! one byte of the service's greeting. That one test fits every backend:
//! the userspace gate completes the handshake and then resets strangers,
//! a kernel firewall drops their SYN (the short connect timeout ends the
//! attempt), and an open port serves the greeting.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long one attempt waits for the handshake (a dropped SYN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(2);
/// How long one connected attempt waits for the first byte.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// One attempt: whether `source` gets a byte from `target` now.
pub fn is_open(source: IpAddr, target: SocketAddr) -> bool {
    let Ok(socket) = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    ) else {
        return false;
    };
    if socket.bind(&SocketAddr::new(source, 0).into()).is_err() {
        return false;
    }
    if socket
        .connect_timeout(&target.into(), CONNECT_TIMEOUT)
        .is_err()
    {
        return false;
    }
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut byte = [0u8; 1];
    let open = matches!(stream.read(&mut byte), Ok(1));
    // Leave without lingering in TIME_WAIT on the probe's side.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    open
}

/// Probes until the port opens for `source` or `deadline` passes; returns
/// when it was first seen open.
pub fn wait_open(source: IpAddr, target: SocketAddr, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        if is_open(source, target) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_greeting_is_open_and_a_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"hello\n").unwrap();
        });
        let source: IpAddr = "127.0.0.5".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(wait_open(source, target, deadline).is_some());
        server.join().unwrap();
        // Nothing listens any more.
        assert!(!is_open(source, target));
    }
}
