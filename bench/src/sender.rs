//! The packet sender: knocks from many source addresses through one socket.
//!
//! Each datagram carries an `IP_PKTINFO` control message naming its source
//! (any 127.x address is local, so the kernel accepts it without a bound
//! socket per source), and up to [`BATCH`] datagrams leave in one
//! `sendmmsg` call. IPv4 only: the loads use 127.0.0.0/8 or the addresses
//! of a namespace the caller made.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Most datagrams handed to the kernel in one call.
pub const BATCH: usize = 64;
/// The knock payload (its bytes are ignored by the server).
const PAYLOAD: &[u8] = b"knock";

/// One datagram: from `source` to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address written into the IP header.
    pub source: Ipv4Addr,
    /// Destination address and port.
    pub target: SocketAddrV4,
}

/// A socket that sends batches of [`Packet`]s.
#[derive(Debug)]
pub struct Sender {
    socket: UdpSocket,
}

/// Control buffer for one `in_pktinfo` message, aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

impl Sender {
    /// An unbound IPv4 UDP socket with a large send buffer.
    pub fn new() -> io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(4 << 20);
        Ok(Self { socket })
    }

    /// Sends `packets` (at most [`BATCH`]) with the knock payload; returns
    /// how many the kernel took. A full send buffer is waited out, not
    /// counted as a loss.
    pub fn send(&self, packets: &[Packet]) -> io::Result<usize> {
        self.send_with(packets, |_| PAYLOAD)
    }

    /// Sends `packets` (at most [`BATCH`]), packet `i` carrying
    /// `payloads[i]` (SPA packets); like [`Sender::send`] otherwise.
    pub fn send_payloads(&self, packets: &[Packet], payloads: &[&[u8]]) -> io::Result<usize> {
        let n = packets.len().min(payloads.len());
        self.send_with(&packets[..n], |i| payloads[i])
    }

    fn send_with<'a>(
        &self,
        packets: &[Packet],
        payload: impl Fn(usize) -> &'a [u8],
    ) -> io::Result<usize> {
        let n = packets.len().min(BATCH);
        // SAFETY: these C structs are plain old data; all zeroes is valid.
        let mut names: [libc::sockaddr_in; BATCH] = unsafe { mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut controls = [Control([0; 64]); BATCH];
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let space = unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as u32) };
        for (i, packet) in packets.iter().take(n).enumerate() {
            names[i].sin_family = libc::AF_INET as libc::sa_family_t;
            names[i].sin_port = packet.target.port().to_be();
            names[i].sin_addr.s_addr = u32::from(*packet.target.ip()).to_be();
            let bytes = payload(i);
            iovs[i].iov_base = bytes.as_ptr() as *mut libc::c_void;
            iovs[i].iov_len = bytes.len();
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&raw mut names[i]).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &raw mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = controls[i].0.as_mut_ptr().cast();
            hdr.msg_controllen = space as _;
            // SAFETY: the control buffer holds CMSG_SPACE(in_pktinfo) bytes,
            // aligned; CMSG_FIRSTHDR points into it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as _;
                let info = libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>();
                info.write_unaligned(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(packet.source).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                });
            }
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: the headers point at buffers of this frame that live
            // across the call; `sent..n` are initialised above.
            let r = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    hdrs.as_mut_ptr().add(sent),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if err.raw_os_error() == Some(libc::ENOBUFS)
                    || err.kind() == io::ErrorKind::WouldBlock
                {
                    std::thread::yield_now();
                    continue;
                }
                return Err(err);
            }
            sent += r as usize;
        }
        Ok(sent)
    }
}

/// The source address of the `index`-th distinct source of a load: counting
/// up from `base` (e.g. 127.16.0.0 gives 127.16.0.0 .. 127.31.255.255 for
/// a million sources). Stays inside `base`'s /8.
pub fn source_at(base: Ipv4Addr, index: u32) -> Ipv4Addr {
    let base = u32::from(base);
    let offset = index % (0x00ff_ffff - (base & 0x00ff_ffff)).max(1);
    Ipv4Addr::from(base + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_count_up_and_stay_in_the_slash_8() {
        let base = Ipv4Addr::new(127, 16, 0, 0);
        assert_eq!(source_at(base, 0), base);
        assert_eq!(source_at(base, 257), Ipv4Addr::new(127, 16, 1, 1));
        assert_eq!(source_at(base, 999_999), Ipv4Addr::new(127, 31, 66, 63));
        assert_eq!(source_at(base, u32::MAX).octets()[0], 127);
    }

    #[test]
    fn a_batch_arrives_from_the_sources_it_names() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(target) = server.local_addr().unwrap() else {
            unreachable!()
        };
        let sender = Sender::new().unwrap();
        let packets: Vec<Packet> = (0..3)
            .map(|i| Packet {
                source: Ipv4Addr::new(127, 9, 0, 10 + i),
                target,
            })
            .collect();
        assert_eq!(sender.send(&packets).unwrap(), 3);
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        for packet in &packets {
            let (len, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], PAYLOAD);
            assert_eq!(from.ip(), std::net::IpAddr::V4(packet.source));
        }
        let payloads: [&[u8]; 2] = [b"first", b"second"];
        assert_eq!(sender.send_payloads(&packets, &payloads).unwrap(), 2);
        for (packet, payload) in packets.iter().zip(payloads) {
            let (len, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], payload);
            assert_eq!(from.ip(), std::net::IpAddr::V4(packet.source));
        }
    }
}
