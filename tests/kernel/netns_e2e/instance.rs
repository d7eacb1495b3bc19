//! Issue 9 item 3: a second server. The same instance in the same network
//! namespace is refused, naming the owner's pid and `--instance`, and
//! touches nothing; another instance (its own table/chain, its own ports)
//! runs side by side, and stopping it leaves the first one's rules.

use std::time::Duration;

use super::lab::{A, B, Backend, HOST, Lab, Timing, V4};
use crate::util::{Proc, bin, run};

/// The second instance: its name, protected port and knock sequence.
const WEB: &str = "web";
const WEB_PORT: u16 = 2223;
const WEB_SEQUENCE: &str = "4000,5000,6000";

const TIMING: Timing = Timing {
    access: 30,
    lockout: 3,
};

/// A `knock-server` of instance `instance` guarding `WEB_PORT`.
fn second_server(lab: &Lab, instance: Option<&str>) -> std::process::Command {
    let mut cmd = lab.lan.host.command(bin("knock-server"));
    cmd.args(["--firewall", lab.backend.name()])
        .args(["--bind", HOST[0]])
        .args(["--sequence", WEB_SEQUENCE])
        .args(["--protected-port", &WEB_PORT.to_string()]);
    if let Some(name) = instance {
        // One NFLOG reader per group and namespace: its own group too.
        cmd.args(["--instance", name, "--nflog-group", "27503"]);
    }
    cmd
}

/// `rules` without nftables' countdown of a set element (`expires 29s624ms`).
fn steady(rules: &str) -> String {
    rules
        .split(' ')
        .scan(false, |skip, word| {
            let out = (!*skip).then_some(word);
            *skip = word == "expires";
            Some(out)
        })
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

fn second_of_the_same_instance_is_refused(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::start(test, tag, backend, TIMING) else {
        return;
    };
    lab.knock(&[(A, V4)]);
    let rules = steady(&lab.lan.host.rules());
    let pid = lab.server().pid();

    let outcome = run(second_server(&lab, None), Duration::from_secs(20));
    let outcome = outcome.expect_code(1);
    assert!(
        outcome.stderr.contains(&format!("pid {pid}")) && outcome.stderr.contains("--instance"),
        "{}",
        outcome.describe()
    );
    assert_eq!(
        steady(&lab.lan.host.rules()),
        rules,
        "the refused server touched the rules"
    );
    lab.expect_filtered(&[(B, V4)]);
    lab.read_flag((A, V4));
    lab.stop_server();
}

fn two_instances_side_by_side(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::start(test, tag, backend, TIMING) else {
        return;
    };
    let mut service = lab.lan.host.command(bin("protected-service"));
    service.args(["--port", &WEB_PORT.to_string(), "--close-after", "20"]);
    let mut service = Proc::spawn(service);
    service.wait_for("protected-service listening", Duration::from_secs(10));
    let mut web = Proc::spawn(second_server(&lab, Some(WEB)));
    web.wait_for("knock server ready", Duration::from_secs(10));

    // Each guards its own port; A knocks on each.
    lab.expect_filtered(&[(A, V4), (B, V4)]);
    lab.knock(&[(A, V4)]);
    let mut knock_web = lab.lan.clients[A].command(bin("knock-client"));
    knock_web
        .args(["--target", HOST[0], "--sequence", WEB_SEQUENCE])
        .args(["--protected-port", &WEB_PORT.to_string()])
        .args([
            "--delay",
            "0.05",
            "--check",
            "--wait",
            "0.2",
            "--timeout",
            "1",
        ]);
    run(knock_web, Duration::from_secs(30)).expect_code(0);

    // Stopping the second leaves the first one's rules and grant.
    let status = web.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "{}", web.logs());
    let rules = lab.lan.host.rules();
    assert!(
        !rules.contains("portknock-web") && !rules.contains("PORTKNOCK-web"),
        "{rules}"
    );
    lab.expect_filtered(&[(B, V4)]);
    lab.read_flag((A, V4));
    lab.stop_server();
}

#[test]
fn nftables_second_server_of_the_same_instance_is_refused() {
    let t = "nftables_second_server_of_the_same_instance_is_refused";
    second_of_the_same_instance_is_refused(t, "inst-nft-1", Backend::Nftables);
}

#[test]
fn iptables_second_server_of_the_same_instance_is_refused() {
    let t = "iptables_second_server_of_the_same_instance_is_refused";
    second_of_the_same_instance_is_refused(t, "inst-ipt-1", Backend::Iptables);
}

#[test]
fn nftables_two_instances_side_by_side() {
    let t = "nftables_two_instances_side_by_side";
    two_instances_side_by_side(t, "inst-nft-2", Backend::Nftables);
}

#[test]
fn iptables_two_instances_side_by_side() {
    let t = "iptables_two_instances_side_by_side";
    two_instances_side_by_side(t, "inst-ipt-2", Backend::Iptables);
}
