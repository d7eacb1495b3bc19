//! Stealth capture: hearing knocks and SPA packets without owning their
//! ports, so the host answers a packet on a knock port exactly as it
//! answers one on any closed port (ICMP port-unreachable or TCP RST where
//! it answers so, silence where its policy drops).
//!
//! A bound UDP socket suppresses the kernel's ICMP port-unreachable, so a
//! UDP scan finds the knock ports among their closed neighbours, and a
//! socket never hears TCP knocks. knockd and fwknopd read packets off the
//! wire for this reason. The sources, stealthiest first:
//!
//! | source | needs | how |
//! |---|---|---|
//! | [`CaptureKind::Nflog`] | a kernel backend (CAP_NET_ADMIN) | a rule that logs knock-port packets to an NFLOG group and lets them continue, read over netlink |
//! | [`CaptureKind::Packet`] | CAP_NET_RAW | an AF_PACKET socket with a classic BPF filter generated from the doors |
//! | [`CaptureKind::Socket`] | nothing | bound UDP sockets: visible to a UDP scan, deaf to TCP knocks |
//!
//! Every source hands the shell the same thing: raw IP packets (from the IP
//! header on) with the kernel's receive stamp, which `capture/ip.rs` parses into a
//! [`Heard`] packet. What the capture must let through is one
//! [`CaptureSpec`], derived from the doors and the SPA port.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use crate::config::Proto;

pub mod bpf;
mod error;
pub mod nflog;
pub mod packet;

pub use error::CaptureError;

/// The capture source, as the user chooses it (`--capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureKind {
    /// The stealthiest source available; the daemon logs which and why.
    #[default]
    Auto,
    /// NFLOG rule of the kernel backend, read over netlink.
    Nflog,
    /// AF_PACKET socket with a classic BPF filter.
    Packet,
    /// Bound UDP sockets (today's path; visible to a UDP scan).
    Socket,
}

/// What a capture source must let through: UDP to any of `udp_ports`, and
/// TCP to any of `tcp_ports` with SYN set and ACK clear (a TCP knock; other
/// TCP segments neither advance nor break a sequence, so they need not be
/// captured at all). The SPA port is one of `udp_ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSpec {
    /// UDP destination ports to capture (sorted, unique).
    pub udp_ports: Vec<u16>,
    /// TCP destination ports to capture SYN-without-ACK segments of
    /// (sorted, unique).
    pub tcp_ports: Vec<u16>,
    /// Interfaces to capture on by name; empty: all.
    pub interfaces: Vec<String>,
}

/// One packet a source read: the IP packet from its IP header on, and the
/// kernel's receive stamp (nanoseconds since the epoch; 0: none).
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// The IP packet (possibly truncated to the source's snap length).
    pub ip: &'a [u8],
    /// The kernel's receive stamp, or 0.
    pub stamp_ns: u64,
}

/// A capture source: one file descriptor that turns readable when packets
/// wait, and a non-blocking batched read.
pub trait CaptureSource: AsRawFd + Send {
    /// Reads what is ready without blocking, at most one batch, calling
    /// `each` for every packet; returns how many it read (0: none ready).
    /// Allocation-free: buffers are the source's own, reused.
    fn drain(&mut self, each: &mut dyn FnMut(RawPacket<'_>)) -> io::Result<usize>;
    /// Packets the kernel dropped for this reader so far (NFLOG: counted
    /// from ENOBUFS and sequence gaps; AF_PACKET: `PACKET_STATISTICS`).
    fn kernel_drops(&mut self) -> u64;
    /// The source's name for logs and counters.
    fn kind(&self) -> CaptureKind;
}

/// A packet the capture heard, parsed from its IP and transport headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard<'a> {
    /// The sender.
    pub source: IpAddr,
    /// The destination address.
    pub destination: IpAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// The destination port.
    pub port: u16,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The UDP payload (empty for TCP; possibly truncated).
    pub payload: &'a [u8],
}
