//! The knock receiver: one task for every knock socket, judging each
//! source's knocks in the order they arrived.
//!
//! The sockets (one per knock port and address family) sit in an epoll set
//! of their own, which the task awaits through tokio: it sleeps until some
//! socket has a datagram (idle costs nothing; no timer). Each pass then
//! reads the clock, asks the epoll set which sockets are ready, takes one
//! `recvmmsg` batch of up to [`BATCH`] datagrams from each, each datagram
//! stamped by the kernel (`SO_TIMESTAMPNS`), merges them by stamp in
//! [`KnockOrder`] and judges what it releases
//! under one lock of the engine. `order.rs` states the ordering guarantee.
//! Taking one batch per ready socket per pass is also what keeps a flooded
//! port from delaying the others: every socket gets its turn each pass.
//!
//! Why batches: one system call per socket and one lock of the engine per
//! pass instead of per datagram, which is what lets one core keep up with
//! a flood. Only the source address and the stamp of a knock matter, so
//! payloads land in a small scratch buffer and are truncated. Every buffer
//! is allocated once: no allocation per packet.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::order::{KnockOrder, PassClock, timespec_ns};
use super::{Engine, Reload};
use crate::counters::Counters;

/// Most datagrams taken from one socket in one pass (one `recvmmsg`).
pub const BATCH: usize = 64;
/// Bytes of each payload kept (the rest is truncated; it is not read).
const PAYLOAD: usize = 16;
/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE` of a
/// 16-byte timespec is 32), in `u64`s for alignment.
const CONTROL: usize = 8;
/// Receive buffer asked of the kernel for each knock socket, so a burst
/// waits in the kernel rather than being dropped (capped by
/// `net.core.rmem_max`).
pub const SOCKET_BUFFER: usize = 8 << 20;

/// The reusable storage of one `recvmmsg` call.
struct Scratch {
    addrs: Vec<libc::sockaddr_storage>,
    payloads: Vec<[u8; PAYLOAD]>,
    controls: Vec<[u64; CONTROL]>,
    /// Sender and kernel stamp (0: none) of each datagram of the last call.
    received: Vec<(IpAddr, u64)>,
}

impl Scratch {
    fn new() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        let empty: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Self {
            addrs: vec![empty; BATCH],
            payloads: vec![[0; PAYLOAD]; BATCH],
            controls: vec![[0; CONTROL]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }

    /// One `recvmmsg` without waiting: fills `received` with the senders
    /// and receive stamps of up to `max` (at most [`BATCH`]) datagrams.
    fn receive(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        let max = max.min(BATCH);
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for i in 0..max {
            iovs[i].iov_base = self.payloads[i].as_mut_ptr().cast();
            iovs[i].iov_len = PAYLOAD;
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            hdr.msg_controllen = mem::size_of::<[u64; CONTROL]>() as _;
        }
        // SAFETY: every header points at live buffers of the stated sizes,
        // owned by `self` or this frame, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        self.received.clear();
        for (addr, hdr) in self.addrs.iter().zip(&hdrs).take(n) {
            if let Some(ip) = source_ip(addr, hdr.msg_hdr.msg_namelen) {
                self.received.push((ip, receive_stamp(&hdr.msg_hdr)));
            }
        }
        Ok(n)
    }
}

/// The kernel's receive stamp in a received message's control data, in
/// nanoseconds of `CLOCK_REALTIME`; 0 if there is none.
fn receive_stamp(hdr: &libc::msghdr) -> u64 {
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the
    // CMSG_* walkers stay within it, and a SCM_TIMESTAMPNS message carries
    // one timespec (read unaligned to be safe).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return timespec_ns(&ts);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    0
}

/// The address in a `sockaddr_storage` filled by the kernel.
fn source_ip(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<IpAddr> {
    let len = len as usize;
    match i32::from(addr.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Enlarges the kernel's receive buffer of a knock (or SPA) socket; a
/// refusal only costs burst tolerance, so it is logged, not fatal.
pub fn enlarge_buffer(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(err) = sock.set_recv_buffer_size(SOCKET_BUFFER) {
        debug!(error = %err, "cannot enlarge a UDP socket's receive buffer");
    }
}

/// Asks the kernel to stamp every datagram the socket receives with its
/// arrival time (`SO_TIMESTAMPNS`). Done when the socket is bound, so
/// knocks queued before the receiver starts are stamped too. A refusal
/// costs ordering across sockets (knocks are then dated by the pass that
/// reads them), so it is logged, not fatal.
pub fn stamp_arrivals(socket: &impl AsRawFd) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        warn!(error = %err, "cannot turn on receive timestamps; knocks on different ports may be judged out of order");
    }
}

/// The knock sockets in an epoll set of their own, awaited through tokio.
struct ReadySet {
    epoll: AsyncFd<OwnedFd>,
    len: usize,
}

impl ReadySet {
    /// A level-triggered set of `fds`; an event's data is the index.
    fn new(fds: &[RawFd]) -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        for (i, &fd) in fds.iter().enumerate() {
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: valid descriptors and a valid event.
            if unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the OwnedFd keeps the descriptor open, unchanged, for
        // as long as the AsyncFd that owns it.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE)? };
        Ok(Self {
            epoll,
            len: fds.len(),
        })
    }

    /// Room for one event per socket.
    fn events(&self) -> Vec<libc::epoll_event> {
        vec![libc::epoll_event { events: 0, u64: 0 }; self.len.max(1)]
    }

    /// The sockets with datagrams waiting now (indices), without waiting.
    fn ready<'e>(
        &self,
        events: &'e mut [libc::epoll_event],
    ) -> io::Result<impl Iterator<Item = usize> + 'e> {
        // SAFETY: `events` has room for the stated number of events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(events[..n as usize].iter().map(|e| e.u64 as usize))
    }
}

/// One knock socket, out of tokio's hands (the ready set watches it).
struct KnockSocket {
    socket: std::net::UdpSocket,
    port: u16,
}

/// Receives knocks on all `sockets` until `stop` changes, judging them in
/// the order they arrived (see the module doc). A [`Reload`] from
/// `reloads` is applied between two passes: what is held is judged under
/// the old rules, then the engine takes the new rules and the sockets of
/// ports no longer knocked close while the new ones join, so no knock
/// read is judged by a mix of both.
pub async fn receive_knocks(
    sockets: Vec<UdpSocket>,
    engine: Arc<Engine>,
    counters: Arc<Counters>,
    stop: crate::shutdown::Shutdown,
    (mut reloads, mut ticks): (mpsc::Receiver<Reload>, mpsc::Receiver<std::time::Duration>),
) {
    let mut knock_sockets = knock_sockets(sockets);
    let mut scratch = Scratch::new();
    let mut order = KnockOrder::new(knock_sockets.len().max(1) * BATCH);
    let mut batch = super::GrantBatch::default();
    'sockets: loop {
        let fds: Vec<RawFd> = knock_sockets.iter().map(|s| s.socket.as_raw_fd()).collect();
        let set = match ReadySet::new(&fds) {
            Ok(set) => set,
            Err(err) => {
                warn!(error = %err, "cannot watch the knock sockets; not listening");
                return;
            }
        };
        let mut events = set.events();
        loop {
            let mut guard = tokio::select! {
                ready = set.epoll.readable() => match ready {
                    Ok(guard) => guard,
                    Err(err) => {
                        warn!(error = %err, "knock sockets failed; not listening");
                        return;
                    }
                },
                Some(reload) = reloads.recv() => {
                    // Judge what is held under the rules it was knocked for.
                    let clock = PassClock::now(Instant::now().into_std());
                    order.begin(clock.real);
                    let n = order.release();
                    if n > 0 {
                        engine.handle_knocks(&order.pending()[..n], clock, &mut batch).await;
                        order.consume(n);
                    }
                    let kept = engine.reconfigure(&reload.settings).await;
                    knock_sockets.retain(|s| reload.ports.contains(&s.port));
                    knock_sockets.extend(self::knock_sockets(reload.add));
                    // Rotating doors' ports are not in the reload's list.
                    let ports = engine.rotate(super::rotation::unix_now());
                    follow_rotation(&mut knock_sockets, &ports);
                    let _ = reload.done.send(Ok(kept));
                    continue 'sockets;
                }
                Some(unix) = ticks.recv() => {
                    // A period boundary (`rotation.rs`): judge what is held
                    // under the old periods, then rotate and follow.
                    let clock = PassClock::now(Instant::now().into_std());
                    order.begin(clock.real);
                    let n = order.release();
                    if n > 0 {
                        engine.handle_knocks(&order.pending()[..n], clock, &mut batch).await;
                        order.consume(n);
                    }
                    let ports = engine.rotate(unix);
                    follow_rotation(&mut knock_sockets, &ports);
                    continue 'sockets;
                }
                _ = stop.stopped() => return,
            };
            let clock = PassClock::now(Instant::now().into_std());
            order.begin(clock.real);
            let mut any_ready = false;
            let ready = match set.ready(&mut events) {
                Ok(ready) => ready,
                Err(err) => {
                    debug!(error = %err, "epoll_wait failed");
                    continue;
                }
            };
            for i in ready {
                any_ready = true;
                let KnockSocket { socket, port } = &knock_sockets[i];
                let max = order.room().min(BATCH);
                match scratch.receive(socket.as_raw_fd(), max) {
                    Ok(n) => {
                        counters.record_packets(n as u64);
                        for &(ip, stamp) in &scratch.received {
                            // No stamp: date it by this pass (held to the next).
                            order.push(ip, *port, if stamp == 0 { clock.real } else { stamp });
                        }
                        if n == max {
                            let last = scratch.received.last().map_or(0, |&(_, s)| s);
                            order.more_after(last);
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    // ICMP errors and the like surface here; they are not knocks.
                    Err(err) => debug!(port, error = %err, "receive error"),
                }
            }
            let n = order.release();
            if n > 0 {
                engine
                    .handle_knocks(&order.pending()[..n], clock, &mut batch)
                    .await;
                order.consume(n);
            }
            if !any_ready && order.held() == 0 {
                // Every socket was empty: sleep until one is not.
                guard.clear_ready();
            }
        }
    }
}

/// Makes `sockets` the knock sockets of `ports`: closes those of other
/// ports, binds the missing ones on every address the sockets are bound to
/// (a port that cannot be bound is skipped with a warning: its knocks are
/// lost, the other doors and ports work).
fn follow_rotation(sockets: &mut Vec<KnockSocket>, ports: &[u16]) {
    let mut addrs: Vec<std::net::IpAddr> = Vec::new();
    for s in sockets.iter() {
        if let Ok(addr) = s.socket.local_addr() {
            if !addrs.contains(&addr.ip()) {
                addrs.push(addr.ip());
            }
        }
    }
    if addrs.is_empty() {
        addrs = crate::net::WILDCARDS.to_vec();
    }
    sockets.retain(|s| ports.contains(&s.port));
    for &port in ports {
        if sockets.iter().any(|s| s.port == port) {
            continue;
        }
        let bound = super::rotation::bind_lenient(&addrs, &[port]);
        sockets.extend(knock_sockets(bound));
    }
}

/// Takes `sockets` out of tokio's hands (bound by [`super::bind_udp`],
/// with their buffer and stamps already set), each with its port.
fn knock_sockets(sockets: Vec<UdpSocket>) -> Vec<KnockSocket> {
    let mut knock_sockets = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let port = match socket.local_addr() {
            Ok(addr) => addr.port(),
            Err(err) => {
                warn!(error = %err, "knock socket has no local address; not listening on it");
                continue;
            }
        };
        match socket.into_std() {
            Ok(socket) => knock_sockets.push(KnockSocket { socket, port }),
            Err(err) => warn!(port, error = %err, "knock socket unusable; not listening on it"),
        }
    }
    knock_sockets
}

/// Waits (bounded) until the kernel stamps datagrams on arrival. The
/// first socket to ask for stamps switches them on through deferred kernel
/// work; until it runs, datagrams are stamped when they are read, in the
/// order they are read. Tests that queue knocks before the receiver runs
/// wait for this first.
#[cfg(test)]
pub(crate) async fn wait_until_arrivals_are_stamped() {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_nonblocking(true).unwrap();
    stamp_arrivals(&probe);
    let to = probe.local_addr().unwrap();
    let mut scratch = Scratch::new();
    for _ in 0..200 {
        let sent = super::order::realtime_ns();
        probe.send_to(b"probe", to).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let read = super::order::realtime_ns();
        if let Ok(1) = scratch.receive(probe.as_raw_fd(), 1) {
            let stamp = scratch.received[0].1;
            if stamp >= sent && stamp < read {
                return;
            }
        }
    }
    panic!("the kernel never stamped a datagram on arrival");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_yields_each_sender_once_with_a_stamp_and_truncates_payloads() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stamp_arrivals(&server);
        let to = server.local_addr().unwrap();
        let mut sent = Vec::new();
        for last in 2..6u8 {
            let from = std::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, last), 0)).unwrap();
            from.send_to(&[7u8; 100], to).unwrap();
            sent.push(IpAddr::from([127, 0, 0, last]));
        }
        let mut scratch = Scratch::new();
        let mut got = Vec::new();
        while got.len() < sent.len() {
            server.readable().await.unwrap();
            if let Ok(n) = server.try_io(Interest::READABLE, || {
                scratch.receive(server.as_raw_fd(), BATCH)
            }) {
                assert_eq!(n, scratch.received.len());
                got.extend_from_slice(&scratch.received);
            }
        }
        assert_eq!(got.iter().map(|&(ip, _)| ip).collect::<Vec<_>>(), sent);
        let stamps: Vec<u64> = got.iter().map(|&(_, s)| s).collect();
        assert!(stamps.iter().all(|&s| s > 0), "{stamps:?}");
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    }
}
