//! The access probe: is the protected port open for this source yet?
//!
//! A TCP connection from the knocking address, which must yield at least
//! one byte of the service's greeting. That one test fits every backend:
//! the userspace gate completes the handshake and then resets strangers,
//! a kernel firewall drops their SYN (the short connect timeout ends the
//! attempt), and an open port serves the greeting.
//!
//! The connect timeout is the probe's resolution against a kernel
//! firewall: when the first SYN is dropped because the grant is not in yet,
//! the next attempt starts only after it. It is waited with `ppoll` (not
//! `connect_timeout`, whose `poll` rounds up to whole milliseconds and made
//! every lost race cost 1-2 ms). A loopback handshake takes tens of
//! microseconds; one slower than the timeout only costs a retry, so the
//! probe can overstate the latency by up to one timeout, never understate it.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long one attempt waits for the handshake (a dropped SYN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_micros(200);
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
    if !connect_within(&socket, target, CONNECT_TIMEOUT) {
        return false;
    }
    let _ = socket.set_nonblocking(false);
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut byte = [0u8; 1];
    let open = matches!(stream.read(&mut byte), Ok(1));
    // Leave without lingering in TIME_WAIT on the probe's side.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    open
}

/// A non-blocking connect waited with `ppoll`, to the microsecond.
fn connect_within(socket: &Socket, target: SocketAddr, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    match socket.connect(&target.into()) {
        Ok(()) => return true,
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(_) => return false,
    }
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let wait = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    let ready = unsafe { libc::ppoll(&raw mut pollfd, 1, &raw const wait, std::ptr::null()) };
    ready == 1 && matches!(socket.take_error(), Ok(None))
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
