//! The iptables backend (the seed's behaviour), for IPv4 and IPv6.
//!
//! Layout, in the `filter` table of both `iptables` and `ip6tables`:
//!
//! ```text
//! -A INPUT -p tcp -m multiport --dports P1,P2 -j PORTKNOCK  (first in INPUT)
//! -A PORTKNOCK -s IP -p tcp --dport P -j CONNMARK --set-xmark BIT/BIT  (one per grant, on top)
//! -A PORTKNOCK -p tcp --dport P -m connmark --mark BIT/BIT -j ACCEPT
//! -A PORTKNOCK -p tcp --dport P -j REJECT --reject-with tcp-reset  (per protected port)
//! ```
//!
//! Protected UDP ports get the same with `-p udp` (their own jump, and a
//! grant's rule takes its port's protocol), rejected with ICMP (ICMPv6)
//! port-unreachable. With `--deny drop` the last rules are `-j DROP`.
//!
//! With an NFLOG capture rule ([`FirewallOptions::capture`]) table `raw`
//! gets a chain of the same name, jumped to from PREROUTING, that logs
//! knock-port packets and lets them continue ([`capture`]); setup,
//! verify, the monitor and teardown cover it too.
//!
//! BIT is [`super::GRANT_MARK`]: only connections a grant accepted are
//! accepted after it ends (see [`rules`]). With `--no-keep-established`
//! a grant's rule is `-j ACCEPT` and there is no connmark rule.
//!
//! The chain is `PORTKNOCK-<instance>` for `--instance`. Only TCP (UDP) to
//! the protected TCP (UDP) ports jumps to it (a multiport match takes 15 ports, so more
//! make more jumps): a host with thousands of grants pays nothing on its
//! other traffic. Traffic to other ports falls off the end of the chain back
//! into INPUT, so the host's own rules are untouched.
//!
//! Ordering (`--iptables-position`): `first` inserts the jump at the top of
//! INPUT, so a grant's ACCEPT wins over the admin's later INPUT rules;
//! `last` appends it, so the admin's own INPUT rules (a DROP for an
//! address) are evaluated first and win.
//!
//! [`Firewall::verify`] checks one `*-save` per family for the chain, its
//! fixed rules, the jumps and one rule per grant we hold
//! ([`rules::missing_rules`]). It runs at once when nf_tables announces a
//! deletion in table `filter` of family `ip` or `ip6` (Debian's `iptables`
//! is iptables-nft, whose rules live there: `iptables -F`, a deleted jump,
//! a reload), and every second as well, for iptables-legacy, which
//! announces nothing. Our own grants and revokes are announced too; the
//! worker discards what its own batches caused. A revoke
//! whose rule is already gone forgets the grant anyway, so our bookkeeping
//! follows the kernel and a later grant inserts a fresh rule.
//!
//! Every change is rendered as an `iptables-restore --noflush` script by
//! the pure functions of [`rules`] (tested without a kernel) and applied by
//! `IptablesFirewall::restore`, the one
//! place that runs a command. `iptables-restore` commits a table in one
//! transaction, so setup (clean leftovers, create the chain, jump to it) is
//! all-or-nothing per family, and a batch of grants costs one process.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::nftables::{NFPROTO_IPV4, NFPROTO_IPV6, NftMonitor, Watch};
use super::{Change, Firewall, FirewallError, FirewallOptions, system};
use crate::capture::nflog::NflogRule;

pub mod capture;
pub mod rules;
pub use rules::{change_line, grant_rule, jump_rules, script, setup_script, teardown_script};

/// Name of the default instance's chain in the `filter` table.
pub const CHAIN: &str = "PORTKNOCK";
/// How often the rules are checked: nobody announces an `iptables -F`.
pub const VERIFY_EVERY: Duration = Duration::from_secs(1);
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
                .and_then(|save| match teardown_script(&save, &self.options) {
                    Some(script) => self.restore(family, &script),
                    None => Ok(()),
                })
                .and(self.remove_capture(family));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Changes that would alter the kernel, given what it holds: renewing an
    /// open grant or revoking a closed one needs no command.
    fn needed(&self, changes: &[Change]) -> Vec<Option<(Family, String)>> {
        let chain = self.options.instance.iptables_chain();
        let mut held = self.granted.clone();
        changes
            .iter()
            .map(|change| match *change {
                Change::Grant { ip, port, .. } => held
                    .insert((ip.to_canonical(), port))
                    .then(|| (Family::of(ip), change_line(&chain, change, &self.options))),
                Change::Revoke { ip, port } => held
                    .remove(&(ip.to_canonical(), port))
                    .then(|| (Family::of(ip), change_line(&chain, change, &self.options))),
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
                .and_then(|save| self.restore(family, &setup_script(&save, &self.options, family)))
                .and_then(|()| self.setup_capture(family));
            if let Err(e) = result {
                // All or nothing: undo the families already set up (and
                // this one's filter rules, if only its capture failed).
                done.push(family);
                for family in done {
                    let _ = self.remove_capture(family);
                    if let Ok(save) = self.save(family) {
                        if let Some(script) = teardown_script(&save, &self.options) {
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

    /// Sets the chain up again for `ports` (one `iptables-restore` per
    /// family); the grants' rules go with the old chain, so the worker
    /// applies the live ones again. On failure the old ports are set up.
    fn reconfigure(&mut self, ports: &[u16], udp_ports: &[u16]) -> Result<bool, FirewallError> {
        let mut options = self.options.clone();
        options.ports = ports.to_vec();
        options.udp_ports = udp_ports.to_vec();
        let old = std::mem::replace(&mut self.options, options);
        if let Err(err) = self.setup() {
            self.options = old;
            let _ = self.setup();
            return Err(err);
        }
        Ok(false)
    }

    /// Installs the new capture rule in both families; on failure the old
    /// one is installed again.
    fn set_capture(&mut self, capture: Option<NflogRule>) -> Result<(), FirewallError> {
        let old = std::mem::replace(&mut self.options.capture, capture);
        let result = Family::ALL
            .into_iter()
            .try_for_each(|family| self.setup_capture(family));
        if result.is_err() {
            self.options.capture = old;
            for family in Family::ALL {
                let _ = self.setup_capture(family);
            }
        }
        result
    }

    fn verify(&mut self) -> Result<Vec<String>, FirewallError> {
        let mut missing = Vec::new();
        for family in Family::ALL {
            let save = self.save(family)?;
            let granted = self
                .granted
                .iter()
                .copied()
                .filter(|&(ip, _)| Family::of(ip) == family);
            let tool = family.save_tool();
            missing.extend(
                rules::missing_rules(&save, &self.options, family, granted)
                    .into_iter()
                    .chain(self.missing_capture(family)?)
                    .map(|line| format!("{tool}: {line}")),
            );
        }
        Ok(missing)
    }

    fn verify_every(&self) -> Option<Duration> {
        Some(VERIFY_EVERY)
    }

    fn monitor(&mut self) -> Result<Option<NftMonitor>, FirewallError> {
        let tables: &[&str] = match self.captures() {
            true => &["filter", capture::TABLE],
            false => &["filter"],
        };
        let watches = tables.iter().flat_map(|table| {
            [NFPROTO_IPV4, NFPROTO_IPV6].map(|family| Watch {
                family,
                table: (*table).into(),
                owned: false,
            })
        });
        NftMonitor::open(watches.collect()).map(Some)
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
                // A revoke that failed (its rule was removed by hand) is
                // forgotten too: the rule is not there, and keeping it as
                // granted would skip every later grant of that address.
                if results[i].is_ok() || matches!(changes[i], Change::Revoke { .. }) {
                    self.record(&changes[i]);
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests;
