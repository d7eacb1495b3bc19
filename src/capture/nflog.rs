//! The NFLOG capture source: the kernel backend's capture rule logs every
//! knock-port packet to an NFLOG group and lets it continue, and this
//! reader takes them off a `NETLINK_NETFILTER` socket bound to that group.
//! The host answers the packet itself, exactly as on any closed port.
//!
//! | file | what |
//! |---|---|
//! | `nflog.rs` | [`NflogSource`]: the socket, its setup, the batched read |
//! | `nflog/message.rs` | config requests and the parser of logged packets (pure) |
//! | `nflog/drops.rs` | counting kernel drops from `ENOBUFS` and sequence gaps (pure) |
//! | `nflog/rule.rs` | [`NflogRule`]: what the kernel backends install |
//!
//! Setup, one acked request at a time (`nfnetlink_log.c`
//! `nfulnl_recv_config`): `NFULNL_CFG_CMD_BIND` of the group (a group
//! bound by another socket answers `EPERM`, by this one `EBUSY`: both are
//! [`CaptureError::GroupTaken`]), then copy-packet mode up to [`SNAPLEN`]
//! bytes, a queue threshold of 1 and a flush timeout of 0, and message
//! numbering (`NFULNL_CFG_F_SEQ`). The kernel's defaults (threshold 100,
//! timeout 1 s) batch for throughput and would hold a lone knock up to a
//! second; the timeout's unit is 1/100 s, so only a threshold of 1 keeps a
//! knock's delay in microseconds (knock-to-open median <= 1 ms).
//! Measured in a namespace (`tests/kernel/nflog.rs`, by hand): send to
//! `drain` median 14 us, p99 45 us; with a threshold of 100 and a timeout
//! of 1/100 s, median 13.5 ms. The price: one skb per packet, so a reader
//! that stops reading holds about 40 000 knocks in its 16 MiB buffer
//! before the kernel drops (a 100 000-packet burst: 40 330 read, 59 671
//! counted as dropped), where batching would have held them all.
//!
//! No `NFULNL_CFG_CMD_PF_UNBIND`/`PF_BIND`, unlike libnetfilter_log's
//! examples: since Linux 3.17 a rule with a group (nft `log group`,
//! iptables `-j NFLOG`) names its logger itself (`nf_log_packet` with a
//! `loginfo` of type `NF_LOG_TYPE_ULOG`), and the per-family binding those
//! commands change is the namespace's *default* logger, which conntrack's
//! invalid-packet logging and rules without a group use. Rebinding it would
//! move the admin's own log lines to NFLOG group 0; we leave it alone.
//!
//! Reads: `recvmmsg` of up to [`BATCH`] datagrams into one buffer allocated
//! at open, parsed in place; nothing is allocated per packet. A full
//! receive buffer ([`RECEIVE_BUFFER`], forced past `rmem_max` with
//! CAP_NET_ADMIN) makes the kernel drop and the next read fail with
//! `ENOBUFS`: counted, and the read goes on ([`drops`]).
//!
//! [`DEFAULT_GROUP`] is 27502 (`0x6b6e`, "kn"): ulogd's example
//! configurations use groups 0 to 2 and Suricata's use 2; a group far from
//! the small numbers is unlikely to be held already. One reader per group
//! per network namespace: two servers need two groups (`--nflog-group`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{CaptureError, CaptureKind, CaptureSource, RawPacket};

pub mod drops;
pub mod message;
mod rule;

pub use rule::NflogRule;

use drops::Drops;
use message::{Item, Messages};

/// The NFLOG group used unless `--nflog-group` says otherwise (see the
/// module doc for why this one).
pub const DEFAULT_GROUP: u16 = 27502;
/// Bytes of each packet copied to the reader: an SPA packet whole (fwknop
/// caps SPA data at 1500 bytes; with an IPv6 header, extension headers and
/// UDP's 8 that stays under 2048). A knock is far shorter and costs only
/// its own length: the snap length truncates, it does not pad.
pub const SNAPLEN: u32 = 2048;
/// Datagrams one read takes at most.
pub const BATCH: usize = 64;
/// Room per datagram: with a queue threshold of 1 each datagram holds one
/// message of at most [`SNAPLEN`] plus about 100 bytes of headers.
const SLOT: usize = 8192;
/// Receive buffer asked for: about 16 000 queued knocks (one small skb
/// each) before the kernel drops.
pub const RECEIVE_BUFFER: libc::c_int = 16 << 20;
/// How long setup waits for each ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Flush after this many packets (see the module doc).
const QUEUE_THRESHOLD: u32 = 1;
/// Flush timeout in 1/100 s.
const FLUSH_TIMEOUT: u32 = 0;
/// Reads in one [`CaptureSource::drain`] that may bring datagrams without a
/// packet before it gives up (none of that kind is ever sent).
const MAX_EMPTY_READS: usize = 64;

/// A socket bound to an NFLOG group: the [`CaptureKind::Nflog`] source.
#[derive(Debug)]
pub struct NflogSource {
    fd: OwnedFd,
    group: u16,
    /// [`BATCH`] slots of [`SLOT`] bytes, reused by every read.
    buf: Box<[u8]>,
    drops: Drops,
    malformed: u64,
}

fn io_error(what: &'static str) -> CaptureError {
    CaptureError::Io {
        source_name: "nflog",
        what,
        error: io::Error::last_os_error(),
    }
}

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: a valid socket and an int option of its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

impl NflogSource {
    /// Binds NFLOG `group` in this thread's network namespace and sets it
    /// up for low-latency copies (see the module doc). Errors:
    /// [`CaptureError::GroupTaken`] when another reader holds the group,
    /// [`CaptureError::MissingCapability`] without CAP_NET_ADMIN.
    pub fn open(group: u16) -> Result<NflogSource, CaptureError> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io_error("socket(NETLINK_NETFILTER)"));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel picks our port id.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a sockaddr_nl of the given size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io_error("bind(AF_NETLINK)"));
        }
        if !set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER)
            && !set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)
        {
            return Err(io_error("SO_RCVBUF"));
        }
        let timeout = libc::timeval {
            tv_sec: ACK_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a valid socket and a timeval of its size.
        let timed = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if timed < 0 {
            return Err(io_error("SO_RCVTIMEO"));
        }
        let mut source = NflogSource {
            fd,
            group,
            buf: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            drops: Drops::default(),
            malformed: 0,
        };
        match source.request(&message::bind(group, 1), 1)? {
            0 => {}
            libc::EPERM | libc::EBUSY if !crate::firewall::system::has_net_admin() => {
                return Err(CaptureError::MissingCapability {
                    source_name: "nflog",
                    capability: "CAP_NET_ADMIN",
                    why: "run as root (or with CAP_NET_ADMIN), or use --capture packet or socket",
                });
            }
            libc::EPERM | libc::EBUSY => return Err(CaptureError::GroupTaken { group }),
            errno => {
                return Err(CaptureError::Io {
                    source_name: "nflog",
                    what: "NFULNL_CFG_CMD_BIND",
                    error: io::Error::from_raw_os_error(errno),
                });
            }
        }
        let config = message::configure(group, 2, SNAPLEN, QUEUE_THRESHOLD, FLUSH_TIMEOUT);
        match source.request(&config, 2)? {
            0 => {}
            errno => {
                return Err(CaptureError::Io {
                    source_name: "nflog",
                    what: "NFULA_CFG_MODE/QTHRESH/TIMEOUT/FLAGS",
                    error: io::Error::from_raw_os_error(errno),
                });
            }
        }
        // SAFETY: fcntl on our own descriptor.
        let nonblocking = unsafe {
            let flags = libc::fcntl(source.fd.as_raw_fd(), libc::F_GETFL);
            flags >= 0
                && libc::fcntl(
                    source.fd.as_raw_fd(),
                    libc::F_SETFL,
                    flags | libc::O_NONBLOCK,
                ) == 0
        };
        if !nonblocking {
            return Err(io_error("O_NONBLOCK"));
        }
        Ok(source)
    }

    /// Sends one config request and waits for its ack; returns 0 or the
    /// errno the kernel refused it with. Packets read meanwhile (setup is
    /// not done yet) are dropped.
    fn request(&mut self, bytes: &[u8], seq: u32) -> Result<i32, CaptureError> {
        // SAFETY: sending our own buffer to the kernel (the socket's
        // default destination is port 0, the kernel).
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io_error("send(NFULNL_MSG_CONFIG)"));
        }
        loop {
            // SAFETY: receiving into our own buffer of the given length.
            let got = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if got < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR | libc::ENOBUFS) => continue,
                    _ => {
                        return Err(CaptureError::Io {
                            source_name: "nflog",
                            what: "waiting for the NFLOG config ack",
                            error: err,
                        });
                    }
                }
            }
            for item in Messages::new(&self.buf[..got as usize]) {
                if let Item::Ack { seq: s, errno } = item {
                    if s == seq {
                        return Ok(errno);
                    }
                }
            }
        }
    }

    /// The group this reader holds.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// `ENOBUFS` reads so far (each lost at least one message).
    pub fn overruns(&self) -> u64 {
        self.drops.overruns()
    }

    /// Datagrams or messages that did not parse (never expected).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// One `recvmmsg` of up to [`BATCH`] datagrams; returns how many came
    /// (0: none ready). `ENOBUFS` is counted and the read retried.
    fn receive(&mut self, lens: &mut [usize; BATCH]) -> io::Result<usize> {
        // SAFETY: all-zero iovec/mmsghdr are valid; every pointer set
        // below points into `self.buf`, which outlives the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        for (i, (iov, msg)) in iov.iter_mut().zip(msgs.iter_mut()).enumerate() {
            // SAFETY: slot i lies inside the buffer of BATCH * SLOT bytes.
            iov.iov_base = unsafe { base.add(i * SLOT) }.cast();
            iov.iov_len = SLOT;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut tries = 0;
        let n = loop {
            // SAFETY: BATCH valid mmsghdrs, each with one iovec into our buffer.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(0),
                Some(libc::ENOBUFS) => self.drops.overrun(),
                Some(libc::EINTR) => {}
                _ => return Err(err),
            }
            tries += 1;
            if tries > 8 {
                return Ok(0);
            }
        };
        for (len, msg) in lens.iter_mut().zip(&msgs[..n]) {
            *len = msg.msg_len as usize;
            if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.malformed += 1;
            }
        }
        Ok(n)
    }
}

/// Now, in nanoseconds since the epoch (the stamp of packets the kernel
/// sent without one).
fn now_ns() -> u64 {
    // SAFETY: clock_gettime into a local timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl AsRawFd for NflogSource {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl CaptureSource for NflogSource {
    /// One `recvmmsg` of up to [`BATCH`] datagrams, parsed in place. A
    /// packet without the kernel's stamp gets the time of the read.
    fn drain(&mut self, each: &mut dyn FnMut(RawPacket<'_>)) -> io::Result<usize> {
        let mut lens = [0usize; BATCH];
        for _ in 0..MAX_EMPTY_READS {
            let n = self.receive(&mut lens)?;
            if n == 0 {
                return Ok(0);
            }
            let now = now_ns();
            let mut packets = 0;
            for (i, &len) in lens[..n].iter().enumerate() {
                let start = i * SLOT;
                for item in Messages::new(&self.buf[start..start + len.min(SLOT)]) {
                    match item {
                        Item::Packet(logged) if logged.group == self.group => {
                            if let Some(seq) = logged.seq {
                                self.drops.seen(seq);
                            }
                            let stamp_ns = match logged.stamp_ns {
                                0 => now,
                                stamp => stamp,
                            };
                            each(RawPacket {
                                ip: logged.payload,
                                stamp_ns,
                            });
                            packets += 1;
                        }
                        Item::Malformed => self.malformed += 1,
                        _ => {}
                    }
                }
            }
            if packets > 0 {
                return Ok(packets);
            }
        }
        Ok(0)
    }

    fn kernel_drops(&mut self) -> u64 {
        self.drops.total()
    }

    fn kind(&self) -> CaptureKind {
        CaptureKind::Nflog
    }
}

#[cfg(test)]
mod tests;
