//! A kernel-backend server that crashed (SIGKILL) leaves its table or
//! chain, and with it the DROP on the protected port. A server started
//! next with the userspace gate must not listen silently behind it: without
//! CAP_NET_ADMIN it warns, naming the commands that remove the rules (and
//! those commands work); with it, it removes them and the port answers.

use std::time::Duration;

use portknock::firewall::instance::Instance;
use portknock::firewall::leftovers::{PROBE_TIMEOUT, remove_commands, syn_dropped};

use crate::util::Proc;
use crate::util::bin;
use crate::util::netns::{Netns, privileged};

const PORT: &str = "2222";
const T: Duration = Duration::from_secs(10);

/// `knock-server` in `ns` with `backend`, optionally without CAP_NET_ADMIN.
fn server(ns: &Netns, backend: &str, net_admin: bool) -> Proc {
    let mut cmd = match net_admin {
        true => ns.command(bin("knock-server")),
        false => {
            let mut cmd = ns.command("setpriv");
            cmd.args(["--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"])
                .arg(bin("knock-server"));
            cmd
        }
    };
    // `--deny drop`: the crashed run's leftover rule drops, as the checks
    // below probe for.
    cmd.args([
        "--firewall",
        backend,
        "--bind",
        "127.0.0.1",
        "--deny",
        "drop",
    ])
    .args(["--sequence", "1234,5678,9012", "--protected-port", PORT]);
    let mut proc = Proc::spawn(cmd);
    proc.wait_for("knock server ready", T);
    proc
}

/// Starts a `backend` server and SIGKILLs it; returns the object it left.
fn crash(ns: &Netns, backend: &str) -> &'static str {
    let mut proc = server(ns, backend, true);
    assert!(!proc.signal_and_wait("KILL", T).success());
    let left = match backend {
        "nftables" => "table inet portknock",
        _ => ":PORTKNOCK",
    };
    assert!(ns.rules().contains(left), "no leftover:\n{}", ns.rules());
    left
}

fn stop(mut proc: Proc) {
    let status = proc.signal_and_wait("TERM", T);
    assert!(status.success(), "{}", proc.logs());
}

fn leftovers_are_warned_about_then_removed(test: &str, tag: &str, backend: &str) {
    if !privileged(test) {
        return;
    }
    if portknock::firewall::system::find_tool("setpriv").is_none() {
        assert!(std::env::var_os("CI").is_none(), "setpriv is missing in CI");
        eprintln!("\n*** SKIPPED {test}: setpriv missing ***\n");
        return;
    }
    let ns = Netns::new(tag);
    let left = crash(&ns, backend);
    let port: u16 = PORT.parse().unwrap();
    assert!(
        ns.run(|| syn_dropped(port, PROBE_TIMEOUT)),
        "the leftover drops"
    );

    // Unprivileged: a warning that names the commands; the rules stay.
    let before = ns.rules();
    let proc = server(&ns, "userspace", false);
    let commands = remove_commands(&Instance::default());
    assert!(
        proc.printed("dropped before the gate listens") && proc.printed(&commands[0]),
        "no warning:\n{}",
        proc.logs()
    );
    stop(proc);
    assert_eq!(ns.rules(), before, "an unprivileged server changed rules");

    // The named commands remove the leftover (as root).
    let named: Vec<&String> = match backend {
        "nftables" => vec![&commands[0]],
        _ => vec![&commands[1], &commands[2]],
    };
    for command in named {
        ns.sh(&["sh", "-c", command]);
    }
    assert!(!ns.rules().contains(left), "{}", ns.rules());

    // Privileged: removed at start, and the gate answers.
    crash(&ns, backend);
    let proc = server(&ns, "userspace", true);
    assert!(
        proc.printed("removed kernel rules left by a crashed kernel-backend run"),
        "{}",
        proc.logs()
    );
    let rules = ns.rules();
    assert!(
        !rules.contains("portknock") && !rules.contains("PORTKNOCK"),
        "{rules}"
    );
    assert!(
        !ns.run(|| syn_dropped(port, PROBE_TIMEOUT)),
        "the gate is filtered"
    );
    stop(proc);
}

#[test]
fn nftables_leftovers_are_warned_about_unprivileged_and_removed_privileged() {
    leftovers_are_warned_about_then_removed(
        "nftables_leftovers_are_warned_about_unprivileged_and_removed_privileged",
        "left-nft",
        "nftables",
    );
}

#[test]
fn iptables_leftovers_are_warned_about_unprivileged_and_removed_privileged() {
    leftovers_are_warned_about_then_removed(
        "iptables_leftovers_are_warned_about_unprivileged_and_removed_privileged",
        "left-ipt",
        "iptables",
    );
}
