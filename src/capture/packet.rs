//! The AF_PACKET capture source: copies of knock and SPA packets read off
//! the wire, so the host answers them exactly as it answers any packet to
//! a closed port (the copy leaves the packet's path through the stack
//! unchanged). Needs CAP_NET_RAW, nothing else: it suits the userspace
//! gate run as root, or a privileged helper that opens it and hands on
//! the descriptor (receiving needs no capability).
//!
//! Each socket is `socket(AF_PACKET, SOCK_DGRAM, 0)`: a packet socket
//! created with protocol 0 is hooked to no packet type and receives
//! nothing until `bind` names one (`packet_create` in
//! `net/packet/af_packet.c` registers its hook only for a non-zero
//! protocol). So the [`bpf`] program is attached and locked
//! (`SO_LOCK_FILTER`: no one holding the fd can detach it) before the bind
//! to `ETH_P_ALL`, and no unfiltered packet can ever be queued; there is
//! nothing to drain. `SOCK_DGRAM` strips the link header, so the filter and
//! the reader see the IP header first on every link type.
//!
//! Not promiscuous (no `PACKET_ADD_MEMBERSHIP`): only frames the interface
//! takes anyway. Outgoing copies are refused by the kernel
//! (`PACKET_IGNORE_OUTGOING`, Linux 4.20) and, in case that option is
//! missing, by the reader, which keeps only `PACKET_HOST` frames (also
//! leaving out broadcast, multicast and frames for other hosts).
//!
//! One socket per `--interface`, bound to its index, or one bound to index
//! 0 for all interfaces. Several sockets sit behind one epoll descriptor,
//! so the source still has one fd. Reads are `recvmmsg` batches into
//! buffers allocated once at open; each packet carries its kernel receive
//! stamp (`SO_TIMESTAMPNS`). Packets the kernel dropped for want of room
//! (an 8 MiB receive buffer is asked for) are counted by
//! `PACKET_STATISTICS`.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tracing::debug;

use super::bpf::{self, SNAP_LEN};
use super::{CaptureError, CaptureKind, CaptureSource, CaptureSpec, RawPacket};
use crate::server::order::timespec_ns;

/// Most packets read from one socket in one `recvmmsg`.
pub const BATCH: usize = 64;
/// Receive buffer asked of the kernel for each socket, so a burst waits
/// rather than being dropped (`SO_RCVBUFFORCE` where allowed, else capped
/// by `net.core.rmem_max`).
pub const SOCKET_BUFFER: usize = 8 << 20;
/// Bytes of each packet buffer: the filter keeps at most [`SNAP_LEN`].
const PACKET: usize = SNAP_LEN as usize;
/// Room for one `SCM_TIMESTAMPNS` control message, in `u64`s for alignment.
const CONTROL: usize = 8;
/// The source's name in errors.
const NAME: &str = "packet";

/// An AF_PACKET capture source (see the module docs).
pub struct PacketSource {
    /// One socket per interface (or one for all).
    sockets: Vec<OwnedFd>,
    /// The epoll set of the sockets when there are several.
    epoll: Option<OwnedFd>,
    /// Receive buffers, allocated once.
    scratch: Scratch,
    /// Kernel drops summed so far (`PACKET_STATISTICS` resets on read).
    drops: u64,
}

/// The reusable storage of one `recvmmsg` call.
struct Scratch {
    packets: Vec<[u8; PACKET]>,
    addrs: Vec<libc::sockaddr_ll>,
    controls: Vec<[u64; CONTROL]>,
}

impl Scratch {
    fn new() -> Self {
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
        let empty: libc::sockaddr_ll = unsafe { mem::zeroed() };
        Self {
            packets: vec![[0; PACKET]; BATCH],
            addrs: vec![empty; BATCH],
            controls: vec![[0; CONTROL]; BATCH],
        }
    }
}

impl PacketSource {
    /// Opens the sockets for `spec`: its ports make the filter, its
    /// interfaces the binds (none: all interfaces). Fails with a clear
    /// error without CAP_NET_RAW, for an unknown interface, or for more
    /// ports than one filter holds.
    pub fn open(spec: &CaptureSpec) -> Result<PacketSource, CaptureError> {
        let program = bpf::program(spec)?;
        let indexes = if spec.interfaces.is_empty() {
            vec![0]
        } else {
            spec.interfaces
                .iter()
                .map(|name| interface_index(name))
                .collect::<Result<Vec<_>, _>>()?
        };
        let sockets = indexes
            .into_iter()
            .map(|index| open_socket(index, &program))
            .collect::<Result<Vec<_>, _>>()?;
        let epoll = if sockets.len() > 1 {
            Some(epoll_of(&sockets).map_err(|error| io_error("epoll", error))?)
        } else {
            None
        };
        Ok(PacketSource {
            sockets,
            epoll,
            scratch: Scratch::new(),
            drops: 0,
        })
    }

    /// One `recvmmsg` without waiting on `fd`, handing each `PACKET_HOST`
    /// packet to `each`; returns how many packets it read.
    fn drain_socket(
        fd: RawFd,
        scratch: &mut Scratch,
        each: &mut dyn FnMut(RawPacket<'_>),
    ) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            iov.iov_base = scratch.packets[i].as_mut_ptr().cast();
            iov.iov_len = PACKET;
            let hdr = &mut hdr.msg_hdr;
            hdr.msg_name = (&raw mut scratch.addrs[i]).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = scratch.controls[i].as_mut_ptr().cast();
            hdr.msg_controllen = mem::size_of::<[u64; CONTROL]>() as _;
        }
        // SAFETY: every header points at live buffers of the stated sizes,
        // owned by `scratch` or this frame, for the duration of the call.
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
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        for (i, hdr) in hdrs.iter().enumerate().take(n) {
            if scratch.addrs[i].sll_pkttype != PACKET_HOST {
                continue;
            }
            let len = (hdr.msg_len as usize).min(PACKET);
            each(RawPacket {
                ip: &scratch.packets[i][..len],
                stamp_ns: receive_stamp(&hdr.msg_hdr),
            });
        }
        Ok(n)
    }
}

impl CaptureSource for PacketSource {
    fn drain(&mut self, each: &mut dyn FnMut(RawPacket<'_>)) -> io::Result<usize> {
        let mut read = 0;
        for socket in &self.sockets {
            read += Self::drain_socket(socket.as_raw_fd(), &mut self.scratch, each)?;
        }
        Ok(read)
    }

    fn kernel_drops(&mut self) -> u64 {
        for socket in &self.sockets {
            self.drops += u64::from(statistics(socket.as_raw_fd()).tp_drops);
        }
        self.drops
    }

    fn kind(&self) -> CaptureKind {
        CaptureKind::Packet
    }
}

impl AsRawFd for PacketSource {
    fn as_raw_fd(&self) -> RawFd {
        match &self.epoll {
            Some(epoll) => epoll.as_raw_fd(),
            None => self.sockets[0].as_raw_fd(),
        }
    }
}

/// `sll_pkttype` of a frame addressed to this host (`linux/if_packet.h`).
const PACKET_HOST: u8 = 0;
/// Socket option: do not deliver outgoing frames (`linux/if_packet.h`).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Socket option: `struct tpacket_stats`, reset on read (`linux/if_packet.h`).
const PACKET_STATISTICS: libc::c_int = 6;

/// `struct tpacket_stats` (`linux/if_packet.h`).
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// The index of interface `name`, or [`CaptureError::UnknownInterface`].
fn interface_index(name: &str) -> Result<libc::c_int, CaptureError> {
    let unknown = || CaptureError::UnknownInterface {
        name: name.to_owned(),
    };
    let c_name = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(unknown()),
        index => Ok(index as libc::c_int),
    }
}

/// One filtered, locked packet socket bound to interface `index` (0: all).
fn open_socket(index: libc::c_int, program: &[libc::sock_filter]) -> Result<OwnedFd, CaptureError> {
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => CaptureError::MissingCapability {
                source_name: NAME,
                capability: "CAP_NET_RAW",
                why: "run as root or grant the capability, or choose --capture socket",
            },
            _ => io_error("socket(AF_PACKET)", err),
        });
    }
    // SAFETY: a fresh descriptor this function owns from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    set_option(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
        .map_err(|e| io_error("SO_ATTACH_FILTER", e))?;
    set_option(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_LOCK_FILTER,
        &1 as &libc::c_int,
    )
    .map_err(|e| io_error("SO_LOCK_FILTER", e))?;
    if let Err(err) = set_option(
        &fd,
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &1 as &libc::c_int,
    ) {
        debug!(error = %err, "PACKET_IGNORE_OUTGOING refused; outgoing copies are skipped by type");
    }
    set_option(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        &1 as &libc::c_int,
    )
    .map_err(|e| io_error("SO_TIMESTAMPNS", e))?;
    let size = SOCKET_BUFFER as libc::c_int;
    if set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
        if let Err(err) = set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size) {
            debug!(error = %err, "cannot enlarge the packet socket's receive buffer");
        }
    }
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = index;
    // SAFETY: a valid socket and an address of the stated size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io_error("bind", io::Error::last_os_error()));
    }
    Ok(fd)
}

/// `setsockopt` with a value of type `T`.
fn set_option<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: a valid socket and a value of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's `PACKET_STATISTICS` since the last read (zeroes if the
/// kernel refuses, which it does not for a packet socket).
fn statistics(fd: RawFd) -> TpacketStats {
    let mut stats = TpacketStats::default();
    let mut len = mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: a valid socket and a buffer of the stated size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return TpacketStats::default();
    }
    stats
}

/// An epoll set (level-triggered) holding every one of `sockets`.
fn epoll_of(sockets: &[OwnedFd]) -> io::Result<OwnedFd> {
    // SAFETY: plain epoll_create1; the result is checked before use.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned from here on.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    for socket in sockets {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: socket.as_raw_fd() as u64,
        };
        // SAFETY: valid descriptors and an event that outlives the call.
        let rc =
            unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(epoll)
}

/// The kernel's receive stamp in a message's control data, in nanoseconds
/// since the epoch; 0 if there is none.
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

fn io_error(what: &'static str, error: io::Error) -> CaptureError {
    CaptureError::Io {
        source_name: NAME,
        what,
        error,
    }
}
