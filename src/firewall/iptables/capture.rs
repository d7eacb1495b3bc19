//! The NFLOG capture rule in iptables and ip6tables: a chain of ours in
//! table `raw` (the instance's chain name; tables do not share chains),
//! jumped to from `PREROUTING` for packets addressed to this host:
//!
//! ```text
//! -A PREROUTING [-i IF] -m addrtype --dst-type LOCAL -j PORTKNOCK   (first, per interface)
//! -A PORTKNOCK -p udp -m multiport --dports 1234,5678 -j NFLOG --nflog-group N --nflog-size S
//! -A PORTKNOCK -p tcp -m multiport --dports 9012 -m tcp --tcp-flags SYN,ACK SYN -j NFLOG --nflog-group N --nflog-size S
//! ```
//!
//! `raw` PREROUTING runs before conntrack and every `filter` rule, so a
//! knock the admin's INPUT drops is still logged; `NFLOG` does not end the
//! chain, and the chain falls back to PREROUTING, so the packet goes on to
//! the host's own answer. The rules' text is pure (tested in `tests.rs`);
//! the methods at the end run it through the backend's `*-restore`.

use super::rules::{MULTIPORT_MAX, has_chain, stale_jumps};
use super::{Family, IptablesFirewall};
use crate::capture::nflog::NflogRule;
use crate::firewall::{FirewallError, FirewallOptions, system};

/// The table our capture chain lives in.
pub const TABLE: &str = "raw";

/// The capture rule asked for, if it captures anything.
fn wanted(options: &FirewallOptions) -> Option<&NflogRule> {
    options.capture.as_ref().filter(|rule| !rule.is_empty())
}

/// Our chain's rules, as `-A` lines exactly as `iptables-save` prints them.
pub fn chain_rules(chain: &str, rule: &NflogRule) -> Vec<String> {
    let target = format!(
        "-j NFLOG --nflog-group {} --nflog-size {}",
        rule.group, rule.snaplen
    );
    let mut lines = Vec::new();
    for (proto, ports, flags) in [
        ("udp", &rule.spec.udp_ports, ""),
        (
            "tcp",
            &rule.spec.tcp_ports,
            " -m tcp --tcp-flags SYN,ACK SYN",
        ),
    ] {
        for ports in ports.chunks(MULTIPORT_MAX) {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            lines.push(format!(
                "-A {chain} -p {proto} -m multiport --dports {}{flags} {target}",
                ports.join(",")
            ));
        }
    }
    lines
}

/// The jumps from `PREROUTING` to `chain`, without their verb: one, or
/// one per interface the spec names.
pub fn jumps(chain: &str, rule: &NflogRule) -> Vec<String> {
    let local = format!("-m addrtype --dst-type LOCAL -j {chain}");
    match rule.spec.interfaces.as_slice() {
        [] => vec![local],
        names => names
            .iter()
            .map(|name| format!("-i {name} {local}"))
            .collect(),
    }
}

fn raw_script(lines: &[String]) -> String {
    let mut out = format!("*{TABLE}\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// The script that installs the capture rule, given the current
/// `iptables-save -t raw`: declaring the chain flushes a crashed run's,
/// stale jumps go, fresh ones are inserted first in PREROUTING. Without a
/// rule to install, the teardown script (`None`: nothing to do).
pub fn setup_script(save: &str, options: &FirewallOptions) -> Option<String> {
    let chain = options.instance.iptables_chain();
    let Some(rule) = wanted(options) else {
        return teardown_script(save, &chain);
    };
    let mut lines = vec![format!(":{chain} - [0:0]")];
    lines.extend(stale_jumps(&chain, save));
    lines.extend(chain_rules(&chain, rule));
    for jump in jumps(&chain, rule) {
        lines.push(format!("-I PREROUTING 1 {jump}"));
    }
    Some(raw_script(&lines))
}

/// The script that removes every jump to `chain` and the chain from table
/// `raw`, given `iptables-save -t raw`; `None` when nothing is there.
pub fn teardown_script(save: &str, chain: &str) -> Option<String> {
    let mut lines = stale_jumps(chain, save);
    if has_chain(chain, save) {
        lines.push(format!("-F {chain}"));
        lines.push(format!("-X {chain}"));
    }
    (!lines.is_empty()).then(|| raw_script(&lines))
}

/// What of the capture rule is missing from `save` (`iptables-save -t
/// raw`), each line prefixed with the table. Empty: intact, or no rule.
pub fn missing(save: &str, options: &FirewallOptions) -> Vec<String> {
    let Some(rule) = wanted(options) else {
        return Vec::new();
    };
    let chain = options.instance.iptables_chain();
    if !has_chain(&chain, save) {
        return vec![format!("{TABLE}: chain {chain}")];
    }
    let present: std::collections::HashSet<&str> = save.lines().collect();
    let jumps = jumps(&chain, rule)
        .into_iter()
        .map(|jump| format!("-A PREROUTING {jump}"));
    jumps
        .chain(chain_rules(&chain, rule))
        .filter(|line| !present.contains(line.as_str()))
        .map(|line| format!("{TABLE}: {line}"))
        .collect()
}

impl IptablesFirewall {
    fn save_raw(&self, family: Family) -> Result<String, FirewallError> {
        system::run(&self.program(family.save_tool()), &["-t", TABLE], "")
    }

    /// Installs (or, without a rule, removes) the capture rule of one family.
    pub(super) fn setup_capture(&self, family: Family) -> Result<(), FirewallError> {
        let save = match self.save_raw(family) {
            Ok(save) => save,
            // No rule wanted and no raw table to read: nothing of ours there.
            Err(_) if wanted(&self.options).is_none() => return Ok(()),
            Err(err) => return Err(err),
        };
        match setup_script(&save, &self.options) {
            Some(script) => self.restore(family, &script),
            None => Ok(()),
        }
    }

    /// Removes the capture chain of one family, whatever the options say
    /// (a crashed run's included).
    pub(super) fn remove_capture(&self, family: Family) -> Result<(), FirewallError> {
        let chain = self.options.instance.iptables_chain();
        let save = match self.save_raw(family) {
            Ok(save) => save,
            Err(_) if wanted(&self.options).is_none() => return Ok(()),
            Err(err) => return Err(err),
        };
        match teardown_script(&save, &chain) {
            Some(script) => self.restore(family, &script),
            None => Ok(()),
        }
    }

    /// What is missing of one family's capture rule.
    pub(super) fn missing_capture(&self, family: Family) -> Result<Vec<String>, FirewallError> {
        if wanted(&self.options).is_none() {
            return Ok(Vec::new());
        }
        Ok(missing(&self.save_raw(family)?, &self.options))
    }

    /// Whether a capture rule is installed (the monitor then watches `raw`).
    pub(super) fn captures(&self) -> bool {
        wanted(&self.options).is_some()
    }
}

#[cfg(test)]
mod tests;
