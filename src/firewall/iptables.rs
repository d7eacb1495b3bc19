//! The iptables backend (the seed's behaviour), for IPv4 and IPv6.
//!
//! Layout, in the `filter` table of both `iptables` and `ip6tables`:
//!
//! ```text
//! -A INPUT -j PORTKNOCK                          (inserted first in INPUT)
//! -A PORTKNOCK -s IP -p tcp --dport P -j ACCEPT  (one per grant, on top)
//! -A PORTKNOCK -p tcp --dport P -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//! -A PORTKNOCK -p tcp --dport P -j DROP          (per protected port)
//! ```
//!
//! Traffic to other ports falls off the end of `PORTKNOCK` back into INPUT,
//! so the host's own rules are untouched. Every change is rendered as an
//! `iptables-restore --noflush` script by the pure functions below (tested
//! without a kernel) and applied by `IptablesFirewall::restore`, the one
//! place that runs a command. `iptables-restore` commits a table in one
//! transaction, so setup (clean leftovers, create the chain, jump to it) is
//! all-or-nothing per family, and a batch of grants costs one process.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Change, Firewall, FirewallError, FirewallOptions, system};

/// Name of our chain in the `filter` table.
pub const CHAIN: &str = "PORTKNOCK";
/// Seconds `iptables-restore` waits for the xtables lock held by another tool.
const LOCK_WAIT: &str = "--wait=10";

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Family {
        match ip.to_canonical() {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The `*-restore` program.
    pub fn restore_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// The `*-save` program.
    pub fn save_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

/// The rule matching one grant, without its `-A`/`-I`/`-D` verb.
pub fn grant_rule(ip: IpAddr, port: u16) -> String {
    let (ip, prefix) = match ip.to_canonical() {
        ip @ IpAddr::V4(_) => (ip, 32),
        ip @ IpAddr::V6(_) => (ip, 128),
    };
    format!("-s {ip}/{prefix} -p tcp -m tcp --dport {port} -j ACCEPT")
}

/// The script line for one change: insert the grant on top, or delete it.
pub fn change_line(change: &Change) -> String {
    match *change {
        Change::Grant { ip, port, .. } => format!("-I {CHAIN} 1 {}", grant_rule(ip, port)),
        Change::Revoke { ip, port } => format!("-D {CHAIN} {}", grant_rule(ip, port)),
    }
}

/// Wraps rule lines into an `iptables-restore --noflush` script.
pub fn script(lines: &[String]) -> String {
    let mut out = String::from("*filter\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// The `-D` lines undoing every jump to our chain found in `save` (the
/// output of `iptables-save -t filter`), e.g. left behind by a crash.
fn stale_jumps(save: &str) -> Vec<String> {
    let jump = format!(" -j {CHAIN}");
    save.lines()
        .filter(|line| line.starts_with("-A ") && line.ends_with(&jump))
        .map(|line| format!("-D {}", &line[3..]))
        .collect()
}

/// Whether `save` shows our chain.
fn has_chain(save: &str) -> bool {
    let head = format!(":{CHAIN} ");
    save.lines().any(|line| line.starts_with(&head))
}

/// The setup script, given the current `iptables-save -t filter` output.
/// Declaring the chain flushes it if a crashed run left it (stale grants
/// go), stale jumps are deleted, and one fresh jump is inserted first in
/// INPUT; all in one transaction.
pub fn setup_script(save: &str, options: &FirewallOptions) -> String {
    let mut lines = vec![format!(":{CHAIN} - [0:0]")];
    lines.extend(stale_jumps(save));
    for port in options.unique_ports() {
        if options.keep_established {
            lines.push(format!(
                "-A {CHAIN} -p tcp -m tcp --dport {port} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            ));
        }
    }
    for port in options.unique_ports() {
        lines.push(format!("-A {CHAIN} -p tcp -m tcp --dport {port} -j DROP"));
    }
    lines.push(format!("-I INPUT 1 -j {CHAIN}"));
    script(&lines)
}

/// The teardown script for the current `iptables-save -t filter` output:
/// delete our jumps, flush and delete our chain. `None` when nothing of ours
/// is there.
pub fn teardown_script(save: &str) -> Option<String> {
    let mut lines = stale_jumps(save);
    if has_chain(save) {
        lines.push(format!("-F {CHAIN}"));
        lines.push(format!("-X {CHAIN}"));
    }
    (!lines.is_empty()).then(|| script(&lines))
}

/// The iptables/ip6tables backend.
#[derive(Debug)]
pub struct IptablesFirewall {
    options: FirewallOptions,
    /// Grants the kernel holds, as far as our successful commands say.
    granted: HashSet<(IpAddr, u16)>,
    /// Where the tools are, if not on `PATH`.
    tool_dir: Option<PathBuf>,
}

impl IptablesFirewall {
    /// Tools the backend runs.
    pub const TOOLS: [&'static str; 4] = [
        "iptables-restore",
        "iptables-save",
        "ip6tables-restore",
        "ip6tables-save",
    ];

    /// Checks CAP_NET_ADMIN and the tools; touches nothing yet.
    pub fn new(options: FirewallOptions) -> Result<Self, FirewallError> {
        system::require("iptables", &Self::TOOLS)?;
        Ok(Self::unchecked(options))
    }

    /// Skips the checks (tests that know the tools are there).
    pub fn unchecked(options: FirewallOptions) -> Self {
        Self {
            options,
            granted: HashSet::new(),
            tool_dir: None,
        }
    }

    /// Runs the tools from `dir` instead of `PATH` (a non-standard layout,
    /// or tests that put a failing tool in the way).
    pub fn with_tool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tool_dir = Some(dir.into());
        self
    }

    fn program(&self, tool: &str) -> String {
        match &self.tool_dir {
            Some(dir) => dir.join(tool).to_string_lossy().into_owned(),
            None => tool.to_string(),
        }
    }

    /// Runs one script through `*-restore --noflush`: the one place this
    /// backend changes the kernel.
    fn restore(&self, family: Family, script: &str) -> Result<(), FirewallError> {
        let program = self.program(family.restore_tool());
        system::run(&program, &["--noflush", LOCK_WAIT], script).map(drop)
    }

    fn save(&self, family: Family) -> Result<String, FirewallError> {
        system::run(&self.program(family.save_tool()), &["-t", "filter"], "")
    }

    fn remove_all(&mut self) -> Result<(), FirewallError> {
        self.granted.clear();
        let mut first_error = None;
        for family in Family::ALL {
            let result = self
                .save(family)
                .and_then(|save| match teardown_script(&save) {
                    Some(script) => self.restore(family, &script),
                    None => Ok(()),
                });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Changes that would alter the kernel, given what it holds: renewing an
    /// open grant or revoking a closed one needs no command.
    fn needed(&self, changes: &[Change]) -> Vec<Option<(Family, String)>> {
        let mut held = self.granted.clone();
        changes
            .iter()
            .map(|change| match *change {
                Change::Grant { ip, port, .. } => held
                    .insert((ip.to_canonical(), port))
                    .then(|| (Family::of(ip), change_line(change))),
                Change::Revoke { ip, port } => held
                    .remove(&(ip.to_canonical(), port))
                    .then(|| (Family::of(ip), change_line(change))),
            })
            .collect()
    }

    fn record(&mut self, change: &Change) {
        match *change {
            Change::Grant { ip, port, .. } => self.granted.insert((ip.to_canonical(), port)),
            Change::Revoke { ip, port } => self.granted.remove(&(ip.to_canonical(), port)),
        };
    }
}

impl Firewall for IptablesFirewall {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn setup(&mut self) -> Result<(), FirewallError> {
        self.granted.clear();
        let mut done = Vec::new();
        for family in Family::ALL {
            let result = self
                .save(family)
                .and_then(|save| self.restore(family, &setup_script(&save, &self.options)));
            if let Err(e) = result {
                // All or nothing: undo the families already set up.
                for family in done {
                    if let Ok(save) = self.save(family) {
                        if let Some(script) = teardown_script(&save) {
                            let _ = self.restore(family, &script);
                        }
                    }
                }
                return Err(e);
            }
            done.push(family);
        }
        Ok(())
    }

    fn grant(&mut self, ip: IpAddr, port: u16, ttl: Duration) -> Result<(), FirewallError> {
        let mut results = self.apply(&[Change::Grant { ip, port, ttl }]);
        results.pop().unwrap_or(Ok(()))
    }

    fn revoke(&mut self, ip: IpAddr, port: u16) -> Result<(), FirewallError> {
        let mut results = self.apply(&[Change::Revoke { ip, port }]);
        results.pop().unwrap_or(Ok(()))
    }

    fn teardown(&mut self) -> Result<(), FirewallError> {
        self.remove_all()
    }

    /// One `*-restore` per family for the whole batch; if a batch fails
    /// (nothing of it was applied), each change is retried alone so every
    /// change gets its own result.
    fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), FirewallError>> {
        let needed = self.needed(changes);
        let mut results: Vec<Result<(), FirewallError>> = changes.iter().map(|_| Ok(())).collect();
        for family in Family::ALL {
            let indices: Vec<usize> = (0..changes.len())
                .filter(|&i| matches!(&needed[i], Some((f, _)) if *f == family))
                .collect();
            if indices.is_empty() {
                continue;
            }
            let lines: Vec<String> = indices
                .iter()
                .filter_map(|&i| needed[i].as_ref().map(|(_, line)| line.clone()))
                .collect();
            if self.restore(family, &script(&lines)).is_ok() {
                indices.iter().for_each(|&i| self.record(&changes[i]));
                continue;
            }
            for (&i, line) in indices.iter().zip(&lines) {
                results[i] = self.restore(family, &script(std::slice::from_ref(line)));
                if results[i].is_ok() {
                    self.record(&changes[i]);
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests;
