//! The classic BPF program an AF_PACKET capture socket runs in the kernel:
//! generated from a [`CaptureSpec`], so only knock and SPA packets ever
//! reach userspace and a flood of anything else costs no wake-up.
//!
//! The program is for a `SOCK_DGRAM` packet socket, whose filter sees the
//! packet from the network header on (the kernel pulls the link header
//! first, on every link type: Ethernet, loopback, WireGuard, PPP), the same
//! offsets libpcap uses for `DLT_RAW`. It accepts:
//!
//! - IPv4 UDP to one of `udp_ports`, and IPv4 TCP to one of `tcp_ports`
//!   with SYN set and ACK clear (a knock; other segments neither advance
//!   nor break a sequence, so they are not captured). The transport header
//!   is found at `4 * IHL`; non-first fragments (offset ≠ 0) are rejected,
//!   as libpcap's `udp`/`tcp` primitives do.
//! - The same for IPv6 when the fixed header's next header is UDP or TCP
//!   directly (transport header at byte 40). A packet carrying any
//!   extension header (hop-by-hop, routing, destination options, and every
//!   fragment, first or not) is not captured: a knock sent that way is not
//!   heard. libpcap 1.10 and knockd's `ip6[6]`/`ip6[53]` filter behave the
//!   same; ordinary clients never add extension headers to a UDP datagram
//!   or a SYN.
//!
//! Everything else (ARP, ICMP, other ports, other TCP flags, packets cut
//! short before the fields read) is dropped in the kernel. An accepted
//! packet is kept up to [`SNAP_LEN`] bytes: whole SPA packets (fwknop's
//! are well under 1 500 bytes) and anything an Ethernet MTU carries.
//!
//! Ports are tested by a chain of `jeq`, one instruction per port, in
//! groups of [`GROUP`] that each end in their own `ret` (a conditional
//! jump reaches at most 255 instructions ahead). The kernel takes at most
//! [`libc::BPF_MAXINSNS`] (4 096) instructions, which holds
//! [`max_ports`] ports (4 043 when all are one protocol; splitting them
//! between udp and tcp can cost one more `ret`); more is a
//! [`CaptureError::TooManyPorts`] (the NFLOG source has no such limit).
//! The unit tests check the program against the one libpcap compiles
//! (`tcpdump -dd`) by running both over a corpus of packets.

use libc::sock_filter;

use super::{CaptureError, CaptureSpec};

/// Bytes of an accepted packet the kernel copies to the socket: the whole
/// of any SPA packet and of anything within an Ethernet MTU.
pub const SNAP_LEN: u32 = 2048;

/// Ports tested in one run of `jeq`s before their shared `ret`: a
/// conditional jump's offset is 8 bits wide, so a match must find its
/// `ret` within 255 instructions.
pub const GROUP: usize = 250;

/// Instructions of the fixed part of the program (version, protocol,
/// fragment and flag tests), before the two port chains.
const HEADER: usize = 34;

/// The most ports (udp and tcp together) one program can test within
/// [`libc::BPF_MAXINSNS`].
pub fn max_ports() -> usize {
    let limit = libc::BPF_MAXINSNS as usize;
    let mut ports = limit;
    while ports > 0 && program_len(ports, 0) > limit {
        ports -= 1;
    }
    ports
}

/// Instructions of the program for `udp` udp ports and `tcp` tcp ports.
fn program_len(udp: usize, tcp: usize) -> usize {
    HEADER + chain_len(udp) + chain_len(tcp)
}

/// Instructions of one port chain: a `jeq` per port, a `ret` per group,
/// and the final `ret #0`.
fn chain_len(ports: usize) -> usize {
    ports + ports.div_ceil(GROUP) + 1
}

/// Builds the filter for `spec` (its interfaces are the socket's bind, not
/// the program's). Fails only when the ports do not fit.
pub fn program(spec: &CaptureSpec) -> Result<Vec<sock_filter>, CaptureError> {
    let (udp, tcp) = (&spec.udp_ports, &spec.tcp_ports);
    let len = program_len(udp.len(), tcp.len());
    if len > libc::BPF_MAXINSNS as usize {
        return Err(CaptureError::TooManyPorts {
            ports: udp.len() + tcp.len(),
            max: max_ports(),
        });
    }
    let mut asm = Asm::with_capacity(len);
    let (udp_chain, tcp_chain) = (Label(0), Label(1));
    // Version nibble: 6 falls through to IPv6, anything else to IPv4's test.
    asm.op(LDB_ABS, 0);
    asm.op(AND_K, 0xf0);
    asm.jeq(0x60, 1, 0);
    let to_v4 = asm.ja_fixup();
    // IPv6: next header directly UDP or TCP; transport header at 40.
    asm.op(LDB_ABS, 6);
    asm.jeq(libc::IPPROTO_UDP as u32, 0, 2);
    asm.op(LDH_ABS, 42);
    asm.ja(udp_chain);
    asm.jeq(libc::IPPROTO_TCP as u32, 1, 0);
    asm.op(RET_K, 0);
    asm.op(LDB_ABS, 40 + TCP_FLAGS);
    asm.op(AND_K, SYN | ACK);
    asm.jeq(SYN, 1, 0);
    asm.op(RET_K, 0);
    asm.op(LDH_ABS, 42);
    asm.ja(tcp_chain);
    // IPv4 (A still holds the version nibble).
    asm.land(to_v4);
    asm.jeq(0x40, 1, 0);
    asm.op(RET_K, 0);
    asm.op(LDH_ABS, 6);
    asm.jset(0x1fff, 0, 1);
    asm.op(RET_K, 0);
    asm.op(LDXB_MSH, 0);
    asm.op(LDB_ABS, 9);
    asm.jeq(libc::IPPROTO_UDP as u32, 0, 2);
    asm.op(LDH_IND, 2);
    asm.ja(udp_chain);
    asm.jeq(libc::IPPROTO_TCP as u32, 1, 0);
    asm.op(RET_K, 0);
    asm.op(LDB_IND, TCP_FLAGS);
    asm.op(AND_K, SYN | ACK);
    asm.jeq(SYN, 1, 0);
    asm.op(RET_K, 0);
    asm.op(LDH_IND, 2);
    asm.ja(tcp_chain);
    debug_assert_eq!(asm.code.len(), HEADER);
    asm.bind(udp_chain);
    asm.port_chain(udp);
    asm.bind(tcp_chain);
    asm.port_chain(tcp);
    Ok(asm.finish())
}

/// Offset of the flags byte in a TCP header.
const TCP_FLAGS: u32 = 13;
/// TCP SYN flag.
const SYN: u32 = 0x02;
/// TCP ACK flag.
const ACK: u32 = 0x10;

// Opcodes (linux/filter.h, as libc spells their parts).
const LDB_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LDH_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LDB_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
const LDH_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
const LDXB_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// A place in the program that `ja` instructions jump to.
#[derive(Clone, Copy)]
struct Label(usize);

/// A tiny assembler: conditional jumps take literal (short) offsets,
/// `ja` takes labels resolved at the end.
struct Asm {
    code: Vec<sock_filter>,
    /// Where each label is bound.
    labels: [Option<usize>; 2],
    /// `ja` instructions and the label each jumps to.
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    fn with_capacity(len: usize) -> Self {
        Self {
            code: Vec::with_capacity(len),
            labels: [None; 2],
            jumps: Vec::new(),
        }
    }

    fn raw(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.code.push(sock_filter { code, jt, jf, k });
    }

    fn op(&mut self, code: u16, k: u32) {
        self.raw(code, 0, 0, k);
    }

    fn jeq(&mut self, k: u32, jt: u8, jf: u8) {
        self.raw(JEQ_K, jt, jf, k);
    }

    fn jset(&mut self, k: u32, jt: u8, jf: u8) {
        self.raw(JSET_K, jt, jf, k);
    }

    fn ja(&mut self, to: Label) {
        self.jumps.push((self.code.len(), to));
        self.op(JA, 0);
    }

    /// A `ja` whose target is set later by [`Asm::land`].
    fn ja_fixup(&mut self) -> usize {
        self.op(JA, 0);
        self.code.len() - 1
    }

    /// Points the `ja` at `at` to the next instruction.
    fn land(&mut self, at: usize) {
        self.code[at].k = (self.code.len() - at - 1) as u32;
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.code.len());
    }

    /// With the port in A: accept if it is one of `ports`, else reject.
    fn port_chain(&mut self, ports: &[u16]) {
        for group in ports.chunks(GROUP) {
            let last = group.len() - 1;
            for (i, &port) in group.iter().enumerate() {
                if i == last {
                    self.jeq(u32::from(port), 0, 1);
                } else {
                    self.jeq(u32::from(port), (last - i) as u8, 0);
                }
            }
            self.op(RET_K, SNAP_LEN);
        }
        self.op(RET_K, 0);
    }

    fn finish(mut self) -> Vec<sock_filter> {
        for &(at, label) in &self.jumps {
            let to = self.labels[label.0].expect("every label is bound");
            self.code[at].k = (to - at - 1) as u32;
        }
        self.code
    }
}

#[cfg(test)]
mod interp;
#[cfg(test)]
mod libpcap;
#[cfg(test)]
mod tests;
