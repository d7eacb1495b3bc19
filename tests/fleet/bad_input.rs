//! Bad fleet input on loopback (userspace gate, no root): an unreachable
//! engine at start (per the policy: starts and says so), credentials the
//! server refuses (exit 2, clear message), a group-readable key file, a
//! bad `[fleet]` table (line and column).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Proc, bin, free_port, free_ports, run};

fn key(dir: &Path, mode: u32) -> String {
    let path = dir.join("group.key");
    std::fs::write(&path, "loopback-group-key-0123456789").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

fn config(dir: &Path, fleet: &str) -> std::path::PathBuf {
    let ports = free_ports(4);
    let text = format!(
        r#"bind = ["127.0.0.1"]
firewall = "userspace"

[fleet]
{fleet}

[[door]]
name = "ssh"
sequence = [{}, {}, {}]
protected = ["tcp/{}"]
fleet = true
"#,
        ports[0], ports[1], ports[2], ports[3]
    );
    let path = dir.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn server(config: &Path) -> Command {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config").arg(config);
    cmd
}

#[test]
fn an_unreachable_engine_at_start_is_reported_and_the_node_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = format!(
        "url = \"nats://127.0.0.1:{}\"\ngroup = \"g\"\nnode = \"n\"\nkey-file = \"{}\"",
        free_port(),
        key(dir.path(), 0o600)
    );
    let mut node = Proc::spawn(server(&config(dir.path(), &fleet)));
    node.wait_for("fleet engine unreachable at start", Duration::from_secs(10));
    node.wait_for("knock server ready", Duration::from_secs(10));
    assert!(node.printed("grant-locally"), "{}", node.logs());
    let status = node.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "{}", node.logs());
}

#[test]
fn credentials_the_server_refuses_stop_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut nats = Command::new("nats-server");
    nats.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path().join("js"))
        .args(["--user", "portknock", "--pass", "right-password"]);
    let mut nats = Proc::spawn(nats);
    nats.wait_for("Server is ready", Duration::from_secs(10));
    let fleet = format!(
        "url = \"nats://127.0.0.1:{port}\"\ngroup = \"g\"\nnode = \"n\"\nkey-file = \"{}\"\nuser = \"portknock\"\npassword = \"wrong-password\"",
        key(dir.path(), 0o600)
    );
    let out = run(server(&config(dir.path(), &fleet)), Duration::from_secs(15)).expect_code(2);
    assert!(
        out.stderr.contains("refused the connection") && !out.stderr.contains("wrong-password"),
        "{}",
        out.describe()
    );
    nats.signal_and_wait("TERM", Duration::from_secs(5));
}

#[test]
fn a_group_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = format!(
        "url = \"nats://127.0.0.1:{}\"\ngroup = \"g\"\nnode = \"n\"\nkey-file = \"{}\"",
        free_port(),
        key(dir.path(), 0o640)
    );
    let out = run(server(&config(dir.path(), &fleet)), Duration::from_secs(15)).expect_code(2);
    assert!(out.stderr.contains("chmod 600"), "{}", out.describe());
}

#[test]
fn a_bad_fleet_table_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = "url = \"http://127.0.0.1:4222\"\ngroup = \"g\"\nnode = \"n\"\nkey-file = \"k\"";
    let out = run(server(&config(dir.path(), fleet)), Duration::from_secs(15)).expect_code(2);
    assert!(
        out.stderr.contains("server.toml:4:") && out.stderr.contains("http://127.0.0.1:4222"),
        "{}",
        out.describe()
    );
}

#[test]
fn the_fleet_flags_share_the_flags_door_and_refuse_bad_names() {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args(["--check-config", "--firewall", "userspace"])
        .args([
            "--fleet-url",
            "nats://127.0.0.1:4222",
            "--fleet-group",
            "bastions",
        ])
        .args(["--fleet-key", "/nonexistent/key", "--fleet-node", "a"]);
    let out = run(cmd, Duration::from_secs(10)).expect_code(0);
    assert!(
        out.stdout.contains("[fleet]") && out.stdout.contains("fleet = true"),
        "{}",
        out.describe()
    );
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args(["--check-config", "--fleet-url", "nats://127.0.0.1:4222"])
        .args(["--fleet-group", "a.b", "--fleet-key", "k"]);
    let out = run(cmd, Duration::from_secs(10)).expect_code(2);
    assert!(
        out.stderr.contains("invalid fleet group 'a.b'"),
        "{}",
        out.describe()
    );
}

#[test]
fn policy_refuse_keeps_fleet_doors_closed_while_the_engine_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = format!(
        "url = \"nats://127.0.0.1:{}\"\ngroup = \"g\"\nnode = \"n\"\nkey-file = \"{}\"\nwhen-unreachable = \"refuse\"",
        free_port(),
        key(dir.path(), 0o600)
    );
    let path = config(dir.path(), &fleet);
    let text = std::fs::read_to_string(&path).unwrap();
    let ports: Vec<u16> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .filter(|&p| p > 1024)
        .collect();
    let (sequence, protected) = (
        &ports[ports.len() - 4..ports.len() - 1],
        ports[ports.len() - 1],
    );
    let mut node = Proc::spawn(server(&path));
    node.wait_for("knock server ready", Duration::from_secs(10));
    for &port in sequence {
        crate::util::knock_from("127.0.0.1", port);
        std::thread::sleep(Duration::from_millis(30));
    }
    node.wait_for("fleet door grant refused", Duration::from_secs(5));
    let reached = crate::util::connect_from("127.0.0.1", crate::util::loopback(protected));
    assert!(
        matches!(reached, crate::util::Reached::Reset),
        "served while refusing\n{}",
        node.logs()
    );
}
