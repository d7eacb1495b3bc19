//! Set elements over nf_tables netlink: grants and revokes without a
//! process or a text parser in the way.
//!
//! [`build`] turns a batch of [`Change`]s into the bytes of one nf_tables
//! transaction, a pure function checked against the bytes `nft` 1.0.6
//! itself sends (`testdata/*.hex`); [`NftNetlink`] owns the one
//! `NETLINK_NETFILTER` socket, sends a transaction and reads its acks.
//!
//! A transaction (see `nf_tables.h`, `nfnetlink.h`):
//! `NFNL_MSG_BATCH_BEGIN` (res_id `NFNL_SUBSYS_NFTABLES`), then per set the
//! same three steps as the text commands of [`super::NftablesFirewall`]:
//! `NFT_MSG_NEWSETELEM` of every touched element without a timeout
//! (`NLM_F_CREATE`, no `EXCL`: an existing element is no error),
//! `NFT_MSG_DELSETELEM` of them (so the next add is fresh and a revoke of a
//! closed grant never fails), `NFT_MSG_NEWSETELEM` of the granted ones with
//! `NFTA_SET_ELEM_TIMEOUT` (be64 milliseconds); then `NFNL_MSG_BATCH_END`.
//! The kernel commits the whole transaction or none of it. Add, delete, add
//! is what refreshes the timeout of an open grant on every kernel: a plain
//! add of an existing element keeps its old timeout on older kernels
//! (6.18, where this was written, does refresh it; the extra delete and
//! add cost one transaction either way).
//!
//! Keys are the set's concatenation `addr . inet_service`, each field
//! padded to 4 bytes (nft's concatenation registers): 4 + 4 bytes for
//! `allowed_v4`, 16 + 4 for `allowed_v6`, the port in network order
//! followed by two zero bytes.
//!
//! Every element message carries `NLM_F_ACK`; the socket sets
//! `NETLINK_CAP_ACK` so an error does not echo the request back. The kernel
//! runs the batch inside our `sendmsg`, so the acks are queued by the time
//! it returns; the read still waits (bounded by a receive timeout) until
//! every message is answered or one failed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::{SET_V4, SET_V6};
use crate::firewall::{Change, FirewallError};

/// `NFNL_SUBSYS_NFTABLES` (`nfnetlink.h`).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` (= `NLMSG_MIN_TYPE`).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFT_MSG_NEWSETELEM` (`nf_tables.h`).
const NFT_MSG_NEWSETELEM: u16 = 12;
/// `NFT_MSG_DELSETELEM`.
const NFT_MSG_DELSETELEM: u16 = 14;
/// `NFPROTO_INET`: our table's family.
const NFPROTO_INET: u8 = 1;
/// `NFNETLINK_V0`.
const NFNETLINK_V0: u8 = 0;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;

/// `NFTA_SET_ELEM_LIST_*`.
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
/// `NFTA_SET_ELEM_*`.
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
/// `NFTA_DATA_VALUE`.
const NFTA_DATA_VALUE: u16 = 1;

/// Most elements in one message: the elements are one attribute whose
/// length is a u16, and a v6 element with a timeout takes 44 bytes.
pub const MAX_ELEMENTS_PER_MESSAGE: usize = 1024;
/// How long to wait for the kernel's acks before giving up on the socket.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Send buffer asked for: a batch of 1024 changes is about 110 KiB.
const SEND_BUFFER: libc::c_int = 4 << 20;

/// One set element, in its final state for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Element {
    ip: IpAddr,
    port: u16,
    /// Timeout in milliseconds; 0 revokes.
    ms: u64,
}

impl Element {
    fn set(&self) -> &'static str {
        match self.ip {
            IpAddr::V4(_) => SET_V4,
            IpAddr::V6(_) => SET_V6,
        }
    }

    /// The key: address, then the port in network order padded to 4 bytes.
    fn key(&self, out: &mut Vec<u8>) {
        match self.ip {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
}

/// What one element message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Add without a timeout (creates what is missing).
    Touch,
    /// Delete.
    Delete,
    /// Add with the element's timeout.
    Grant,
}

/// One element message of a transaction, kept to describe a failure.
#[derive(Debug, Clone)]
struct Request {
    seq: u32,
    /// Our table's name (family `inet`).
    table: String,
    op: Op,
    elements: Vec<Element>,
}

impl Request {
    /// The request as the `nft` command that does the same, shortened.
    fn describe(&self) -> String {
        const SHOWN: usize = 3;
        let verb = if self.op == Op::Delete {
            "delete"
        } else {
            "add"
        };
        let set = self.elements.first().map_or(SET_V4, Element::set);
        let mut out = format!("netlink: {verb} element inet {} {set} {{ ", self.table);
        for (i, e) in self.elements.iter().take(SHOWN).enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let _ = write!(out, "{sep}{} . {}", e.ip, e.port);
            if self.op == Op::Grant {
                let _ = write!(out, " timeout {}ms", e.ms);
            }
        }
        if self.elements.len() > SHOWN {
            let _ = write!(out, ", ... ({} elements)", self.elements.len());
        }
        out.push_str(" }");
        out
    }
}

/// The bytes of one nf_tables transaction and what its messages do.
#[derive(Debug, Clone)]
pub struct Batch {
    /// What to send, from `NFNL_MSG_BATCH_BEGIN` to `NFNL_MSG_BATCH_END`.
    pub bytes: Vec<u8>,
    /// Sequence number of the begin message; the others follow it.
    pub first_seq: u32,
    /// Sequence number after the end message.
    pub next_seq: u32,
    requests: Vec<Request>,
}

/// The final state of each element a batch touches, in order of first
/// appearance: when a batch changes one element twice, the last change wins
/// (as if applied in order).
fn final_elements(changes: &[Change]) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::with_capacity(changes.len());
    let mut index = HashMap::with_capacity(changes.len());
    for change in changes {
        let (ip, port, ms) = match *change {
            Change::Grant { ip, port, ttl } if !ttl.is_zero() => {
                // Whole milliseconds, at least one (0 means no timeout).
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                (ip, port, ms.max(1))
            }
            Change::Grant { ip, port, .. } | Change::Revoke { ip, port } => (ip, port, 0),
        };
        let element = Element {
            ip: ip.to_canonical(),
            port,
            ms,
        };
        match index.get(&(element.ip, port)) {
            Some(&i) => out[i] = element,
            None => {
                index.insert((element.ip, port), out.len());
                out.push(element);
            }
        }
    }
    out
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_ne_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_ne_bytes());
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Starts an attribute whose length [`end_attr`] fills in.
fn begin_attr(out: &mut Vec<u8>, ty: u16) -> usize {
    let start = out.len();
    put_u16(out, 0);
    put_u16(out, ty);
    start
}

fn end_attr(out: &mut Vec<u8>, start: usize) {
    let len = u16::try_from(out.len() - start).expect("attribute longer than 64 KiB");
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    pad(out);
}

fn attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let start = begin_attr(out, ty);
    out.extend_from_slice(data);
    end_attr(out, start);
}

/// Starts a message (header and `nfgenmsg`) whose length [`end_message`] fills in.
fn begin_message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8) -> usize {
    let start = out.len();
    put_u32(out, 0);
    put_u16(out, ty);
    put_u16(out, flags);
    put_u32(out, seq);
    put_u32(out, 0); // port id: the kernel
    out.push(family);
    out.push(NFNETLINK_V0);
    let res_id = if ty == NFNL_MSG_BATCH_BEGIN || ty == NFNL_MSG_BATCH_END {
        NFNL_SUBSYS_NFTABLES
    } else {
        0
    };
    out.extend_from_slice(&res_id.to_be_bytes());
    start
}

fn end_message(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start).expect("message longer than 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// One `NEWSETELEM`/`DELSETELEM` message for `elements` (all of one set).
fn element_message(out: &mut Vec<u8>, table: &str, seq: u32, op: Op, elements: &[Element]) {
    let (ty, flags) = match op {
        Op::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        Op::Touch | Op::Grant => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
    };
    let start = begin_message(
        out,
        (NFNL_SUBSYS_NFTABLES << 8) | ty,
        flags,
        seq,
        NFPROTO_INET,
    );
    let mut table = table.as_bytes().to_vec();
    table.push(0);
    attr(out, NFTA_SET_ELEM_LIST_TABLE, &table);
    let set = elements[0].set();
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    attr(out, NFTA_SET_ELEM_LIST_SET, &name);
    let list = begin_attr(out, NLA_F_NESTED | NFTA_SET_ELEM_LIST_ELEMENTS);
    for (i, element) in elements.iter().enumerate() {
        // nft numbers the list entries 1, 2, ...; the kernel ignores it.
        let index = u16::try_from(i + 1).expect("at most MAX_ELEMENTS_PER_MESSAGE");
        let entry = begin_attr(out, NLA_F_NESTED | index);
        if op == Op::Grant {
            attr(out, NFTA_SET_ELEM_TIMEOUT, &element.ms.to_be_bytes());
        }
        let key = begin_attr(out, NLA_F_NESTED | NFTA_SET_ELEM_KEY);
        let value = begin_attr(out, NFTA_DATA_VALUE);
        element.key(out);
        end_attr(out, value);
        end_attr(out, key);
        end_attr(out, entry);
    }
    end_attr(out, list);
    end_message(out, start);
}

/// The transaction for a batch of changes in the default table
/// (`inet portknock`), its messages numbered from `first_seq`. An empty
/// batch is a begin and an end. (Tests compare it with nft's bytes.)
#[cfg(test)]
pub fn build(changes: &[Change], first_seq: u32) -> Batch {
    build_in("portknock", changes, first_seq)
}

/// The transaction for a batch of changes in the table `inet <table>`,
/// its messages numbered from `first_seq`. An empty batch is a begin and
/// an end.
pub fn build_in(table: &str, changes: &[Change], first_seq: u32) -> Batch {
    let elements = final_elements(changes);
    let mut bytes = Vec::with_capacity(64 + elements.len() * 120);
    let mut requests = Vec::new();
    let mut seq = first_seq;
    let start = begin_message(&mut bytes, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0);
    end_message(&mut bytes, start);
    for set in [SET_V4, SET_V6] {
        let touched: Vec<Element> = elements
            .iter()
            .copied()
            .filter(|e| e.set() == set)
            .collect();
        let granted: Vec<Element> = touched.iter().copied().filter(|e| e.ms > 0).collect();
        for (op, list) in [
            (Op::Touch, &touched),
            (Op::Delete, &touched),
            (Op::Grant, &granted),
        ] {
            for chunk in list.chunks(MAX_ELEMENTS_PER_MESSAGE) {
                seq = seq.wrapping_add(1);
                element_message(&mut bytes, table, seq, op, chunk);
                requests.push(Request {
                    seq,
                    table: table.to_string(),
                    op,
                    elements: chunk.to_vec(),
                });
            }
        }
    }
    seq = seq.wrapping_add(1);
    let start = begin_message(&mut bytes, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0);
    end_message(&mut bytes, start);
    Batch {
        bytes,
        first_seq,
        next_seq: seq.wrapping_add(1),
        requests,
    }
}

/// The `NLMSG_ERROR` answers in a buffer read from the socket:
/// `(seq, errno)`, errno 0 for an ack. Other messages are skipped.
pub fn parse_acks(mut buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        if ty == NLMSG_ERROR && len >= 20 {
            let error = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
            out.push((seq, -error));
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The backend's one `NETLINK_NETFILTER` socket: the only I/O of this module.
#[derive(Debug)]
pub struct NftNetlink {
    fd: OwnedFd,
    /// Our table's name (family `inet`).
    table: String,
    seq: u32,
    recv: Vec<u8>,
}

fn io_error(context: &str) -> FirewallError {
    FirewallError::Io {
        context: format!("nf_tables netlink: {context}"),
        source: io::Error::last_os_error(),
    }
}

/// A `NETLINK_NETFILTER` socket (with `flags` beside `SOCK_RAW`), bound
/// with a port id the kernel picks, in the calling thread's network
/// namespace; on failure, what failed (errno is left for the caller).
pub(super) fn netfilter_socket(flags: libc::c_int) -> Result<OwnedFd, &'static str> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | flags,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err("socket");
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
        return Err("bind");
    }
    Ok(fd)
}

/// Sets a socket option; false (errno set) if the kernel refused it.
pub(super) fn set_option(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> bool {
    // SAFETY: a valid socket and a buffer of the given length.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        ) == 0
    }
}

impl NftNetlink {
    /// Opens and binds the socket (in the calling thread's network
    /// namespace), for the sets of table `inet <table>`.
    pub fn open(table: &str) -> Result<Self, FirewallError> {
        let fd = netfilter_socket(libc::SOCK_CLOEXEC).map_err(io_error)?;
        let one: libc::c_int = 1;
        set_option(
            &fd,
            libc::SOL_NETLINK,
            libc::NETLINK_CAP_ACK,
            &one.to_ne_bytes(),
        );
        // Above wmem_max with CAP_NET_ADMIN, else as much as allowed.
        if !set_option(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &SEND_BUFFER.to_ne_bytes(),
        ) {
            set_option(
                &fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                &SEND_BUFFER.to_ne_bytes(),
            );
        }
        let timeout = libc::timeval {
            tv_sec: ACK_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a timeval is plain bytes of its size.
        let timeout_bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw const timeout).cast::<u8>(),
                size_of::<libc::timeval>(),
            )
        };
        if !set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, timeout_bytes) {
            return Err(io_error("SO_RCVTIMEO"));
        }
        Ok(Self {
            fd,
            table: table.to_string(),
            seq: 1,
            recv: vec![0; 64 * 1024],
        })
    }

    /// Applies a batch of changes as one transaction: all or nothing. A
    /// kernel refusal is a [`FirewallError::Command`] naming the request
    /// and the errno; a socket failure is [`FirewallError::Io`] (the socket
    /// should then be reopened).
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), FirewallError> {
        let batch = build_in(&self.table, changes, self.seq);
        self.seq = batch.next_seq;
        // SAFETY: the buffer is valid for its length; the kernel is addressed
        // implicitly (a bound netlink socket sends to port 0).
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                batch.bytes.as_ptr().cast(),
                batch.bytes.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io_error("send"));
        }
        let mut answered = vec![false; batch.requests.len()];
        let mut remaining = batch.requests.len();
        let mut failure: Option<(u32, i32)> = None;
        let last = batch.next_seq.wrapping_sub(1);
        while remaining > 0 {
            // After a failure, only what is already queued: the kernel
            // answers a batch within our send.
            let flags = if failure.is_some() {
                libc::MSG_DONTWAIT
            } else {
                0
            };
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.recv.as_mut_ptr().cast(),
                    self.recv.len(),
                    flags,
                )
            };
            if n < 0 {
                if failure.is_some() {
                    break;
                }
                return Err(io_error("reading the acks"));
            }
            for (seq, errno) in parse_acks(&self.recv[..n as usize]) {
                let offset = seq.wrapping_sub(batch.first_seq);
                if offset > last.wrapping_sub(batch.first_seq) {
                    continue; // an answer to an earlier batch
                }
                if errno != 0 && failure.is_none() {
                    failure = Some((seq, errno));
                }
                if let Some(i) = batch.requests.iter().position(|r| r.seq == seq) {
                    if !answered[i] {
                        answered[i] = true;
                        remaining -= 1;
                    }
                }
            }
        }
        match failure {
            None => Ok(()),
            Some((seq, errno)) => {
                let command = batch.requests.iter().find(|r| r.seq == seq).map_or_else(
                    || "netlink: nf_tables transaction".to_string(),
                    Request::describe,
                );
                Err(FirewallError::Command {
                    command,
                    status: format!("netlink errno {errno}"),
                    stderr: io::Error::from_raw_os_error(errno).to_string(),
                })
            }
        }
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests;
