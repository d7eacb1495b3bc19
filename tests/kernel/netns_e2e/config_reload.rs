//! Issue 10: `knock-server --config` with a kernel backend, reloaded with
//! `knock-server --reload` after the door's protected port changed: the
//! firewall follows (the new port dropped for strangers and opened by a
//! knock, the old one no longer in our rules), and SIGTERM still leaves
//! the host's rules as they were.

use std::time::Duration;

use super::lab::{A, B, Backend, HOST, Lab, PORT, Timing, V4};
use crate::util::{Proc, bin, run};

/// The port the door protects before the reload (nothing listens there).
const OLD_PORT: u16 = 2223;

fn config(backend: Backend, port: u16) -> String {
    format!(
        "bind = [\"{}\", \"{}\"]\nfirewall = \"{}\"\n\n[[door]]\nname = \"ssh\"\nsequence = [1234, 5678, 9012]\naccess = \"30s\"\nlockout = \"3s\"\nprotected = [\"tcp/{port}\"]\n",
        HOST[0],
        HOST[1],
        backend.name()
    )
}

fn follows(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: 30,
        lockout: 3,
    };
    let Some(mut lab) = Lab::prepare(test, tag, backend, timing) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    std::fs::write(&path, config(backend, OLD_PORT)).unwrap();
    let mut cmd = lab.lan.host.command(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", Duration::from_secs(10));
    lab.server = Some(server);
    let rules = lab.lan.host.rules();
    assert!(rules.contains(&OLD_PORT.to_string()), "{rules}");

    std::fs::write(&path, config(backend, PORT)).unwrap();
    let mut reload = lab.lan.host.command(bin("knock-server"));
    reload.arg("--reload");
    let out = run(reload, Duration::from_secs(10)).expect_code(0);
    assert!(out.stdout.contains("to reload"), "{}", out.describe());
    lab.wait_logged("configuration reloaded", 1, Duration::from_secs(10));
    assert!(lab.server().printed("protected ports changed"));

    let rules = lab.lan.host.rules();
    assert!(!rules.contains(&OLD_PORT.to_string()), "{rules}");
    lab.expect_filtered(&[(B, V4)]);
    lab.knock(&[(A, V4)]);
    lab.read_flag((A, V4));
    lab.expect_filtered(&[(B, V4)]);
    lab.stop_server();
}

#[test]
fn nftables_follows_a_reloaded_protected_port() {
    follows(
        "nftables_follows_a_reloaded_protected_port",
        "cfg-nft",
        Backend::Nftables,
    );
}

#[test]
fn iptables_follows_a_reloaded_protected_port() {
    follows(
        "iptables_follows_a_reloaded_protected_port",
        "cfg-ipt",
        Backend::Iptables,
    );
}
