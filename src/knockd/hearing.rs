//! Hearing the command doors' UDP knocks in the order they arrived.
//!
//! One knock socket per port (and family): a client that knocks three
//! ports back to back (`knock` without `-d`) lands on three sockets within
//! microseconds, and reading them one task each could judge the third
//! before the first. So one thread polls every socket, reads each
//! datagram with its kernel receive stamp (`SO_TIMESTAMPNS`, turned on at
//! bind by `server::bind_udp`) and puts them in order with the server's
//! [`KnockOrder`] (`server/order.rs` states the guarantee: a knock stamped
//! after a pass began waits for the next pass, which reads every socket
//! again). Released knocks go to the doorman in stamp order.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tracing::warn;

use crate::server::order::{KnockOrder, realtime_ns, timespec_ns};

/// Datagrams read from one socket in one pass at most.
const PER_SOCKET: usize = 64;
/// Poll timeout: how soon a stop is noticed.
const POLL_MS: libc::c_int = 100;

/// One knock heard: source, port, kernel stamp (ns of CLOCK_REALTIME).
pub type Heard = (IpAddr, u16, u64);

/// Reads `sockets` on a thread of its own until `stop` is set or the
/// receiver is gone; each knock is sent on `tx` in arrival order.
pub fn spawn(
    sockets: Vec<std::net::UdpSocket>,
    tx: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || hear(sockets, tx, stop))
}

fn hear(sockets: Vec<std::net::UdpSocket>, tx: mpsc::Sender<Heard>, stop: Arc<AtomicBool>) {
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map_or(0, |a| a.port()))
        .collect();
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut order = KnockOrder::new(sockets.len().max(1) * PER_SOCKET);
    while !stop.load(Ordering::Relaxed) {
        let timeout = if order.held() > 0 { 0 } else { POLL_MS };
        // SAFETY: `fds` is a live array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                warn!(error = %err, "poll on the knock sockets failed; not listening");
                return;
            }
            continue;
        }
        order.begin(realtime_ns());
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            let mut read = 0;
            let mut last = 0;
            while read < PER_SOCKET && order.room() > 0 {
                match receive(pfd.fd) {
                    Ok(Some((ip, stamp))) => {
                        let stamp = if stamp == 0 { realtime_ns() } else { stamp };
                        order.push(ip, ports[i], stamp);
                        last = stamp;
                        read += 1;
                    }
                    Ok(None) => read += 1,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            if read == PER_SOCKET {
                order.more_after(last);
            }
        }
        let n = order.release();
        for knock in &order.pending()[..n] {
            if tx
                .blocking_send((knock.source, knock.port, knock.stamp))
                .is_err()
            {
                return;
            }
        }
        order.consume(n);
    }
}

/// Reads one datagram without waiting: its sender (None for an unknown
/// address family) and kernel stamp (0: none).
fn receive(fd: RawFd) -> io::Result<Option<(IpAddr, u64)>> {
    let mut payload = [0u8; 16];
    let mut control = [0u64; 8];
    // SAFETY: plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: plain old data; all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` is to a live buffer of the stated size.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)).to_canonical()
        }
        _ => return Ok(None),
    };
    let mut stamp = 0;
    // SAFETY: the kernel filled msg_control up to msg_controllen; the
    // CMSG walkers stay inside it; a SCM_TIMESTAMPNS carries a timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                stamp = timespec_ns(&ts);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some((ip, stamp)))
}
