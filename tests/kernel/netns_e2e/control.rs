//! Issue 13, for each kernel backend: `knockctl` against the real server
//! in the lab. A manual grant opens the port for B; `revoke` shuts B out
//! at once; `flush` leaves the ruleset exactly as right after start
//! (compared as `iptables-save`, `ip6tables-save` and `nft list ruleset`
//! print it), and stopping leaves it as before the server started.

use std::fs::Permissions;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::lab::{A, B, Backend, CLIENTS, Lab, Timing, V4, V6};
use crate::util::{bin, run};

fn knockctl(socket: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin("knockctl"));
    cmd.arg("--socket").arg(socket).args(args);
    run(cmd, Duration::from_secs(10)).expect_code(0).stdout
}

/// Waits (bounded) until the host's rules equal `want`.
fn wait_rules(lab: &Lab, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = lab.lan.host.rules();
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rules differ:\n--- want\n{want}\n--- now\n{now}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn control(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: 30,
        lockout: 3,
    };
    let Some(mut lab) = Lab::prepare(test, tag, backend, timing) else {
        return;
    };
    // The control socket lives in the packet process, which runs as an
    // unprivileged user under the privilege split: it must be able to
    // create the socket there (as systemd's RuntimeDirectory= allows).
    let dir = tempfile::tempdir().unwrap();
    let sticky: Permissions = std::os::unix::fs::PermissionsExt::from_mode(0o1777);
    std::fs::set_permissions(dir.path(), sticky).unwrap();
    let socket = dir.path().join("control.sock");
    lab.start_server_with(&["--control-socket", &socket.display().to_string()]);
    let after_start = lab.lan.host.rules();

    lab.knock(&[(A, V4), (A, V6)]);
    let out = knockctl(&socket, &["grant", CLIENTS[B][0], "--for", "60s"]);
    assert!(out.contains("granted"), "{out}");
    lab.read_flag((B, V4));
    let list = knockctl(&socket, &["list"]);
    assert!(list.contains("manual") && list.contains("knock"), "{list}");

    knockctl(&socket, &["revoke", CLIENTS[B][0]]);
    lab.wait_rules_without(CLIENTS[B][0]);
    lab.expect_filtered(&[(B, V4)]);
    lab.read_flag((A, V4));

    let out = knockctl(&socket, &["flush"]);
    assert!(out.contains("flushed 2 grants"), "{out}");
    wait_rules(&lab, &after_start);
    lab.expect_filtered(&[(A, V4), (A, V6)]);
    lab.stop_server();
}

#[test]
fn nftables_revoke_and_flush_over_the_control_socket() {
    control(
        "nftables_revoke_and_flush_over_the_control_socket",
        "ctl-nft",
        Backend::Nftables,
    );
}

#[test]
fn iptables_revoke_and_flush_over_the_control_socket() {
    control(
        "iptables_revoke_and_flush_over_the_control_socket",
        "ctl-ipt",
        Backend::Iptables,
    );
}
