//! The nftables backend: a table of our own whose sets carry kernel
//! timeouts, so access ends on time even if the server is killed.
//!
//! Layout (see [`ruleset`]): table `inet portknock` with sets `allowed_v4`
//! (`ipv4_addr . inet_service`) and `allowed_v6` (`ipv6_addr .
//! inet_service`), both `flags timeout`, and one `input` chain that accepts
//! established traffic to the protected ports (unless turned off), accepts
//! `saddr . dport` found in a set, and drops the protected ports.
//!
//! A grant adds the element with the access duration as its timeout. Setup
//! and teardown are one `nft -f` transaction each; grants and revokes go
//! through one long-lived `nft -i` session (no process per grant). Each
//! change is one line whose commands commit together:
//! `add; delete; add ... timeout` refreshes the timeout of an open grant on
//! every kernel (a plain `add` of an existing element keeps its old timeout
//! on older kernels), and `add; delete` revokes without failing when the
//! element is already gone. A batch of changes is the same three steps
//! with every element of a set in one statement ([`batch_commands`]): nft
//! parses and commits 1024 grants as three statements in about 10 ms, but
//! as 3072 statements in about 60 ms, which capped the grant rate near
//! 17 000/s. Batches go through `nft -f` (see `apply`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::nft_session::NftSession;
use super::{Change, Firewall, FirewallError, FirewallOptions, system};

/// Family and name of our table.
pub const TABLE: &str = "inet portknock";
/// Set of allowed `ipv4_addr . inet_service`.
pub const SET_V4: &str = "allowed_v4";
/// Set of allowed `ipv6_addr . inet_service`.
pub const SET_V6: &str = "allowed_v6";

/// The full ruleset, as an `nft -f` transaction that replaces our table
/// (creating it first so the delete never fails).
pub fn ruleset(options: &FirewallOptions) -> String {
    let ports = options
        .unique_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = String::new();
    let _ = writeln!(out, "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{");
    for (set, ty) in [(SET_V4, "ipv4_addr"), (SET_V6, "ipv6_addr")] {
        let _ = writeln!(
            out,
            "\tset {set} {{\n\t\ttype {ty} . inet_service\n\t\tflags timeout\n\t}}"
        );
    }
    out.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
    if options.keep_established && !ports.is_empty() {
        let _ = writeln!(
            out,
            "\t\ttcp dport {{ {ports} }} ct state established,related accept"
        );
    }
    let _ = writeln!(out, "\t\tip saddr . tcp dport @{SET_V4} accept");
    let _ = writeln!(out, "\t\tip6 saddr . tcp dport @{SET_V6} accept");
    if !ports.is_empty() {
        let _ = writeln!(out, "\t\ttcp dport {{ {ports} }} drop");
    }
    out.push_str("\t}\n}\n");
    out
}

/// The transaction that deletes our table, without failing if it is gone.
pub fn teardown_script() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}

fn element(ip: IpAddr, port: u16) -> (&'static str, String) {
    match ip.to_canonical() {
        ip @ IpAddr::V4(_) => (SET_V4, format!("{ip} . {port}")),
        ip @ IpAddr::V6(_) => (SET_V6, format!("{ip} . {port}")),
    }
}

/// The commands (one transaction) for one change. A zero ttl revokes.
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

/// The commands (one transaction) for a batch of changes: per set, one
/// `add` of every element touched, one `delete` of them, one `add` of the
/// granted ones with their timeouts. When a batch changes one element
/// twice, the last change wins (as if applied in order).
pub fn batch_commands(changes: &[Change]) -> String {
    // Final state of each element, in order of first appearance.
    let mut last: Vec<(&'static str, String, u128)> = Vec::with_capacity(changes.len());
    let mut index = std::collections::HashMap::with_capacity(changes.len());
    for change in changes {
        let (ip, port, ms) = match *change {
            Change::Grant { ip, port, ttl } => {
                (ip, port, ttl.as_millis().max(u128::from(!ttl.is_zero())))
            }
            Change::Revoke { ip, port } => (ip, port, 0),
        };
        let (set, elem) = element(ip, port);
        match index.get(&(set, elem.clone())) {
            Some(&i) => last[i] = (set, elem, ms),
            None => {
                index.insert((set, elem.clone()), last.len());
                last.push((set, elem, ms));
            }
        }
    }
    let mut out = Vec::new();
    for set in [SET_V4, SET_V6] {
        let touched: Vec<&str> = last
            .iter()
            .filter(|(s, ..)| *s == set)
            .map(|(_, e, _)| e.as_str())
            .collect();
        if touched.is_empty() {
            continue;
        }
        let all = touched.join(", ");
        out.push(format!("add element {TABLE} {set} {{ {all} }}"));
        out.push(format!("delete element {TABLE} {set} {{ {all} }}"));
        let granted: Vec<String> = last
            .iter()
            .filter(|(s, _, ms)| *s == set && *ms > 0)
            .map(|(_, e, ms)| format!("{e} timeout {ms}ms"))
            .collect();
        if !granted.is_empty() {
            out.push(format!(
                "add element {TABLE} {set} {{ {} }}",
                granted.join(", ")
            ));
        }
    }
    out.join("; ")
}

/// The nftables backend.
#[derive(Debug)]
pub struct NftablesFirewall {
    options: FirewallOptions,
    session: NftSession,
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
            session: NftSession::new(Self::TOOL),
            program: Self::TOOL.to_string(),
        }
    }

    /// Runs `nft` from `dir` instead of `PATH` (a non-standard layout, or
    /// tests that put a failing tool in the way).
    pub fn with_tool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program = dir.into().join(Self::TOOL).to_string_lossy().into_owned();
        self.session = NftSession::new(&self.program);
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
}

impl Firewall for NftablesFirewall {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        self.transaction(&ruleset(&self.options)).inspect_err(|_| {
            // The transaction left the old table, if any: remove it too.
            let _ = self.transaction(&teardown_script());
        })
    }

    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        self.session
            .run(&change_commands(&Change::Grant { ip, port, ttl }))
    }

    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        self.session
            .run(&change_commands(&Change::Revoke { ip, port }))
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.session = NftSession::new(&self.program);
        self.transaction(&teardown_script())
    }

    /// The whole batch as one `nft -f` transaction; if it fails, nothing
    /// of it was applied and each change is retried alone for its result.
    /// A batch goes through `nft -f`, not the session: `nft -i` takes
    /// about 0.7 s to read a 1024-element line that `nft -f` applies in
    /// 40 ms (measured with nft 1.0.6), while one change is cheaper in the
    /// session (no process).
    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        if changes.len() > 1 {
            let script = batch_commands(changes) + "\n";
            if self.transaction(&script).is_ok() {
                return changes.iter().map(|_| Ok(())).collect();
            }
        }
        changes
            .iter()
            .map(|change| self.session.run(&change_commands(change)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_golden() {
        let options = FirewallOptions::new([2222, 22]);
        assert_eq!(
            ruleset(&options),
            "table inet portknock\n\
             delete table inet portknock\n\
             table inet portknock {\n\
             \tset allowed_v4 {\n\t\ttype ipv4_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tset allowed_v6 {\n\t\ttype ipv6_addr . inet_service\n\t\tflags timeout\n\t}\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\ttcp dport { 22, 2222 } ct state established,related accept\n\
             \t\tip saddr . tcp dport @allowed_v4 accept\n\
             \t\tip6 saddr . tcp dport @allowed_v6 accept\n\
             \t\ttcp dport { 22, 2222 } drop\n\
             \t}\n}\n"
        );
    }

    #[test]
    fn ruleset_without_established_or_ports() {
        let options = FirewallOptions {
            ports: vec![2222],
            keep_established: false,
        };
        assert!(!ruleset(&options).contains("established"));
        let none = FirewallOptions::new([]);
        let text = ruleset(&none);
        assert!(!text.contains("dport {"), "{text}");
    }

    #[test]
    fn batch_commands_golden() {
        let a: IpAddr = "192.0.2.2".parse().unwrap();
        let b: IpAddr = "192.0.2.3".parse().unwrap();
        let c: IpAddr = "2001:db8::2".parse().unwrap();
        let ttl = Duration::from_secs(30);
        let changes = [
            Change::Grant {
                ip: a,
                port: 22,
                ttl,
            },
            Change::Revoke { ip: c, port: 22 },
            Change::Grant {
                ip: b,
                port: 22,
                ttl,
            },
            Change::Grant {
                ip: c,
                port: 22,
                ttl: 2 * ttl,
            },
            Change::Revoke { ip: b, port: 22 },
        ];
        assert_eq!(
            batch_commands(&changes),
            "add element inet portknock allowed_v4 { 192.0.2.2 . 22, 192.0.2.3 . 22 }; \
             delete element inet portknock allowed_v4 { 192.0.2.2 . 22, 192.0.2.3 . 22 }; \
             add element inet portknock allowed_v4 { 192.0.2.2 . 22 timeout 30000ms }; \
             add element inet portknock allowed_v6 { 2001:db8::2 . 22 }; \
             delete element inet portknock allowed_v6 { 2001:db8::2 . 22 }; \
             add element inet portknock allowed_v6 { 2001:db8::2 . 22 timeout 60000ms }"
        );
        let one = [Change::Revoke { ip: a, port: 22 }];
        assert_eq!(batch_commands(&one), change_commands(&one[0]));
    }

    #[test]
    fn change_commands_golden() {
        let v4: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            change_commands(&Change::Grant {
                ip: v4,
                port: 2222,
                ttl: Duration::from_millis(2500)
            }),
            "add element inet portknock allowed_v4 { 192.0.2.2 . 2222 timeout 2500ms }; \
             delete element inet portknock allowed_v4 { 192.0.2.2 . 2222 }; \
             add element inet portknock allowed_v4 { 192.0.2.2 . 2222 timeout 2500ms }"
        );
        assert_eq!(
            change_commands(&Change::Revoke { ip: v6, port: 22 }),
            "add element inet portknock allowed_v6 { 2001:db8::2 . 22 }; \
             delete element inet portknock allowed_v6 { 2001:db8::2 . 22 }"
        );
        assert_eq!(
            change_commands(&Change::Grant {
                ip: v6,
                port: 22,
                ttl: Duration::ZERO
            }),
            change_commands(&Change::Revoke { ip: v6, port: 22 })
        );
        assert!(
            change_commands(&Change::Grant {
                ip: v6,
                port: 22,
                ttl: Duration::from_micros(10)
            })
            .contains("timeout 1ms")
        );
    }
}
