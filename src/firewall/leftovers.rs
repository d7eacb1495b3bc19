//! Kernel rules left behind by a crashed kernel-backend run, noticed by a
//! server that starts with the userspace gate.
//!
//! Why: a SIGKILLed (or power-cut) server with `--firewall nftables` or
//! `iptables` leaves its table / chain, and with it the DROP on the
//! protected ports. A kernel backend removes such leftovers in its own
//! setup, but the userspace gate never touches the kernel: it would listen
//! behind a DROP, and every client, granted or not, would see the port as
//! filtered, with nothing in the log saying why.
//!
//! So at start, before the gate binds:
//! - with CAP_NET_ADMIN, our instance's table and chain are listed, and
//!   removed while we hold the instance lock (a live kernel-backend server
//!   of the same instance keeps its rules; we only warn);
//! - without it nothing can be listed or removed, so we probe instead: a
//!   loopback SYN to each protected port, where nothing listens yet, gets a
//!   reset unless something drops it. An unanswered probe is a warning that
//!   names the commands to run as root.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tracing::{info, warn};

use super::instance::{Instance, InstanceError, InstanceLock};
use super::iptables::IptablesFirewall;
use super::nftables::NftablesFirewall;
use super::{Firewall, FirewallKind, FirewallOptions, system};

/// How long a loopback probe waits for a SYN-ACK or a reset: loopback
/// answers in microseconds, so only a dropped SYN runs into this.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// At most this many ports are probed (a bound on the start-up delay).
const MAX_PROBED: usize = 16;

/// The shell commands (as root) that remove `instance`'s kernel rules:
/// the nftables table, and for iptables and ip6tables the jumps from
/// INPUT (one per protected port group), the chain's rules and the chain.
pub fn remove_commands(instance: &Instance) -> Vec<String> {
    let table = instance.nft_table();
    let chain = instance.iptables_chain();
    let mut commands = vec![format!("nft delete table inet {table}")];
    for tool in ["iptables", "ip6tables"] {
        // The NFLOG capture chain (table raw) first, only if it is there,
        // so the line's status stays that of the filter chain's removal.
        commands.push(format!(
            "if {tool} -t raw -S {chain} >/dev/null 2>&1; then \
             {tool}-save -t raw | grep -- '-j {chain}$' | sed 's/^-A /-D /' \
             | while read -r rule; do eval {tool} -t raw \"$rule\"; done; \
             {tool} -t raw -F {chain}; {tool} -t raw -X {chain}; fi; \
             {tool}-save -t filter | grep -- '-j {chain}$' | sed 's/^-A /-D /' \
             | while read -r rule; do eval {tool} -t filter \"$rule\"; done; \
             {tool} -F {chain}; {tool} -X {chain}"
        ));
    }
    commands
}

/// Which of `instance`'s kernel objects exist now (needs CAP_NET_ADMIN and
/// the tools; an object whose tool is missing or fails is not reported).
pub fn present(instance: &Instance) -> Vec<String> {
    let mut found = Vec::new();
    let table = instance.nft_table();
    if system::find_tool("nft").is_some()
        && system::run("nft", &["list", "table", "inet", &table], "").is_ok()
    {
        found.push(format!("nftables table inet {table}"));
    }
    let chain = instance.iptables_chain();
    for tool in ["iptables", "ip6tables"] {
        if system::find_tool(tool).is_some()
            && system::run(tool, &["-w", "-t", "filter", "-S", &chain], "").is_ok()
        {
            found.push(format!("{tool} chain {chain}"));
        }
        // The NFLOG capture chain (table raw) of a crashed run.
        if system::find_tool(tool).is_some()
            && system::run(tool, &["-w", "-t", "raw", "-S", &chain], "").is_ok()
        {
            found.push(format!("{tool} chain {chain} (table raw)"));
        }
    }
    found
}

/// Whether a SYN to `127.0.0.1:port` goes unanswered (dropped): true only
/// when the connect times out; a reset, an accept or any other error is
/// an answer.
pub fn syn_dropped(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => false,
        Err(err) => err.kind() == std::io::ErrorKind::TimedOut,
    }
}

/// Whether the server would run a kernel backend for `kind`, which cleans
/// leftovers in its own setup: an explicit kernel backend, or `auto` with
/// CAP_NET_ADMIN and a tool (mirrors [`super::select::auto`] closely
/// enough: when auto still falls back, listing fails the same way).
fn kernel_backend_likely(kind: FirewallKind, net_admin: bool) -> bool {
    match kind {
        FirewallKind::Nftables | FirewallKind::Iptables => true,
        FirewallKind::Userspace => false,
        FirewallKind::Auto => {
            net_admin
                && (system::find_tool("nft").is_some() || system::find_tool("iptables").is_some())
        }
    }
}

/// What [`check_at_start`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    /// Kernel objects of the instance that were removed.
    pub removed: Vec<String>,
    /// Protected ports whose loopback probe went unanswered.
    pub dropped_ports: Vec<u16>,
    /// Objects found but left alone (a live owner, or removal failed).
    pub kept: Vec<String>,
}

/// Looks for (and, with CAP_NET_ADMIN, removes) leftover kernel rules of
/// `options.instance` when the server is about to use the userspace gate
/// for `kind`; logs a warning for each finding. Call before binding the
/// protected ports. Does nothing for a kernel backend.
pub fn check_at_start(kind: FirewallKind, options: &FirewallOptions) -> Findings {
    let net_admin = system::has_net_admin();
    if kernel_backend_likely(kind, net_admin) {
        return Findings::default();
    }
    let instance = &options.instance;
    let commands = remove_commands(instance).join("\n  ");
    if !net_admin {
        let dropped_ports: Vec<u16> = options
            .unique_ports()
            .into_iter()
            .take(MAX_PROBED)
            .filter(|&port| syn_dropped(port, PROBE_TIMEOUT))
            .collect();
        if !dropped_ports.is_empty() {
            warn!(
                ports = ?dropped_ports,
                "connections to the protected ports are dropped before the gate listens: \
                 probably rules left by a crashed kernel-backend run (instance '{instance}'), \
                 which make every client see the port as filtered; this server has no \
                 CAP_NET_ADMIN to remove them. As root, run:\n  {commands}"
            );
        }
        return Findings {
            dropped_ports,
            ..Findings::default()
        };
    }
    let found = present(instance);
    if found.is_empty() {
        return Findings::default();
    }
    // Hold the instance lock while removing: a live kernel-backend server
    // of this instance keeps its rules.
    let _lock = match InstanceLock::acquire(instance) {
        Ok(lock) => lock,
        Err(err @ InstanceError::Taken { .. }) => {
            warn!(found = ?found, "kernel rules of instance '{instance}' found and left alone: {err}");
            return Findings {
                kept: found,
                ..Findings::default()
            };
        }
        Err(err) => {
            warn!(found = ?found, error = %err, "leftover kernel rules found and left alone; to remove them run:\n  {commands}");
            return Findings {
                kept: found,
                ..Findings::default()
            };
        }
    };
    let mut findings = Findings::default();
    let mut removal_failed = false;
    if found.iter().any(|what| what.starts_with("nftables")) {
        removal_failed |= remove_with(NftablesFirewall::new(options.clone()));
    }
    if found.iter().any(|what| what.contains("iptables chain")) {
        removal_failed |= remove_with(IptablesFirewall::new(options.clone()));
    }
    let left = present(instance);
    for what in found {
        match left.contains(&what) {
            true => findings.kept.push(what),
            false => findings.removed.push(what),
        }
    }
    if !findings.removed.is_empty() {
        warn!(removed = ?findings.removed, "removed kernel rules left by a crashed kernel-backend run of instance '{instance}' (they dropped the protected ports)");
    }
    if removal_failed || !findings.kept.is_empty() {
        warn!(kept = ?findings.kept, "leftover kernel rules could not all be removed; to remove them run:\n  {commands}");
    }
    if findings.kept.is_empty() {
        info!("no leftover kernel rules of instance '{instance}' remain");
    }
    findings
}

/// Tears down what `backend` owns; true when that failed.
fn remove_with<F: Firewall>(backend: Result<F, super::FirewallError>) -> bool {
    match backend.and_then(|mut fw| fw.teardown()) {
        Ok(()) => false,
        Err(err) => {
            warn!(error = %err, "cannot remove leftover kernel rules");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_commands_name_the_instances_table_and_chain() {
        let default = remove_commands(&Instance::default());
        assert_eq!(default[0], "nft delete table inet portknock");
        assert!(default[1].contains("iptables -F PORTKNOCK; iptables -X PORTKNOCK"));
        assert!(default[2].contains("ip6tables-save -t filter"));
        assert!(default[2].starts_with("if ip6tables -t raw -S PORTKNOCK "));
        let named = remove_commands(&"web".parse().unwrap());
        assert_eq!(named[0], "nft delete table inet portknock-web");
        assert!(named[1].contains("-j PORTKNOCK-web$"));
    }

    #[test]
    fn only_the_userspace_gate_looks_for_leftovers() {
        assert!(kernel_backend_likely(FirewallKind::Nftables, false));
        assert!(kernel_backend_likely(FirewallKind::Iptables, false));
        assert!(!kernel_backend_likely(FirewallKind::Userspace, true));
        assert!(!kernel_backend_likely(FirewallKind::Auto, false));
    }

    #[test]
    fn a_closed_loopback_port_answers_the_probe() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        assert!(!syn_dropped(port, PROBE_TIMEOUT));
    }
}
