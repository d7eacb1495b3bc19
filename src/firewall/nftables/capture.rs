//! The NFLOG capture rule in nftables: a chain `capture` in our own table,
//! so setup creates it, teardown removes it with the table, the monitor
//! that watches the table sees it deleted, and a crash leaves it where the
//! next setup replaces it. Pure text, checked in `tests.rs`.
//!
//! ```text
//! chain capture {
//!     type filter hook prerouting priority raw; policy accept;
//!     [iifname { "eth0" }] fib daddr type local udp dport { 1234, 5678 } log group N snaplen S
//!     [iifname { "eth0" }] fib daddr type local tcp dport { 9012 } tcp flags & (syn | ack) == syn log group N snaplen S
//! }
//! ```
//!
//! Why so: priority `raw` (-300) runs after defragmentation (-400) and
//! before conntrack (-200) and every filter chain (0), so a knock is logged
//! even when the admin's own input chain drops it, and a fragmented SPA
//! packet arrives whole. `fib daddr type local` keeps routed traffic and
//! broadcasts to other hosts out (the nft form of `-m addrtype --dst-type
//! LOCAL`). `log` does not end the chain and the policy accepts: the
//! packet goes on to the host's own answer (a port-unreachable, a reset,
//! or the admin's drop), exactly as on a port nobody knocks on. A chain
//! of our own table, not a separate table: one object to set up, watch,
//! verify and remove, under the instance's name.

use std::fmt::Write as _;

use crate::capture::nflog::NflogRule;

/// Our capture chain's name in the instance's table.
pub const CHAIN: &str = "capture";
/// The chain's hook line, as `nft` prints it.
const HOOK: &str = "type filter hook prerouting priority raw; policy accept;";

/// The rules of the capture chain (none when `rule` captures nothing).
pub fn rules(rule: &NflogRule) -> Vec<String> {
    let spec = &rule.spec;
    let iif = match spec.interfaces.as_slice() {
        [] => String::new(),
        names => {
            let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
            format!("iifname {{ {} }} ", quoted.join(", "))
        }
    };
    let log = format!("log group {} snaplen {}", rule.group, rule.snaplen);
    let list = |ports: &[u16]| {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        ports.join(", ")
    };
    let mut out = Vec::new();
    if !spec.udp_ports.is_empty() {
        out.push(format!(
            "{iif}fib daddr type local udp dport {{ {} }} {log}",
            list(&spec.udp_ports)
        ));
    }
    if !spec.tcp_ports.is_empty() {
        out.push(format!(
            "{iif}fib daddr type local tcp dport {{ {} }} tcp flags & (syn | ack) == syn {log}",
            list(&spec.tcp_ports)
        ));
    }
    out
}

/// The chain as it goes inside `table { ... }` of the setup transaction;
/// empty when there is nothing to capture.
pub fn chain(rule: Option<&NflogRule>) -> String {
    let Some(rule) = rule.filter(|rule| !rule.is_empty()) else {
        return String::new();
    };
    let mut out = format!("\tchain {CHAIN} {{\n\t\t{HOOK}\n");
    for line in rules(rule) {
        let _ = writeln!(out, "\t\t{line}");
    }
    out.push_str("\t}\n");
    out
}

/// One transaction that replaces the capture chain of `table` (`inet
/// NAME`) with `rule`'s, or removes it (`None`, or nothing to capture),
/// leaving the rest of the table as it is.
pub fn replace_script(table: &str, rule: Option<&NflogRule>) -> String {
    let chain = format!("{table} {CHAIN}");
    let mut out = format!("add chain {chain} {{ {HOOK} }}\n");
    match rule.filter(|rule| !rule.is_empty()) {
        Some(rule) => {
            let _ = writeln!(out, "flush chain {chain}");
            for line in rules(rule) {
                let _ = writeln!(out, "add rule {chain} {line}");
            }
        }
        None => {
            let _ = writeln!(out, "delete chain {chain}");
        }
    }
    out
}

/// What is missing of the capture chain in `listing` (`nft -t list
/// table`), as [`super::missing_parts`] words it for `table`. Empty:
/// intact, or nothing to capture.
pub fn missing(listing: &str, rule: Option<&NflogRule>, table: &str) -> Vec<String> {
    let Some(rule) = rule.filter(|rule| !rule.is_empty()) else {
        return Vec::new();
    };
    let mut lines = listing.lines().map(str::trim);
    let head = format!("chain {CHAIN} {{");
    if !lines.any(|line| line == head) {
        return vec![format!("{table} chain {CHAIN}")];
    }
    let body: Vec<&str> = lines.take_while(|line| *line != "}").collect();
    let mut missing = Vec::new();
    if !body.contains(&HOOK) {
        missing.push(format!("{table} chain {CHAIN} hook"));
    }
    let found = body
        .iter()
        .filter(|line| !line.is_empty() && !line.starts_with("type "))
        .filter(|line| line.contains(&format!("log group {}", rule.group)))
        .count();
    let expected = rules(rule).len();
    if found < expected {
        missing.push(format!(
            "{table} chain {CHAIN}: {found} of {expected} rules"
        ));
    }
    missing
}

#[cfg(test)]
mod tests;
