//! Watches nf_tables for deletions of our table, chains, rules and sets.
//!
//! `nft flush ruleset` (what Debian's `nftables.service` runs on every
//! start, restart and reload), `nft delete table`, `nft flush table` and
//! `nft flush chain` silently remove our protection. The kernel announces
//! every ruleset change to the `NFNLGRP_NFTABLES` multicast group of
//! `NETLINK_NETFILTER`; this socket subscribes to it and picks out the
//! deletions (`NFT_MSG_DEL{TABLE,CHAIN,RULE,SET}` and their `DESTROY`
//! twins) naming our table in family `inet`. The worker then verifies the
//! table and repairs only if it is broken: our own setup transaction
//! deletes and recreates the table too, and must not start a loop.
//!
//! A full receive buffer (`ENOBUFS`: notifications were lost) counts as a
//! possible deletion, so the worker verifies at once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::FirewallError;

/// `NFNLGRP_NFTABLES` (`nfnetlink.h`).
const NFNLGRP_NFTABLES: libc::c_int = 7;
/// `NFNL_SUBSYS_NFTABLES` (`nfnetlink.h`).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFPROTO_INET`.
const NFPROTO_INET: u8 = 1;
/// `NFT_MSG_DELTABLE`, `DELCHAIN`, `DELRULE`, `DELSET` (`nf_tables.h`),
/// then `NFT_MSG_DESTROYTABLE`, `DESTROYCHAIN`, `DESTROYRULE`, `DESTROYSET`.
const DELETIONS: [u16; 8] = [2, 5, 8, 11, 26, 27, 28, 29];
/// `NFTA_TABLE_NAME`, `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE` and
/// `NFTA_SET_TABLE` are all attribute 1.
const NFTA_TABLE: u16 = 1;
/// Room for notifications between two reads (with CAP_NET_ADMIN, above
/// rmem_max): a grant flood announces every set element.
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

/// Whether `buf` (one read from the group) holds a deletion in table
/// `inet <table>`.
pub fn concerns(buf: &[u8], table: &str) -> bool {
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            return false;
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg = &rest[16..len];
        if ty >> 8 == NFNL_SUBSYS_NFTABLES
            && DELETIONS.contains(&(ty & 0xff))
            && msg.first() == Some(&NFPROTO_INET)
            && msg.len() >= 4
            && table_attr(&msg[4..]).is_some_and(|name| name == table.as_bytes())
        {
            return true;
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    false
}

/// The table name attribute (without its NUL) among `attrs`.
fn table_attr(mut attrs: &[u8]) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == NFTA_TABLE {
            let value = &attrs[4..len];
            return Some(value.strip_suffix(&[0]).unwrap_or(value));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// A non-blocking socket subscribed to nf_tables notifications.
#[derive(Debug)]
pub struct NftMonitor {
    fd: OwnedFd,
    table: String,
    buf: Vec<u8>,
}

impl AsRawFd for NftMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn io_error(context: &str) -> FirewallError {
    FirewallError::Io {
        context: format!("nf_tables monitor: {context}"),
        source: std::io::Error::last_os_error(),
    }
}

impl NftMonitor {
    /// Subscribes (in the calling thread's network namespace) to the
    /// deletions in table `inet <table>`.
    pub fn open(table: &str) -> Result<Self, FirewallError> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io_error("socket"));
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
            return Err(io_error("bind"));
        }
        let set = |level, name, value: libc::c_int| {
            // SAFETY: `value` is a c_int of the given size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    level,
                    name,
                    (&raw const value).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        if !set(
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            NFNLGRP_NFTABLES,
        ) {
            return Err(io_error("join NFNLGRP_NFTABLES"));
        }
        if !set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER) {
            set(libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER);
        }
        Ok(Self {
            fd,
            table: table.to_string(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Reads every queued notification. `Ok(true)`: one concerns our table
    /// or some were lost (verify now); `Ok(false)`: none of ours. A read
    /// that finds nothing is `WouldBlock`.
    pub fn drain(&mut self) -> std::io::Result<bool> {
        let mut read_any = false;
        let mut ours = false;
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        read_any = true;
                        ours = true;
                    }
                    Some(libc::EINTR) => {}
                    _ if err.kind() == std::io::ErrorKind::WouldBlock => {
                        return match read_any {
                            true => Ok(ours),
                            false => Err(err),
                        };
                    }
                    _ => return Err(err),
                }
                continue;
            }
            read_any = true;
            ours |= concerns(&self.buf[..n as usize], &self.table);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One notification: nlmsghdr, nfgenmsg, then the table attribute.
    fn message(ty: u16, family: u8, table: &str) -> Vec<u8> {
        let mut name = table.as_bytes().to_vec();
        name.push(0);
        let attr_len = 4 + name.len();
        let mut attr = Vec::new();
        attr.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        attr.extend_from_slice(&NFTA_TABLE.to_ne_bytes());
        attr.extend_from_slice(&name);
        attr.resize(attr_len.next_multiple_of(4), 0);
        let len = 16 + 4 + attr.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | ty).to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&[family, 0, 0, 0]);
        out.extend_from_slice(&attr);
        out
    }

    #[test]
    fn deletions_of_our_table_concern_us() {
        for ty in DELETIONS {
            assert!(concerns(&message(ty, 1, "portknock"), "portknock"), "{ty}");
        }
    }

    #[test]
    fn other_tables_families_and_additions_do_not() {
        assert!(!concerns(&message(2, 1, "filter"), "portknock"));
        assert!(!concerns(&message(2, 1, "portknock-web"), "portknock"));
        assert!(!concerns(&message(2, 2, "portknock"), "portknock"));
        for ty in [0, 3, 6, 9, 12, 14] {
            assert!(!concerns(&message(ty, 1, "portknock"), "portknock"));
        }
    }

    #[test]
    fn a_later_message_in_the_same_read_counts_and_garbage_does_not_panic() {
        let mut buf = message(14, 1, "portknock");
        buf.extend(message(8, 1, "portknock"));
        assert!(concerns(&buf, "portknock"));
        assert!(!concerns(&[], "portknock"));
        assert!(!concerns(&[0xff; 40], "portknock"));
        let mut short = message(2, 1, "portknock");
        short[0] = 200;
        assert!(!concerns(&short, "portknock"));
    }
}
