//! Kernel tests of the iptables and nftables backends, each inside network
//! namespaces the test creates (see `util/netns.rs`): the machine's own
//! rules are never touched. They need root; without it they print a loud
//! SKIPPED line, and fail when `CI` is set.

mod iptables;
mod nftables;
mod traffic;

use crate::util::netns::{self, Netns, privileged};
use portknock::firewall::{FirewallError, FirewallOptions};
use portknock::firewall::{iptables::IptablesFirewall, nftables::NftablesFirewall};

/// Commands spawned from a thread that entered a namespace really run in it.
#[test]
fn spawned_commands_inherit_the_test_namespace() {
    if !privileged("spawned_commands_inherit_the_test_namespace") {
        return;
    }
    let ns = Netns::new("inherit");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let child = ns.run(|| netns::sh(&["readlink", "/proc/self/ns/net"]));
    assert_eq!(child.trim(), format!("net:[{}]", ns.inode()));
    assert_ne!(child.trim(), host.to_string_lossy());
}

/// Run by `explicit_backends_without_net_admin_fail_with_the_clear_line`
/// under `setpriv` with CAP_NET_ADMIN dropped; does nothing otherwise.
#[test]
#[ignore = "run by explicit_backends_without_net_admin_fail_with_the_clear_line"]
fn without_net_admin_probe() {
    if std::env::var_os("PORTKNOCK_EXPECT_NO_NET_ADMIN").is_none() {
        return;
    }
    assert!(!portknock::firewall::system::has_net_admin());
    let ipt = IptablesFirewall::new(FirewallOptions::new([2222])).unwrap_err();
    assert!(matches!(ipt, FirewallError::NeedsPrivilege { .. }));
    assert_eq!(
        ipt.to_string(),
        "iptables backend needs CAP_NET_ADMIN: run as root, or use --firewall userspace"
    );
    let nft = NftablesFirewall::new(FirewallOptions::new([2222])).unwrap_err();
    assert_eq!(
        nft.to_string(),
        "nftables backend needs CAP_NET_ADMIN: run as root, or use --firewall userspace"
    );
    let auto = portknock::firewall::select::auto(
        &FirewallOptions::new([2222]),
        portknock::firewall::userspace::AccessList::new(),
    );
    assert_eq!(auto.kind, portknock::firewall::FirewallKind::Userspace);
    assert_eq!(auto.passed_over.len(), 2);
}

#[test]
fn explicit_backends_without_net_admin_fail_with_the_clear_line() {
    if !privileged("explicit_backends_without_net_admin_fail_with_the_clear_line") {
        return;
    }
    if portknock::firewall::system::find_tool("setpriv").is_none() {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing in CI");
        eprintln!("\n*** SKIPPED: setpriv missing ***\n");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_string_lossy();
    let out = std::process::Command::new("setpriv")
        .args(["--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"])
        .arg(exe.as_ref())
        .args([
            "--ignored",
            "--exact",
            "kernel::firewall::without_net_admin_probe",
            "--test-threads=1",
        ])
        .env("PORTKNOCK_EXPECT_NO_NET_ADMIN", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "probe failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
