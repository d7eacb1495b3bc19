//! Hearing the command doors' UDP knocks in the order they arrived.
//!
//! One knock socket per port (and family): a client that knocks three
//! ports back to back (`knock` without `-d`) lands on three sockets within
//! microseconds, and reading them one task each could judge the third
//! before the first. So one thread polls every socket, reads each
//! datagram with its kernel receive stamp (`SO_TIMESTAMPNS`, turned on at
//! bind by `server::bind_udp`) and puts them in order with the server's
//! `KnockOrder` (`server/order.rs` states the guarantee: a knock stamped
//! after a pass began waits for the next pass, which reads every socket
//! again). Released knocks go to the doorman in stamp order.
//!
//! TCP knocks (knockd's default) come from an AF_PACKET capture source
//! (`capture/packet.rs`, CAP_NET_RAW) whose filter passes SYNs without ACK
//! to the doors' TCP ports; its descriptor sits in the same poll set and its
//! packets, stamped by the kernel too, join the same order. Like knockd's
//! filter (research note §2.6 item 9), an IPv6 packet with extension
//! headers before TCP is not read as a knock.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tracing::warn;

use crate::capture::{CaptureSource, RawPacket};
use crate::config::{KnockPort, Proto};
use crate::server::order::{HOLD, realtime_ns, timespec_ns};

/// Datagrams read from one socket in one pass at most.
const PER_SOCKET: usize = 64;
/// Poll timeout: how soon a stop is noticed.
const POLL_MS: libc::c_int = 100;

/// One knock heard: source, knock, kernel stamp (ns of CLOCK_REALTIME).
pub type Heard = (IpAddr, KnockPort, u64);

/// Knocks of several sockets put back in stamp order: the rules of the
/// server's `KnockOrder` (`server/order.rs`), for knocks that carry their
/// protocol.
#[derive(Debug, Default)]
struct Order {
    pending: Vec<(u64, u64, IpAddr, KnockPort)>,
    next: u64,
    horizon: u64,
    read_any: bool,
}

impl Order {
    fn begin(&mut self, start: u64) {
        self.horizon = start;
        self.read_any = false;
    }

    fn push(&mut self, ip: IpAddr, knock: KnockPort, stamp: u64) {
        self.read_any = true;
        self.pending.push((stamp, self.next, ip, knock));
        self.next += 1;
    }

    fn more_after(&mut self, last: u64) {
        self.horizon = self.horizon.min(last);
    }

    /// Sorts; how many from the front may be judged now.
    fn release(&mut self) -> usize {
        self.pending.sort_unstable_by_key(|k| (k.0, k.1));
        if !self.read_any {
            return self.pending.len();
        }
        let safe = self.pending.partition_point(|k| k.0 < self.horizon);
        safe.max(self.pending.len().saturating_sub(HOLD))
    }
}

/// Reads `sockets` on a thread of its own until `stop` is set or the
/// receiver is gone; each knock is sent on `tx` in arrival order.
pub fn spawn(
    sockets: Vec<std::net::UdpSocket>,
    capture: Option<Box<dyn CaptureSource>>,
    tx: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || hear(sockets, capture, tx, stop))
}

fn hear(
    sockets: Vec<std::net::UdpSocket>,
    mut capture: Option<Box<dyn CaptureSource>>,
    tx: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
) {
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
    if let Some(capture) = &capture {
        fds.push(libc::pollfd {
            fd: capture.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let mut order = Order::default();
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let timeout = if !order.pending.is_empty() {
            0
        } else {
            POLL_MS
        };
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
            if i == ports.len() {
                if let Some(capture) = capture.as_mut() {
                    drain_capture(capture.as_mut(), &mut order, &mut seen);
                }
                continue;
            }
            let mut read = 0;
            let mut last = 0;
            while read < PER_SOCKET && order.pending.len() < HOLD + PER_SOCKET * fds.len() {
                match receive(pfd.fd) {
                    Ok(Some((ip, stamp))) => {
                        let stamp = if stamp == 0 { realtime_ns() } else { stamp };
                        order.push(ip, KnockPort::udp(ports[i]), stamp);
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
        for &(stamp, _, ip, knock) in &order.pending[..n] {
            if tx.blocking_send((ip, knock, stamp)).is_err() {
                return;
            }
        }
        order.pending.drain(..n);
    }
}

/// Segments seen lately, to drop a second copy of one segment.
const SEEN: usize = 64;

/// The last [`SEEN`] TCP knocks as (source, port, sequence number): the
/// capture on every interface sees a segment once per interface it
/// crosses (a bridge and its port), and a retransmitted SYN carries the
/// same sequence number; either copy is the same knock, not a second one
/// (which would break the sequence as a duplicate).
#[derive(Debug, Default)]
struct Seen {
    ring: Vec<(IpAddr, u16, u32)>,
    next: usize,
}

impl Seen {
    /// Whether `key` was seen lately; remembers it.
    fn again(&mut self, key: (IpAddr, u16, u32)) -> bool {
        if self.ring.contains(&key) {
            return true;
        }
        if self.ring.len() < SEEN {
            self.ring.push(key);
        } else {
            self.ring[self.next] = key;
            self.next = (self.next + 1) % SEEN;
        }
        false
    }
}

/// Reads one batch of the capture source into `order`: TCP knocks only
/// (its filter passes SYNs without ACK to the doors' TCP ports), each
/// segment once.
fn drain_capture(capture: &mut dyn CaptureSource, order: &mut Order, seen: &mut Seen) {
    let mut last = 0;
    let result = capture.drain(&mut |packet: RawPacket<'_>| {
        if let Some((ip, port, seq)) = tcp_syn(packet.ip) {
            if seen.again((ip, port, seq)) {
                return;
            }
            let stamp = match packet.stamp_ns {
                0 => realtime_ns(),
                stamp => stamp,
            };
            let knock = KnockPort {
                port,
                proto: Proto::Tcp,
            };
            order.push(ip, knock, stamp);
            last = stamp;
        }
    });
    match result {
        Ok(n) if n >= crate::capture::packet::BATCH => order.more_after(last),
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
        Err(err) => warn!(error = %err, "capture read failed"),
    }
}

/// The source, destination port and sequence number of an IP packet that
/// is a TCP SYN without ACK (None for anything else).
pub fn tcp_syn(ip: &[u8]) -> Option<(IpAddr, u16, u32)> {
    const TCP: u8 = 6;
    let (source, transport) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip.len() < 20 || ihl < 20 || ip[9] != TCP {
                return None;
            }
            // A fragment after the first carries no TCP header.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return None;
            }
            let src: [u8; 4] = ip[12..16].try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(src)), ip.get(ihl..)?)
        }
        6 => {
            if ip.len() < 40 || ip[6] != TCP {
                return None;
            }
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(src)).to_canonical(), &ip[40..])
        }
        _ => return None,
    };
    if transport.len() < 14 {
        return None;
    }
    let flags = transport[13];
    let (syn, ack) = (0x02, 0x10);
    if flags & syn == 0 || flags & ack != 0 {
        return None;
    }
    let port = u16::from_be_bytes([transport[2], transport[3]]);
    let seq = u32::from_be_bytes([transport[4], transport[5], transport[6], transport[7]]);
    Some((source, port, seq))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(flags: u8, frag: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[192, 0, 2, 7]);
        p[22..24].copy_from_slice(&7000u16.to_be_bytes());
        p[24..28].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        p[33] = flags;
        p
    }

    #[test]
    fn a_syn_without_ack_is_a_knock_and_nothing_else_is() {
        let ip = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(tcp_syn(&v4_tcp(0x02, 0)), Some((ip, 7000, 0xdead_beef)));
        assert_eq!(tcp_syn(&v4_tcp(0x12, 0)), None, "SYN+ACK");
        assert_eq!(tcp_syn(&v4_tcp(0x10, 0)), None, "ACK");
        assert_eq!(tcp_syn(&v4_tcp(0x02, 5)), None, "a later fragment");
        assert_eq!(tcp_syn(&v4_tcp(0x02, 0)[..30]), None, "truncated");
        let mut udp = v4_tcp(0x02, 0);
        udp[9] = 17;
        assert_eq!(tcp_syn(&udp), None);
        assert_eq!(tcp_syn(&[]), None);
        let mut v6 = vec![0u8; 60];
        v6[0] = 0x60;
        v6[6] = 6;
        v6[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        v6[42..44].copy_from_slice(&8000u16.to_be_bytes());
        v6[53] = 0x02;
        assert_eq!(
            tcp_syn(&v6),
            Some(("2001:db8::2".parse().unwrap(), 8000, 0))
        );
        v6[6] = 0; // a hop-by-hop header first: not read (as knockd)
        assert_eq!(tcp_syn(&v6), None);
    }

    #[test]
    fn a_second_copy_of_a_segment_is_dropped_and_the_memory_is_bounded() {
        let ip = IpAddr::from([192, 0, 2, 7]);
        let mut seen = Seen::default();
        assert!(!seen.again((ip, 7000, 1)));
        assert!(seen.again((ip, 7000, 1)));
        assert!(!seen.again((ip, 7000, 2)));
        for seq in 10..10 + SEEN as u32 {
            seen.again((ip, 1, seq));
        }
        assert_eq!(seen.ring.len(), SEEN);
        assert!(!seen.again((ip, 7000, 1)), "forgotten after SEEN others");
    }
}
