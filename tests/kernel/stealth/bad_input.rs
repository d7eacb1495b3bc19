//! Bad input around capture: one line naming the problem, exit 2, nothing
//! applied (the host's rules are as before).

use std::time::Duration;

use super::rig::{Mode, Rig};
use crate::util::{bin, run};

const WAIT: Duration = Duration::from_secs(20);

/// Runs the server with the rig's config and `flags` (instead of the
/// mode's) and expects exit 2 with one error line containing `needle`,
/// and the host's rules unchanged.
fn refused(rig: &Rig, flags: &[&str], needle: &str) {
    let before = rig.lan.host.rules();
    let mut cmd = rig.lan.host.command(bin("knock-server"));
    cmd.args(flags).arg("--config").arg(&rig.config);
    cmd.env("RUST_LOG", "warn");
    let outcome = run(cmd, WAIT).expect_code(2);
    let errors: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("knock-server: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", outcome.describe());
    assert!(errors[0].contains(needle), "{}", outcome.describe());
    assert_eq!(rig.lan.host.rules(), before, "{}", outcome.describe());
}

#[test]
fn unavailable_sources_unknown_interfaces_and_tcp_knocks_with_sockets_exit_2_applying_nothing() {
    let test = "kernel::stealth::bad_input::unavailable";
    // The gate's rig: its replay cache is root's, as these servers run
    // (the kernel-backend cases fail in the split's helper, as root).
    let Some(rig) = Rig::prepare(test, "sb-una", Mode::Packet) else {
        return;
    };
    refused(
        &rig,
        &["--firewall", "userspace", "--capture", "nflog"],
        "--capture nflog needs a kernel firewall backend",
    );
    refused(
        &rig,
        &["--firewall", "nftables", "--interface", "nosuch0"],
        "unknown interface 'nosuch0'",
    );
    refused(
        &rig,
        &["--firewall", "nftables", "--capture", "socket"],
        "TCP knock 2001:tcp cannot be heard with bound sockets",
    );
    // Without CAP_NET_RAW (root otherwise): packet is refused, and auto
    // falls back to sockets, which cannot hear the TCP doors.
    let mut cmd = rig.lan.host.command("capsh");
    cmd.args(["--drop=cap_net_raw", "--"])
        .arg("-c")
        .arg(format!(
            "exec {} --firewall userspace --capture packet --config {}",
            bin("knock-server").display(),
            rig.config.display()
        ));
    let outcome = run(cmd, WAIT).expect_code(2);
    assert!(
        outcome
            .stderr
            .contains("--capture packet needs CAP_NET_RAW"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn an_nflog_group_held_by_another_reader_is_a_clear_error() {
    let test = "kernel::stealth::bad_input::group_taken";
    let Some(mut rig) = Rig::start(test, "sb-grp", Mode::Nftables) else {
        return;
    };
    let mut cmd = rig.server_command(&["--instance", "second"]);
    cmd.env("RUST_LOG", "warn");
    let before = rig.lan.host.rules();
    let outcome = run(cmd, WAIT).expect_code(2);
    assert!(
        outcome
            .stderr
            .contains("NFLOG group 27502 is already read by another process"),
        "{}",
        outcome.describe()
    );
    assert_eq!(rig.lan.host.rules(), before);
    assert!(rig.server().running(), "the first server is unharmed");
}

#[test]
fn an_unknown_protocol_suffix_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[door]]\nname = \"d\"\nsequence = [\"1234:sctp\"]\nprotected = [\"tcp/22\"]\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin("knock-server"));
    cmd.arg("--config").arg(&config).arg("--check-config");
    let outcome = run(cmd, WAIT).expect_code(2);
    assert!(
        outcome.stderr.contains("invalid knock port '1234:sctp'"),
        "{}",
        outcome.describe()
    );
}
