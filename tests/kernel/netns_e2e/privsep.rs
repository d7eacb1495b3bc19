//! Issue 13, least privilege: started as root with a kernel backend, the
//! server splits (`--privilege-split auto`) into a packet process with no
//! capability, running as an unprivileged user, and a firewall helper
//! that keeps CAP_NET_ADMIN. Here, for each kernel backend: the process
//! that decodes knocks and SPA packets (the helper's child) has every
//! capability set empty and cannot change the ruleset; knocks and SPA
//! still open the door; killing either process leaves no rule open to
//! strangers.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::lab::{A, B, Backend, CLIENTS, HOST, Lab, PORT, Timing, V4};
use crate::util::bin;
use crate::util::spa::{HMAC, KEY};

const TIMING: Timing = Timing {
    access: 30,
    lockout: 3,
};

/// The packet process: the one child of the server (the helper).
fn packet_pid(lab: &mut Lab) -> u32 {
    let helper = lab.server().pid();
    let children = std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
        .unwrap_or_default();
    let pids: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "the helper has one child: {pids:?}\n{}",
        lab.server().logs()
    );
    pids[0]
}

/// A field of /proc/PID/status.
fn status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn nobody() -> String {
    // The user the packet process runs as without --user on this machine
    // (no `portknock` user here): nobody.
    let out = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn check_split(lab: &mut Lab) -> u32 {
    let pid = packet_pid(lab);
    let uid = nobody();
    for field in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(
            status(pid, field),
            "0000000000000000",
            "{field} of the packet process {pid}"
        );
    }
    assert_eq!(status(pid, "NoNewPrivs"), "1");
    let uids = status(pid, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == uid),
        "Uid {uids}, not {uid}"
    );
    // The helper keeps NET_ADMIN (12), NET_RAW (13), DAC_READ_SEARCH (2)
    // and KILL (5), nothing else.
    let helper = lab.server().pid();
    let eff = u64::from_str_radix(&status(helper, "CapEff"), 16).unwrap();
    assert_eq!(
        eff,
        1 << 12 | 1 << 13 | 1 << 2 | 1 << 5,
        "the helper's CapEff"
    );
    assert!(
        lab.server().printed("every capability dropped"),
        "{}",
        lab.server().logs()
    );
    pid
}

/// With the packet process's credentials (its uid and gid, no capability)
/// in the server host's namespace, `nft` cannot add a table.
fn cannot_change_rules(lab: &Lab) {
    let uid = nobody();
    let before = lab.lan.host.rules();
    let mut cmd = lab.lan.host.command("setpriv");
    cmd.args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ])
        .args(["nft", "add", "table", "inet", "evil"]);
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success(),
        "nft add table succeeded as the packet process"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.lan.host.rules(), before);
}

fn knocks_open_and_capabilities_are_gone(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::start(test, tag, backend, TIMING) else {
        return;
    };
    check_split(&mut lab);
    cannot_change_rules(&lab);
    lab.expect_filtered(&[(A, V4), (B, V4)]);
    lab.knock(&[(A, V4)]);
    lab.read_flag((A, V4));
    lab.expect_filtered(&[(B, V4)]);
    lab.stop_server();
}

#[test]
fn nftables_split_packet_process_has_no_capability_and_knocks_open() {
    knocks_open_and_capabilities_are_gone(
        "nftables_split_packet_process_has_no_capability_and_knocks_open",
        "ps-nft",
        Backend::Nftables,
    );
}

#[test]
fn iptables_split_packet_process_has_no_capability_and_knocks_open() {
    knocks_open_and_capabilities_are_gone(
        "iptables_split_packet_process_has_no_capability_and_knocks_open",
        "ps-ipt",
        Backend::Iptables,
    );
}

/// SPA through the split: the access file and the replay cache's
/// directory belong to the packet process's user.
fn spa_opens(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::prepare(test, tag, backend, TIMING) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uid: u32 = nobody().parse().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let access = dir.path().join("access.conf");
    std::fs::write(
        &access,
        format!(
            "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/{PORT}\nFW_ACCESS_TIMEOUT 30\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cache = dir.path().join("replay");
    let (access, cache) = (access.display().to_string(), cache.display().to_string());
    let mut server = crate::util::Proc::spawn(lab.server_command(&[
        "--no-sequence",
        "--spa",
        "--spa-access",
        &access,
        "--spa-replay-cache",
        &cache,
    ]));
    server.wait_for("knock server ready", Duration::from_secs(10));
    lab.server = Some(server);
    check_split(&mut lab);
    lab.expect_filtered(&[(A, V4)]);
    let mut cmd = lab.lan.clients[A].command(bin("knock-client"));
    cmd.args([
        "--target",
        HOST[0],
        "--spa",
        "--access",
        &format!("tcp/{PORT}"),
    ])
    .args(["--key-base64", KEY, "--hmac-key-base64", HMAC])
    .args(["--allow-ip", CLIENTS[A][0]]);
    let out = crate::util::run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", out.describe());
    for _ in 0..100 {
        if lab.lan.host.rules().contains(CLIENTS[A][0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.read_flag((A, V4));
    lab.expect_filtered(&[(B, V4)]);
    lab.stop_server();
}

#[test]
fn nftables_split_spa_opens_the_door() {
    spa_opens(
        "nftables_split_spa_opens_the_door",
        "ps-nspa",
        Backend::Nftables,
    );
}

#[test]
fn iptables_split_spa_opens_the_door() {
    spa_opens(
        "iptables_split_spa_opens_the_door",
        "ps-ispa",
        Backend::Iptables,
    );
}

/// SIGKILL of the packet process: the helper removes every rule it added
/// and exits 1.
fn packet_death(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::start(test, tag, backend, TIMING) else {
        return;
    };
    lab.knock(&[(A, V4)]);
    let pid = packet_pid(&mut lab);
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let mut helper = lab.server.take().unwrap();
    let status = helper.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", helper.logs());
    assert!(
        helper.printed("the packet process ended"),
        "{}",
        helper.logs()
    );
    assert_eq!(
        lab.lan.host.rules(),
        lab.rules_before,
        "rules left after the packet process died"
    );
}

#[test]
fn nftables_packet_process_death_removes_the_rules() {
    packet_death(
        "nftables_packet_process_death_removes_the_rules",
        "ps-nkp",
        Backend::Nftables,
    );
}

#[test]
fn iptables_packet_process_death_removes_the_rules() {
    packet_death(
        "iptables_packet_process_death_removes_the_rules",
        "ps-ikp",
        Backend::Iptables,
    );
}

/// SIGKILL of the helper: the packet process dies with it (nobody would
/// apply its revokes), and strangers stay shut out by the rules left.
fn helper_death(test: &str, tag: &str, backend: Backend) {
    let Some(mut lab) = Lab::start(test, tag, backend, TIMING) else {
        return;
    };
    lab.knock(&[(A, V4)]);
    let pid = packet_pid(&mut lab);
    lab.kill_server();
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || status(pid, "State").starts_with('Z')
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists()
        || status(pid, "State").starts_with('Z');
    assert!(gone, "the packet process {pid} outlived its helper");
    lab.expect_filtered(&[(B, V4)]);
}

#[test]
fn nftables_helper_death_takes_the_packet_process_and_strangers_stay_out() {
    helper_death(
        "nftables_helper_death_takes_the_packet_process_and_strangers_stay_out",
        "ps-nkh",
        Backend::Nftables,
    );
}

#[test]
fn iptables_helper_death_takes_the_packet_process_and_strangers_stay_out() {
    helper_death(
        "iptables_helper_death_takes_the_packet_process_and_strangers_stay_out",
        "ps-ikh",
        Backend::Iptables,
    );
}
