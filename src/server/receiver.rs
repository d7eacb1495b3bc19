//! The knock receiver: drains a UDP socket in batches with `recvmmsg`.
//!
//! Why batches: one system call and one lock of the engine per batch of up
//! to [`BATCH`] datagrams instead of per datagram, which is what lets one
//! core keep up with a flood (a loopback sender pushes a few hundred
//! thousand packets a second). Only the source address of a knock matters,
//! so payloads land in a small scratch buffer and are truncated. Every
//! buffer is allocated once per socket: no allocation per packet.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::Engine;
use crate::counters::Counters;

/// Most datagrams taken in one `recvmmsg` call.
pub const BATCH: usize = 64;
/// Bytes of each payload kept (the rest is truncated; it is not read).
const PAYLOAD: usize = 16;
/// Receive buffer asked of the kernel for each knock socket, so a burst
/// waits in the kernel rather than being dropped (capped by
/// `net.core.rmem_max`).
pub const SOCKET_BUFFER: usize = 8 << 20;

/// The reusable storage of one socket's receiver.
struct Scratch {
    addrs: Vec<libc::sockaddr_storage>,
    payloads: Vec<[u8; PAYLOAD]>,
    sources: Vec<IpAddr>,
}

impl Scratch {
    fn new() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        let empty: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Self {
            addrs: vec![empty; BATCH],
            payloads: vec![[0; PAYLOAD]; BATCH],
            sources: Vec::with_capacity(BATCH),
        }
    }

    /// One `recvmmsg` without waiting: fills `sources` with the senders of
    /// up to [`BATCH`] datagrams.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.payloads[i].as_mut_ptr().cast();
            iovs[i].iov_len = PAYLOAD;
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut iovs[i];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at live buffers of the stated sizes,
        // owned by `self` or this frame, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        self.sources.clear();
        for (addr, hdr) in self.addrs.iter().zip(&hdrs).take(n) {
            if let Some(ip) = source_ip(addr, hdr.msg_hdr.msg_namelen) {
                self.sources.push(ip);
            }
        }
        Ok(n)
    }
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

/// Enlarges the kernel's receive buffer of a knock socket; a refusal only
/// costs burst tolerance, so it is logged, not fatal.
pub fn enlarge_buffer(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(err) = sock.set_recv_buffer_size(SOCKET_BUFFER) {
        debug!(error = %err, "cannot enlarge the knock socket's receive buffer");
    }
}

/// Receives knocks on `socket` until `stop` changes, feeding each batch to
/// the engine.
pub async fn receive_knocks(
    socket: UdpSocket,
    engine: Arc<Engine>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let port = match socket.local_addr() {
        Ok(addr) => addr.port(),
        Err(err) => {
            warn!(error = %err, "knock socket has no local address; not listening on it");
            return;
        }
    };
    enlarge_buffer(&socket);
    let fd = socket.as_raw_fd();
    let mut scratch = Scratch::new();
    let mut batch = super::GrantBatch::default();
    loop {
        tokio::select! {
            ready = socket.readable() => if let Err(err) = ready {
                warn!(port, error = %err, "knock socket failed; not listening on it");
                return;
            },
            _ = stop.changed() => return,
        }
        match socket.try_io(Interest::READABLE, || scratch.receive(fd)) {
            Ok(n) => {
                counters.record_packets(n as u64);
                engine
                    .handle_batch(&scratch.sources, port, &mut batch)
                    .await;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            // ICMP errors and the like surface here; they are not knocks.
            Err(err) => debug!(port, error = %err, "receive error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_yields_each_sender_once_and_truncates_payloads() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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
            if let Ok(n) = server.try_io(Interest::READABLE, || scratch.receive(server.as_raw_fd()))
            {
                assert_eq!(n, scratch.sources.len());
                got.extend_from_slice(&scratch.sources);
            }
        }
        assert_eq!(got, sent);
    }
}
