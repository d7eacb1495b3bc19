//! Firewall backends: one narrow trait, several implementations.
//!
//! The server never runs a firewall command itself: it sends [`Change`]s to
//! one backend, which applies them. Backends:
//! - [`userspace::UserspaceFirewall`]: no privileges; the gate (`gate.rs`)
//!   owns the protected port and consults the access list this backend keeps.
//! - [`iptables::IptablesFirewall`]: a chain of our own jumped to from INPUT,
//!   an ACCEPT rule per grant, DROP for the protected ports (IPv4 and IPv6).
//! - [`nftables::NftablesFirewall`]: a table of our own whose sets carry
//!   kernel timeouts, so access ends on time even if the server dies.
//!
//! The kernel backends also install the NFLOG capture rule when
//! [`FirewallOptions::capture`] asks for one (nftables: a chain of our
//! table hooked at prerouting priority raw; iptables: a chain of ours in
//! table `raw`, jumped to from PREROUTING): set up, verified, repaired and
//! removed with their other rules. [`Firewall::set_capture`] replaces it
//! while running (the one trait method it adds).
//!
//! [`select::open`] picks one for `--firewall`, checking privileges and tools
//! first so a missing capability is one clear line at start-up.
//! [`leftovers`] lets a userspace-gate start notice (and, privileged,
//! remove) the DROP rules a crashed kernel-backend run left behind.
//!
//! Kernel backends keep their rules equal to the grant table even when
//! someone else changes them (a firewall reload, `nft flush ruleset`,
//! `iptables -F`): [`Firewall::verify`] says what is missing, and the
//! worker (`firewall_worker.rs`) repairs by running setup again and
//! re-applying every live grant with its remaining time. Deletions are
//! announced at once by nf_tables ([`nftables::NftMonitor`]): for nftables, and for
//! iptables-nft whose rules live in nf_tables tables `filter`; iptables is
//! also checked every second (iptables-legacy announces nothing).
//!
//! Ordering beside the admin's own rules (`--iptables-position`):
//! - iptables `first` (default): our jump is inserted at the top of INPUT,
//!   so a grant's ACCEPT wins over the admin's later INPUT rules; `last`
//!   appends it, so the admin's own INPUT rules (a DROP of an address)
//!   are evaluated first and win.
//! - nftables: our base chain hooks `input` at priority `filter` (0). An
//!   accept ends only our chain: the admin's base chains on the same hook
//!   (in other tables) still run, and a drop there wins over our grant.
//!   Our drop of the protected ports, conversely, is final.

pub mod instance;
pub mod iptables;
pub mod leftovers;
pub mod nftables;
pub mod recording;
pub mod select;
pub mod system;
pub mod userspace;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use instance::Instance;

use crate::capture::nflog::NflogRule;

/// Where the iptables jump to our chain goes in INPUT (`--iptables-position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Position {
    /// Inserted first: a grant wins over the admin's later INPUT rules.
    #[default]
    First,
    /// Appended: the admin's own INPUT rules come first and win.
    Last,
}

/// The conntrack mark bit the kernel backends set on every connection a
/// grant accepted; only marked connections outlive their grant (with
/// `keep_established`). A connection a stranger opened while our rules were
/// flushed carries no mark, so it is cut as soon as the repair lands
/// (issue 9 item 1: fail closed).
///
/// Bit 24, and only that bit: the rest of the mark is left alone (set with
/// `or`/`--set-xmark BIT/BIT`, matched with `and`/`--mark BIT/BIT`). It is
/// clear of the marks in common use (kube-proxy 0x4000/0x8000, Tailscale
/// 0xff0000, Mullvad 0xf41, wg-quick 0xca6c). A tool that overwrites the
/// whole ct mark clears it, which fails closed: the connection is cut
/// when its grant ends, as with `--no-keep-established`.
pub const GRANT_MARK: u32 = 0x0100_0000;

/// What a kernel backend protects and how (`--port`, `--no-keep-established`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallOptions {
    /// TCP ports dropped for everyone without a grant (one today; SPA may
    /// protect several). Duplicates are ignored; an empty list protects nothing.
    pub ports: Vec<u16>,
    /// UDP ports dropped for everyone without a grant (a door's `udp/N`,
    /// e.g. WireGuard). A port number is in one of the two lists only (the
    /// config refuses `tcp/N` beside `udp/N`): a grant is (address, port
    /// number) and the kernel backends' rules give it the port's protocol.
    pub udp_ports: Vec<u16>,
    /// Let connections that a grant accepted (and those related to one)
    /// survive the end of their grant, as knockd users expect for SSH. Only
    /// connections carrying [`GRANT_MARK`] ride this; a stranger's
    /// connection that got in while someone had flushed our rules does not.
    pub keep_established: bool,
    /// Which table/chain is ours (`--instance`).
    pub instance: Instance,
    /// Where iptables' jump goes in INPUT.
    pub position: Position,
    /// How the protected ports answer a stranger (`--deny`).
    pub deny: Deny,
    /// The NFLOG capture rule the kernel backends install beside their
    /// own (`None`: none; the userspace backend ignores it).
    pub capture: Option<NflogRule>,
}

impl FirewallOptions {
    /// Protects `ports`, keeping established connections.
    pub fn new(ports: impl Into<Vec<u16>>) -> Self {
        Self {
            ports: ports.into(),
            udp_ports: Vec::new(),
            keep_established: true,
            instance: Instance::default(),
            position: Position::First,
            deny: Deny::Reset,
            capture: None,
        }
    }

    /// The protected TCP ports, sorted, without duplicates.
    pub fn unique_ports(&self) -> Vec<u16> {
        sorted(&self.ports)
    }

    /// The protected UDP ports, sorted, without duplicates.
    pub fn unique_udp_ports(&self) -> Vec<u16> {
        sorted(&self.udp_ports)
    }

    /// The protected ports of each protocol that has any, as (`tcp` or
    /// `udp`, sorted ports), TCP first: what the kernel backends write a
    /// rule for per protocol.
    pub fn protocols(&self) -> Vec<(&'static str, Vec<u16>)> {
        [
            ("tcp", self.unique_ports()),
            ("udp", self.unique_udp_ports()),
        ]
        .into_iter()
        .filter(|(_, ports)| !ports.is_empty())
        .collect()
    }

    /// The protocol `port` is protected under: `udp` if it is one of the
    /// UDP ports, else `tcp` (a grant of a port not protected at all, which
    /// the daemon never makes, gets the seed's TCP).
    pub fn proto_of(&self, port: u16) -> &'static str {
        if self.udp_ports.contains(&port) {
            "udp"
        } else {
            "tcp"
        }
    }
}

fn sorted(ports: &[u16]) -> Vec<u16> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// One change to what the firewall lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Let `ip` reach `port` for `ttl` (renews an open grant).
    Grant {
        /// Source address to let in.
        ip: IpAddr,
        /// Protected TCP port.
        port: u16,
        /// How long access lasts.
        ttl: Duration,
    },
    /// Stop letting `ip` reach `port`.
    Revoke {
        /// Source address to shut out again.
        ip: IpAddr,
        /// Protected TCP port.
        port: u16,
    },
}

/// A firewall backend failure, with what was run and what it said.
#[derive(Debug, Error)]
pub enum FirewallError {
    /// The backend needs CAP_NET_ADMIN and the process lacks it.
    #[error("{backend} backend needs CAP_NET_ADMIN: run as root, or use --firewall userspace")]
    NeedsPrivilege {
        /// The backend's name.
        backend: &'static str,
    },
    /// The tool the backend drives is not installed.
    #[error(
        "{backend} backend needs the '{tool}' command, which was not found: install it, or use --firewall userspace"
    )]
    ToolMissing {
        /// The backend's name.
        backend: &'static str,
        /// The missing program.
        tool: &'static str,
    },
    /// The backend is not available in this build.
    #[error("{backend} backend is not built yet: use --firewall userspace")]
    NotBuilt {
        /// The backend's name.
        backend: &'static str,
    },
    /// A firewall command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line that was run.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An I/O error talking to the firewall.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A firewall backend: sets up default-drop for the protected ports, opens
/// and closes access per source IP, and removes everything it added.
pub trait Firewall: Send {
    /// The backend's name, for logs.
    fn name(&self) -> &'static str;

    /// Idempotent: creates the backend's own rules, removing leftovers of an
    /// earlier crash. A failed setup leaves nothing behind.
    fn setup(&mut self) -> Result<(), FirewallError>;

    /// Lets `ip` reach `port` for `ttl`; renews an open grant.
    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError>;

    /// Stops letting `ip` reach `port`. Revoking what is not open is not an error.
    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError>;

    /// Removes everything the backend created.
    fn teardown(&mut self) -> Result<(), FirewallError>;

    /// What is missing from the rules this backend set up and granted, as
    /// one short description each (empty: intact). Backends that cannot be
    /// changed behind their back (userspace) have nothing to check.
    fn verify(&mut self) -> Result<Vec<String>, FirewallError> {
        Ok(Vec::new())
    }

    /// Which of the `live` grants (each with its remaining time) the kernel
    /// lacks although the structure is intact, e.g. after someone flushed
    /// nftables' sets. Backends that check grants in [`Firewall::verify`]
    /// (iptables) or hold none in the kernel return nothing.
    fn missing_grants(&mut self, live: &[Change]) -> Result<Vec<Change>, FirewallError> {
        let _ = live;
        Ok(Vec::new())
    }

    /// How often the worker verifies when nothing prompts it (`None`: never).
    fn verify_every(&self) -> Option<Duration> {
        None
    }

    /// A kernel notification source that tells when our rules may have been
    /// changed by someone else (`None`: rely on the periodic check).
    fn monitor(&mut self) -> Result<Option<nftables::NftMonitor>, FirewallError> {
        Ok(None)
    }

    /// Protects the TCP `ports` and the `udp_ports` from now on instead of
    /// the ports it was set up with (a reload). Returns whether the open
    /// grants survived; if not, the worker applies every live grant again.
    /// On error the old ports stay protected. Backends that cannot do it
    /// refuse.
    fn reconfigure(&mut self, ports: &[u16], udp_ports: &[u16]) -> Result<bool, FirewallError> {
        let _ = (ports, udp_ports);
        Err(FirewallError::Io {
            context: format!(
                "the {} backend cannot change its protected ports while running",
                self.name()
            ),
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        })
    }

    /// Replaces the NFLOG capture rule (`None`: removes it) at once, and
    /// keeps the new one: setup and every repair install it from then on
    /// (a reload whose doors changed their knock ports). The backend must
    /// be set up. Backends without kernel rules refuse: NFLOG capture needs
    /// a kernel backend.
    fn set_capture(&mut self, capture: Option<NflogRule>) -> Result<(), FirewallError> {
        let _ = capture;
        Err(FirewallError::Io {
            context: format!(
                "the {} backend has no NFLOG capture rule: NFLOG capture needs --firewall nftables or iptables",
                self.name()
            ),
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        })
    }

    /// Applies a batch of changes in order; one result per change. Backends
    /// that can apply a batch at once override this.
    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        changes
            .iter()
            .map(|change| match *change {
                Change::Grant { ip, port, ttl } => self.grant(ip, port, ttl),
                Change::Revoke { ip, port } => self.revoke(ip, port),
            })
            .collect()
    }
}

/// Which backend the server uses (`--firewall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirewallKind {
    /// nftables where usable, else iptables, else userspace.
    #[default]
    Auto,
    /// The built-in gate; no privileges needed.
    Userspace,
    /// iptables/ip6tables rules in a chain of our own.
    Iptables,
    /// An nftables table of our own with kernel timeouts.
    Nftables,
}

impl FirewallKind {
    /// Every kind and its name, as `--firewall` and the config file say it
    /// (the order of the help): the one place the names are spelled.
    pub const NAMED: [(&'static str, FirewallKind); 4] = [
        ("auto", FirewallKind::Auto),
        ("userspace", FirewallKind::Userspace),
        ("iptables", FirewallKind::Iptables),
        ("nftables", FirewallKind::Nftables),
    ];
    /// The names of [`FirewallKind::NAMED`].
    pub const NAMES: [&'static str; 4] = names(Self::NAMED);
}

impl fmt::Display for FirewallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMED, *self))
    }
}

impl FromStr for FirewallKind {
    type Err = UnknownName;

    /// Parses a name of [`FirewallKind::NAMES`] (exact, lower case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        value_of(&Self::NAMED, text)
            .ok_or_else(|| UnknownName::new("firewall backend", text, &Self::NAMES))
    }
}

impl Position {
    /// Every position and its name, as `--iptables-position` and the
    /// config file say it.
    pub const NAMED: [(&'static str, Position); 2] =
        [("first", Position::First), ("last", Position::Last)];
    /// The names of [`Position::NAMED`].
    pub const NAMES: [&'static str; 2] = names(Self::NAMED);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMED, *self))
    }
}

impl FromStr for Position {
    type Err = UnknownName;

    /// Parses `first` or `last` (exact, lower case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        value_of(&Self::NAMED, text)
            .ok_or_else(|| UnknownName::new("iptables position", text, &Self::NAMES))
    }
}

/// How a kernel backend answers a packet to a protected port from an
/// address without a grant (`--deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deny {
    /// Like a closed port, so a scan sees it as one among its closed
    /// neighbours: a TCP RST (nftables `reject with tcp reset`, iptables
    /// `REJECT --reject-with tcp-reset`), ICMP port-unreachable for a
    /// protected UDP port. The userspace gate answers so too. The default.
    #[default]
    Reset,
    /// Silence: for hosts whose policy drops everything, where a RST
    /// would be the odd one out.
    Drop,
}

impl Deny {
    /// Every answer and its name, as `--deny` and the config file say it:
    /// `reject` is an alias of `reset` (the word of earlier versions).
    pub const NAMED: [(&'static str, Deny); 3] = [
        ("reset", Deny::Reset),
        ("drop", Deny::Drop),
        ("reject", Deny::Reset),
    ];
    /// The names of [`Deny::NAMED`].
    pub const NAMES: [&'static str; 3] = names(Self::NAMED);
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMED, *self))
    }
}

impl FromStr for Deny {
    type Err = UnknownName;

    /// Parses `reset`, `drop` or `reject` (exact, lower case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        value_of(&Self::NAMED, text).ok_or_else(|| UnknownName::new("deny", text, &Self::NAMES))
    }
}

/// The names of a name table, in order.
const fn names<T: Copy, const N: usize>(named: [(&'static str, T); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = named[i].0;
        i += 1;
    }
    out
}

/// The name of `value` in a name table that lists every value.
fn name_of<T: PartialEq>(named: &[(&'static str, T)], value: T) -> &'static str {
    named
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(name, _)| name)
}

/// The value named exactly `text`, if any.
fn value_of<T: Copy>(named: &[(&'static str, T)], text: &str) -> Option<T> {
    named
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
}

/// A name that is none of a firewall setting's values ([`FirewallKind`],
/// [`Position`]); the message lists the values that are.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} '{given}': expected one of {expected}")]
pub struct UnknownName {
    /// What was being named.
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

impl UnknownName {
    fn new(what: &'static str, given: &str, names: &[&str]) -> Self {
        Self {
            what,
            given: given.to_owned(),
            expected: names.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_position_reads_back_its_own_name() {
        for name in FirewallKind::NAMES {
            assert_eq!(name.parse::<FirewallKind>().unwrap().to_string(), name);
        }
        for name in Position::NAMES {
            assert_eq!(name.parse::<Position>().unwrap().to_string(), name);
        }
        assert_eq!("nftables".parse(), Ok(FirewallKind::Nftables));
        assert_eq!("last".parse(), Ok(Position::Last));
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_names_that_exist() {
        let err = "pf".parse::<FirewallKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown firewall backend 'pf': expected one of auto, userspace, iptables, nftables"
        );
        let err = "First".parse::<Position>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown iptables position 'First': expected one of first, last"
        );
        assert!("".parse::<FirewallKind>().is_err());
    }
}
