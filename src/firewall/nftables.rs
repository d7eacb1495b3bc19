//! The nftables backend: a table of our own whose sets carry kernel
//! timeouts, so access ends on time even if the server is killed.
//!
//! Layout (see [`ruleset`]): table `inet portknock` (`inet
//! portknock-<instance>` for `--instance`) with sets `allowed_v4`
//! (`ipv4_addr . inet_service`) and `allowed_v6` (`ipv6_addr .
//! inet_service`), both `flags timeout`, and one `input` chain that accepts
//! established traffic to the protected ports (unless turned off), accepts
//! `saddr . dport` found in a set, and answers the rest on the protected
//! ports like a closed port (`reject with tcp reset`, ICMP port-unreachable
//! for UDP) or, with `--deny drop`, drops it; each per protocol (`tcp dport`, and `udp dport` when UDP ports are protected).
//! The sets are shared: a port number is protected under one protocol
//! only, so an element opens it under that one.
//! With an NFLOG capture rule ([`FirewallOptions::capture`]) the table
//! also has a chain `capture` hooked at prerouting priority raw that logs
//! knock-port packets and lets them continue (see [`capture`]).
//!
//! A grant adds the element with the access duration as its timeout. Setup
//! and teardown are one `nft -f` transaction each; grants and revokes are
//! set-element messages on one nf_tables netlink socket the backend owns
//! (the private `netlink` module): no process, no text parser, one transaction
//! per batch. Each change is the same three steps as the text commands of
//! [`change_commands`]: `add; delete; add ... timeout` refreshes the timeout
//! of an open grant on every kernel (a plain `add` of an existing element
//! keeps its old timeout on older kernels), and `add; delete` revokes
//! without failing when the element is already gone. A batch does the
//! three steps once per set with every element in each message.
//!
//! Ordering: the `input` chain hooks at priority `filter` (0). Our reject
//! (or drop) of the protected ports is final; our accept of a grant ends only our chain,
//! so a drop in one of the admin's own base chains still wins.
//!
//! Someone else deleting or flushing our table is noticed at once through
//! [`NftMonitor`] and repaired without further ado (nothing but our
//! own setup deletes in our table). The periodic safety net reads the table
//! (`nft -t list table`, sets without their elements) and [`missing_parts`]
//! says what is gone. Deleted set elements (`nft flush set`, which locks a
//! granted user out) are noticed too: [`absent_grants`] compares the sets'
//! elements with the live grants, and the worker re-adds the missing ones
//! with their remaining time.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod capture;
mod monitor;
mod netlink;

use super::{Change, Deny, Firewall, FirewallError, FirewallOptions, GRANT_MARK, system};
use crate::capture::nflog::NflogRule;
pub use monitor::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftMonitor, Notice, Watch};
use netlink::NftNetlink;

/// Family and name of the default instance's table.
pub const TABLE: &str = "inet portknock";
/// How often the table is verified when no notification prompts it: a
/// safety net, since deletions are announced at once.
pub const VERIFY_EVERY: Duration = Duration::from_secs(10);
/// Set of allowed `ipv4_addr . inet_service`.
pub const SET_V4: &str = "allowed_v4";
/// Set of allowed `ipv6_addr . inet_service`.
pub const SET_V6: &str = "allowed_v6";

/// The full ruleset, as an `nft -f` transaction that replaces our table
/// (creating it first so the delete never fails).
pub fn ruleset(options: &FirewallOptions) -> String {
    let table = format!("inet {}", options.instance.nft_table());
    let mut out = String::new();
    let _ = writeln!(out, "table {table}\ndelete table {table}\ntable {table} {{");
    for (set, ty) in [(SET_V4, "ipv4_addr"), (SET_V6, "ipv6_addr")] {
        let _ = writeln!(
            out,
            "\tset {set} {{\n\t\ttype {ty} . inet_service\n\t\tflags timeout\n\t}}"
        );
    }
    out.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
    for rule in chain_rules(options) {
        let _ = writeln!(out, "\t\t{rule}");
    }
    out.push_str("\t}\n");
    out.push_str(&capture::chain(options.capture.as_ref()));
    out.push_str("}\n");
    out
}

/// The established rule's test of [`GRANT_MARK`], as `nft` prints it.
fn mark_match() -> String {
    format!("ct mark & {GRANT_MARK:#010x} == {GRANT_MARK:#010x}")
}

/// The rules of our `input` chain, in order. With `keep_established` a
/// grant's accept marks the connection and the established rule asks for
/// the mark; without it, nothing reads the mark and nothing sets it.
///
/// Per protocol with protected ports (TCP first, then UDP): the
/// established rule, then the grant rules, then the drop; the TCP grant
/// rules are there even with no port at all (the seed's layout). The sets
/// are shared: an element `addr . port` opens that port under the one
/// protocol it is protected with.
fn chain_rules(options: &FirewallOptions) -> Vec<String> {
    let protocols: Vec<(&str, String)> = options
        .protocols()
        .into_iter()
        .map(|(proto, ports)| {
            let list = ports.iter().map(u16::to_string).collect::<Vec<_>>();
            (proto, list.join(", "))
        })
        .collect();
    let keep = options.keep_established && !protocols.is_empty();
    let mut rules = Vec::new();
    if keep {
        for (proto, ports) in &protocols {
            rules.push(format!(
                "{proto} dport {{ {ports} }} ct state established,related {} accept",
                mark_match()
            ));
        }
    }
    let mark = if keep {
        format!("ct mark set ct mark | {GRANT_MARK:#010x} ")
    } else {
        String::new()
    };
    let mut granted: Vec<&str> = protocols.iter().map(|(proto, _)| *proto).collect();
    if granted.first() != Some(&"tcp") {
        granted.insert(0, "tcp");
    }
    for proto in granted {
        rules.push(format!("ip saddr . {proto} dport @{SET_V4} {mark}accept"));
        rules.push(format!("ip6 saddr . {proto} dport @{SET_V6} {mark}accept"));
    }
    for (proto, ports) in &protocols {
        rules.push(format!(
            "{proto} dport {{ {ports} }} {}",
            deny_verdict(options.deny, proto)
        ));
    }
    rules
}

/// The last rule's verdict for `proto`'s protected ports: a closed port's
/// answer (`reject with tcp reset`; plain `reject`, in the `inet` family
/// ICMP or ICMPv6 port-unreachable, for UDP), or silence.
fn deny_verdict(deny: Deny, proto: &str) -> &'static str {
    match (deny, proto) {
        (Deny::Drop, _) => "drop",
        (Deny::Reset, "tcp") => "reject with tcp reset",
        (Deny::Reset, _) => "reject",
    }
}

/// One transaction that replaces the rules of our `input` chain with
/// those of `options`, leaving the sets (the open grants) as they are.
pub fn rechain_script(options: &FirewallOptions) -> String {
    let chain = format!("inet {} input", options.instance.nft_table());
    let mut out = format!("flush chain {chain}\n");
    for rule in chain_rules(options) {
        let _ = writeln!(out, "add rule {chain} {rule}");
    }
    out
}

/// The transaction that deletes our table, without failing if it is gone.
pub fn teardown_script(options: &FirewallOptions) -> String {
    let table = format!("inet {}", options.instance.nft_table());
    format!("table {table}\ndelete table {table}\n")
}

/// How many rules [`ruleset`] puts in the `input` chain.
fn expected_rules(options: &FirewallOptions) -> usize {
    chain_rules(options).len()
}

/// What is missing from our table, given its terse listing (`nft -t list
/// table`; `None` when the table is gone). Empty: intact.
pub fn missing_parts(listing: Option<&str>, options: &FirewallOptions) -> Vec<String> {
    let table = format!("table inet {}", options.instance.nft_table());
    let Some(listing) = listing else {
        return vec![table];
    };
    let mut missing = capture::missing(listing, options.capture.as_ref(), &table);
    for set in [SET_V4, SET_V6] {
        if !listing.contains(&format!("set {set} {{")) {
            missing.push(format!("{table} set {set}"));
        }
    }
    let mut lines = listing.lines().map(str::trim);
    if !lines.any(|line| line == "chain input {") {
        missing.push(format!("{table} chain input"));
        return missing;
    }
    let body: Vec<&str> = lines.take_while(|line| *line != "}").collect();
    if !body
        .iter()
        .any(|line| line.starts_with("type filter hook input"))
    {
        missing.push(format!("{table} chain input hook"));
    }
    let rules = body
        .iter()
        .filter(|line| !line.is_empty() && !line.starts_with("type "))
        .count();
    let expected = expected_rules(options);
    if rules < expected {
        missing.push(format!(
            "{table} chain input: {} of {expected} rules",
            rules
        ));
    }
    if options.keep_established && !options.protocols().is_empty() {
        missing.extend(unmarked_rules(&body, &table));
    }
    missing
}

/// The rules of `body` (our chain's lines) that lost their part in
/// [`GRANT_MARK`]: an established rule that does not ask for the mark would
/// let a stranger's connection ride it; a grant rule that does not set it
/// would cut the granted user's connections at the grant's end.
fn unmarked_rules(body: &[&str], table: &str) -> Vec<String> {
    let established = mark_match();
    let mut missing = Vec::new();
    for line in body
        .iter()
        .filter(|line| line.contains("ct state established"))
    {
        if !line.contains(&established) {
            missing.push(format!("{table} chain input: the grant mark in `{line}`"));
        }
    }
    let set_mark = format!("ct mark set ct mark | {GRANT_MARK:#010x}");
    for set in [SET_V4, SET_V6] {
        let at = format!("@{set}");
        for line in body.iter().filter(|line| line.contains(&at)) {
            if !line.contains(&set_mark) {
                missing.push(format!("{table} chain input: the grant mark in `{line}`"));
            }
        }
    }
    missing
}

/// The `address . port` elements of every set in `listing` (`nft list
/// table`, with elements); items that do not parse are skipped.
pub fn set_elements(listing: &str) -> HashSet<(IpAddr, u16)> {
    let mut found = HashSet::new();
    let mut rest = listing;
    while let Some(start) = rest.find("elements = {") {
        rest = &rest[start + "elements = {".len()..];
        let end = rest.find('}').unwrap_or(rest.len());
        for item in rest[..end].split(',') {
            let mut words = item.split_whitespace();
            let (Some(ip), Some("."), Some(port)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            if let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) {
                found.insert((ip.to_canonical(), port));
            }
        }
        rest = &rest[end..];
    }
    found
}

/// The grants of `live` whose element is not in `listing` (`nft list
/// table`, with elements): what someone else removed.
pub fn absent_grants(listing: &str, live: &[Change]) -> Vec<Change> {
    let present = set_elements(listing);
    live.iter()
        .filter(|change| match **change {
            Change::Grant { ip, port, .. } => !present.contains(&(ip.to_canonical(), port)),
            Change::Revoke { .. } => false,
        })
        .copied()
        .collect()
}

fn element(ip: IpAddr, port: u16) -> (&'static str, String) {
    match ip.to_canonical() {
        ip @ IpAddr::V4(_) => (SET_V4, format!("{ip} . {port}")),
        ip @ IpAddr::V6(_) => (SET_V6, format!("{ip} . {port}")),
    }
}

/// The `nft` commands (one transaction) for one change, as text: what the
/// netlink path sends for it, and what an operator would type. A zero ttl
/// revokes.
pub fn change_commands(change: &Change) -> String {
    match *change {
        Change::Grant { ip, port, ttl } if !ttl.is_zero() => {
            let (set, elem) = element(ip, port);
            // Whole milliseconds, at least one: nft rejects a zero timeout.
            let ms = ttl.as_millis().max(1);
            format!(
                "add element {TABLE} {set} {{ {elem} timeout {ms}ms }}; \
                 delete element {TABLE} {set} {{ {elem} }}; \
                 add element {TABLE} {set} {{ {elem} timeout {ms}ms }}"
            )
        }
        Change::Grant { ip, port, .. } | Change::Revoke { ip, port } => {
            let (set, elem) = element(ip, port);
            format!(
                "add element {TABLE} {set} {{ {elem} }}; delete element {TABLE} {set} {{ {elem} }}"
            )
        }
    }
}

/// The nftables backend.
#[derive(Debug)]
pub struct NftablesFirewall {
    options: FirewallOptions,
    /// The element socket, opened on first use (in the namespace of the
    /// thread that applies changes) and reopened after an I/O failure.
    netlink: Option<NftNetlink>,
    /// The `nft` program to run.
    program: String,
}

impl NftablesFirewall {
    /// The tool the backend runs.
    pub const TOOL: &'static str = "nft";

    /// Checks CAP_NET_ADMIN and that `nft` exists; touches nothing yet.
    pub fn new(options: FirewallOptions) -> Result<Self, FirewallError> {
        system::require("nftables", &[Self::TOOL])?;
        Ok(Self::unchecked(options))
    }

    /// Skips the checks (tests that know the tool is there).
    pub fn unchecked(options: FirewallOptions) -> Self {
        Self {
            options,
            netlink: None,
            program: Self::TOOL.to_string(),
        }
    }

    /// Runs `nft` from `dir` instead of `PATH` (a non-standard layout, or
    /// tests that put a failing tool in the way).
    pub fn with_tool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program = dir.into().join(Self::TOOL).to_string_lossy().into_owned();
        self
    }

    /// Whether nftables works here: `nft list tables` succeeds (the kernel
    /// has nf_tables and we may use it). Used by `--firewall auto`.
    pub fn probe() -> Result<(), FirewallError> {
        system::run(Self::TOOL, &["list", "tables"], "").map(drop)
    }

    /// Runs one `nft -f` transaction.
    fn transaction(&self, script: &str) -> Result<(), FirewallError> {
        system::run(&self.program, &["-f", "-"], script).map(drop)
    }

    /// Applies changes to the sets as one netlink transaction.
    fn elements(&mut self, changes: &[Change]) -> Result<(), FirewallError> {
        let netlink = match &mut self.netlink {
            Some(netlink) => netlink,
            None => self
                .netlink
                .insert(NftNetlink::open(&self.options.instance.nft_table())?),
        };
        let result = netlink.apply(changes);
        if let Err(FirewallError::Io { .. }) = result {
            // Unknown state of the socket (unread answers): start afresh.
            self.netlink = None;
        }
        result
    }
}

impl Firewall for NftablesFirewall {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        self.transaction(&ruleset(&self.options)).inspect_err(|_| {
            // The transaction left the old table, if any: remove it too.
            let _ = self.transaction(&teardown_script(&self.options));
        })
    }

    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        self.elements(&[Change::Grant { ip, port, ttl }])
    }

    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.elements(&[Change::Revoke { ip, port }])
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.transaction(&teardown_script(&self.options))
    }

    /// One transaction: the chain's rules change, the sets (grants) stay.
    fn reconfigure(&mut self, ports: &[u16], udp_ports: &[u16]) -> Result<bool, FirewallError> {
        let mut options = self.options.clone();
        options.ports = ports.to_vec();
        options.udp_ports = udp_ports.to_vec();
        self.transaction(&rechain_script(&options))?;
        self.options = options;
        Ok(true)
    }

    /// One transaction: the capture chain changes, the rest stays.
    fn set_capture(&mut self, capture: Option<NflogRule>) -> Result<(), FirewallError> {
        let table = format!("inet {}", self.options.instance.nft_table());
        self.transaction(&capture::replace_script(&table, capture.as_ref()))?;
        self.options.capture = capture;
        Ok(())
    }

    fn verify(&mut self) -> Result<Vec<String>, FirewallError> {
        let table = self.options.instance.nft_table();
        let listing = match system::run(&self.program, &["-t", "list", "table", "inet", &table], "")
        {
            Ok(listing) => Some(listing),
            // The table is gone (or unreadable): setup recreates it.
            Err(FirewallError::Command { .. }) => None,
            Err(err) => return Err(err),
        };
        Ok(missing_parts(listing.as_deref(), &self.options))
    }

    fn missing_grants(&mut self, live: &[Change]) -> Result<Vec<Change>, FirewallError> {
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let table = self.options.instance.nft_table();
        match system::run(&self.program, &["list", "table", "inet", &table], "") {
            Ok(listing) => Ok(absent_grants(&listing, live)),
            // The table is gone: the structural check repairs everything.
            Err(FirewallError::Command { .. }) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    fn verify_every(&self) -> Option<Duration> {
        Some(VERIFY_EVERY)
    }

    fn monitor(&mut self) -> Result<Option<NftMonitor>, FirewallError> {
        NftMonitor::open(vec![Watch {
            family: NFPROTO_INET,
            table: self.options.instance.nft_table(),
            owned: true,
        }])
        .map(Some)
    }

    /// The whole batch as one netlink transaction; if it fails, nothing
    /// of it was applied and each change is retried alone for its result.
    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        if changes.len() > 1 && self.elements(changes).is_ok() {
            return changes.iter().map(|_| Ok(())).collect();
        }
        changes
            .iter()
            .map(|change| self.elements(std::slice::from_ref(change)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
