//! The iptables rules as text: what setup, a change and teardown send to
//! `*-restore --noflush`, and what a check expects to find in `*-save`.
//! Pure functions, tested without a kernel.
//!
//! With `keep_established` a grant's rule does not accept by itself: it
//! sets [`GRANT_MARK`] in the connection's conntrack mark (`-j CONNMARK
//! --set-xmark BIT/BIT`, other bits kept) and falls through to the fixed
//! rule that accepts marked connections to the port (`-m connmark --mark
//! BIT/BIT`), the first packet and every later one alike. One rule per
//! grant, as before; a stranger's connection that got in while our rules
//! were flushed carries no mark and is dropped once they are back.
//! Without it, a grant's rule accepts (`-j ACCEPT`) and nothing is marked.

use std::net::IpAddr;

use super::super::{Change, Deny, FirewallOptions, GRANT_MARK, Position};
use super::Family;

/// Most ports one `-m multiport --dports` takes (`XT_MULTI_PORTS`).
pub const MULTIPORT_MAX: usize = 15;

/// The rule matching one grant, without its `-A`/`-I`/`-D` verb, exactly as
/// `iptables-save` prints it: it marks the connection when established
/// connections are kept (see the module's doc), else it accepts.
pub fn grant_rule(ip: IpAddr, port: u16, options: &FirewallOptions) -> String {
    let (ip, prefix) = match ip.to_canonical() {
        ip @ IpAddr::V4(_) => (ip, 32),
        ip @ IpAddr::V6(_) => (ip, 128),
    };
    let target = if options.keep_established {
        format!("CONNMARK --set-xmark {GRANT_MARK:#x}/{GRANT_MARK:#x}")
    } else {
        "ACCEPT".to_string()
    };
    let proto = options.proto_of(port);
    format!("-s {ip}/{prefix} -p {proto} -m {proto} --dport {port} -j {target}")
}

/// The script line for one change in `chain`: insert the grant on top, or
/// delete it.
pub fn change_line(chain: &str, change: &Change, options: &FirewallOptions) -> String {
    match *change {
        Change::Grant { ip, port, .. } => {
            format!("-I {chain} 1 {}", grant_rule(ip, port, options))
        }
        Change::Revoke { ip, port } => format!("-D {chain} {}", grant_rule(ip, port, options)),
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

/// The jump rules from INPUT to `chain`, without their verb, as
/// `iptables-save` prints them: TCP to the protected TCP ports and UDP to
/// the protected UDP ports only (other traffic never walks our chain), at
/// most [`MULTIPORT_MAX`] ports each, TCP first.
pub fn jump_rules(chain: &str, options: &FirewallOptions) -> Vec<String> {
    let mut jumps = Vec::new();
    for (proto, ports) in options.protocols() {
        for ports in ports.chunks(MULTIPORT_MAX) {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            jumps.push(format!(
                "-p {proto} -m multiport --dports {} -j {chain}",
                ports.join(",")
            ));
        }
    }
    jumps
}

/// Our chain's fixed rules, as `-A` lines.
fn fixed_rules(chain: &str, options: &FirewallOptions, family: Family) -> Vec<String> {
    let mut lines = Vec::new();
    let protocols = options.protocols();
    if options.keep_established {
        for (proto, ports) in &protocols {
            for port in ports {
                lines.push(format!(
                    "-A {chain} -p {proto} -m {proto} --dport {port} -m connmark --mark {GRANT_MARK:#x}/{GRANT_MARK:#x} -j ACCEPT"
                ));
            }
        }
    }
    for (proto, ports) in &protocols {
        let target = deny_target(options.deny, proto, family);
        for port in ports {
            lines.push(format!(
                "-A {chain} -p {proto} -m {proto} --dport {port} -j {target}"
            ));
        }
    }
    lines
}

/// The last rule's target for `proto`'s protected ports in `family`, as
/// `iptables-save` prints it: a closed port's answer (a TCP RST; ICMP or
/// ICMPv6 port-unreachable for UDP), or `DROP`.
pub fn deny_target(deny: Deny, proto: &str, family: Family) -> &'static str {
    match (deny, proto, family) {
        (Deny::Drop, _, _) => "DROP",
        (Deny::Reset, "tcp", _) => "REJECT --reject-with tcp-reset",
        (Deny::Reset, _, Family::V4) => "REJECT --reject-with icmp-port-unreachable",
        (Deny::Reset, _, Family::V6) => "REJECT --reject-with icmp6-port-unreachable",
    }
}

/// The `-D` lines undoing every jump to `chain` found in `save` (the
/// output of `iptables-save -t filter`), e.g. left behind by a crash.
pub(super) fn stale_jumps(chain: &str, save: &str) -> Vec<String> {
    let jump = format!(" -j {chain}");
    save.lines()
        .filter(|line| line.starts_with("-A ") && line.ends_with(&jump))
        .map(|line| format!("-D {}", &line[3..]))
        .collect()
}

/// Whether `save` shows `chain`.
pub(super) fn has_chain(chain: &str, save: &str) -> bool {
    let head = format!(":{chain} ");
    save.lines().any(|line| line.starts_with(&head))
}

/// The setup script for `family`, given its current `iptables-save -t
/// filter` output.
/// Declaring the chain flushes it if a crashed run left it (stale grants
/// go), stale jumps are deleted, and fresh jumps are inserted first in
/// INPUT (or appended, `--iptables-position last`); all in one transaction.
pub fn setup_script(save: &str, options: &FirewallOptions, family: Family) -> String {
    let chain = options.instance.iptables_chain();
    let mut lines = vec![format!(":{chain} - [0:0]")];
    lines.extend(stale_jumps(&chain, save));
    lines.extend(fixed_rules(&chain, options, family));
    for jump in jump_rules(&chain, options) {
        lines.push(match options.position {
            Position::First => format!("-I INPUT 1 {jump}"),
            Position::Last => format!("-A INPUT {jump}"),
        });
    }
    script(&lines)
}

/// The teardown script for the current `iptables-save -t filter` output:
/// delete our jumps, flush and delete our chain. `None` when nothing of ours
/// is there.
pub fn teardown_script(save: &str, options: &FirewallOptions) -> Option<String> {
    let chain = options.instance.iptables_chain();
    let mut lines = stale_jumps(&chain, save);
    if has_chain(&chain, save) {
        lines.push(format!("-F {chain}"));
        lines.push(format!("-X {chain}"));
    }
    (!lines.is_empty()).then(|| script(&lines))
}

/// What of our rules is missing from `save` (`family`'s `iptables-save
/// -t filter`): the chain, a fixed rule, a jump, or the rule of one of
/// `granted`. Empty: intact.
pub fn missing_rules(
    save: &str,
    options: &FirewallOptions,
    family: Family,
    granted: impl IntoIterator<Item = (IpAddr, u16)>,
) -> Vec<String> {
    let chain = options.instance.iptables_chain();
    if !has_chain(&chain, save) {
        return vec![format!("chain {chain}")];
    }
    let present: std::collections::HashSet<&str> = save.lines().collect();
    let mut missing = Vec::new();
    for jump in jump_rules(&chain, options) {
        let line = format!("-A INPUT {jump}");
        if !present.contains(line.as_str()) {
            missing.push(line);
        }
    }
    for line in fixed_rules(&chain, options, family) {
        if !present.contains(line.as_str()) {
            missing.push(line);
        }
    }
    for (ip, port) in granted {
        let line = format!("-A {chain} {}", grant_rule(ip, port, options));
        if !present.contains(line.as_str()) {
            missing.push(line);
        }
    }
    missing
}
