//! Watches nf_tables for deletions of our table, chains, rules and sets.
//!
//! `nft flush ruleset` (what Debian's `nftables.service` runs on every
//! start, restart and reload), `nft delete table`, `nft flush table` and
//! `nft flush chain` silently remove our protection. The kernel announces
//! every ruleset change to the `NFNLGRP_NFTABLES` multicast group of
//! `NETLINK_NETFILTER`; this socket subscribes to it and picks out the
//! deletions (`NFT_MSG_DEL{TABLE,CHAIN,RULE,SET,SETELEM}` and their
//! `DESTROY` twins) naming a watched table, graded as a [`Notice`]:
//!
//! - a table that is wholly ours (nftables' `inet portknock`): a deletion of
//!   its table, chain, rule or set is [`Notice::Broken`], and the worker
//!   repairs at once, without first listing the table. Listing costs an
//!   `nft` process (10-40 ms on a loaded machine) while the door is open,
//!   and nothing but our own setup deletes these objects; the worker
//!   discards what its own setup announced. A deleted set element is
//!   [`Notice::Elements`] (someone ran `nft flush set`, or our own revoke):
//!   the worker compares the sets with the live grants.
//! - a table we share (iptables-nft's `filter` of families `ip` and `ip6`,
//!   where `iptables -F` and a reload act): a deletion is
//!   [`Notice::Changed`], and the worker verifies, since the admin's own
//!   rules live there too. With iptables-legacy nothing is announced and
//!   the periodic check remains.
//!
//! A full receive buffer (`ENOBUFS`: notifications were lost) counts as
//! [`Notice::Changed`], so the worker verifies at once.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::netlink::{netfilter_socket, set_option};
use crate::firewall::FirewallError;

/// `NFNLGRP_NFTABLES` (`nfnetlink.h`).
const NFNLGRP_NFTABLES: libc::c_int = 7;
/// `NFNL_SUBSYS_NFTABLES` (`nfnetlink.h`).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFPROTO_INET`.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;
/// `NFT_MSG_DELTABLE`, `DELCHAIN`, `DELRULE`, `DELSET` (`nf_tables.h`),
/// then `NFT_MSG_DESTROYTABLE`, `DESTROYCHAIN`, `DESTROYRULE`, `DESTROYSET`.
const DELETIONS: [u16; 8] = [2, 5, 8, 11, 26, 27, 28, 29];
/// `NFT_MSG_DELSETELEM` and `NFT_MSG_DESTROYSETELEM`.
const ELEMENT_DELETIONS: [u16; 2] = [14, 30];
/// `NFTA_TABLE_NAME`, `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`,
/// `NFTA_SET_TABLE` and `NFTA_SET_ELEM_LIST_TABLE` are all attribute 1.
const NFTA_TABLE: u16 = 1;
/// Room for notifications between two reads (with CAP_NET_ADMIN, above
/// rmem_max): a grant flood announces every set element.
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

/// What a read of notifications says about our rules, least to most
/// urgent (the worker acts on the most urgent one of a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Notice {
    /// Nothing that concerns us.
    Nothing,
    /// Set elements of our table were deleted: compare with the grants.
    Elements,
    /// A shared table changed (or notifications were lost): verify.
    Changed,
    /// Part of a table that is wholly ours was deleted: repair now.
    Broken,
}

/// A table whose deletions we watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// `NFPROTO_*` family of the table.
    pub family: u8,
    /// The table's name.
    pub table: String,
    /// Whether everything in the table is ours (deletions mean broken).
    pub owned: bool,
}

impl Watch {
    /// What a deletion message of type `ty` in this table means.
    fn notice(&self, ty: u16) -> Notice {
        match (DELETIONS.contains(&ty), ELEMENT_DELETIONS.contains(&ty)) {
            (true, _) if self.owned => Notice::Broken,
            (true, _) => Notice::Changed,
            (_, true) if self.owned => Notice::Elements,
            _ => Notice::Nothing,
        }
    }
}

/// The most urgent [`Notice`] among the messages of `buf` (one read from
/// the group) for the `watches`. Malformed input is [`Notice::Nothing`]
/// from where it begins.
pub fn classify(buf: &[u8], watches: &[Watch]) -> Notice {
    let mut rest = buf;
    let mut notice = Notice::Nothing;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg = &rest[16..len];
        if ty >> 8 == NFNL_SUBSYS_NFTABLES && msg.len() >= 4 {
            if let Some(name) = table_attr(&msg[4..]) {
                for watch in watches {
                    if msg[0] == watch.family && name == watch.table.as_bytes() {
                        notice = notice.max(watch.notice(ty & 0xff));
                    }
                }
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    notice
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
    watches: Vec<Watch>,
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
    /// deletions in the `watches`.
    pub fn open(watches: Vec<Watch>) -> Result<Self, FirewallError> {
        let fd = netfilter_socket(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK).map_err(io_error)?;
        let int = |value: libc::c_int| value.to_ne_bytes();
        if !set_option(
            &fd,
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            &int(NFNLGRP_NFTABLES),
        ) {
            return Err(io_error("join NFNLGRP_NFTABLES"));
        }
        if !set_option(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &int(RECEIVE_BUFFER),
        ) {
            set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &int(RECEIVE_BUFFER));
        }
        Ok(Self {
            fd,
            watches,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Reads every queued notification and returns the most urgent
    /// [`Notice`]; lost notifications are [`Notice::Changed`]. A read that
    /// finds nothing is `WouldBlock`.
    pub fn drain(&mut self) -> std::io::Result<Notice> {
        let mut read_any = false;
        let mut ours = Notice::Nothing;
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
                        ours = ours.max(Notice::Changed);
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
            ours = ours.max(classify(&self.buf[..n as usize], &self.watches));
        }
    }
}

#[cfg(test)]
mod tests;
