//! Sweeps and decoys, and lockouts a spoofer cannot aim (issue 14, "Must
//! show"), on loopback with the real knock-server and the userspace gate.
//!
//! - A plain sequential UDP sender, and `nmap -sU -r` (ports in order),
//!   over a range holding an ascending fixed door: it opens with decoys off
//!   (the seed's weakness, so the test would catch a regression), never
//!   with decoys on; over a whole rotating range it never opens.
//! - A wrong knock carrying a legitimate client's address (on loopback the
//!   attacker binds the victim's address, which is what a forged source
//!   looks like to the server) does not keep that client out of a rotating
//!   door, while the seed's fixed door keeps its 5 s lockout.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Proc, Reached, bin, connect_from, free_port, knock_from, loopback, run};

const LIMIT: Duration = Duration::from_secs(30);

/// A base for fixed knock ports below the ephemeral range (no free port
/// another test picks lands there), per process.
fn base(test: u16) -> u16 {
    20_000 + (std::process::id() % 300) as u16 * 40 + test * 20
}

fn start(dir: &Path, text: &str) -> Proc {
    let path = dir.join("portknock.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn_logging(cmd, "info");
    server.wait_for("knock server ready", LIMIT);
    server
}

fn ascending(knocks: [u16; 3], protected: u16, decoys: bool) -> String {
    format!(
        r#"bind = ["127.0.0.1"]
firewall = "userspace"

[[door]]
name = "asc"
sequence = [{}, {}, {}]
window = "10s"
access = "1m"
lockout = "5s"
protected = ["tcp/{protected}"]
decoys = {decoys}
"#,
        knocks[0], knocks[1], knocks[2]
    )
}

/// One datagram to every port of `lo..=hi` in order from `source`, paced
/// (a short pause every 64), bounded by the range.
fn sweep(source: &str, lo: u16, hi: u16) {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    for (i, port) in (lo..=hi).enumerate() {
        let _ = socket.send_to(b"x", ("127.0.0.1", port));
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn an_ordered_sweep_opens_the_ascending_door_without_decoys_and_never_with_them() {
    let b = base(0);
    let knocks = [b + 3, b + 9, b + 15];
    for (decoys, source) in [(false, "127.0.0.31"), (true, "127.0.0.32")] {
        let dir = tempfile::tempdir().unwrap();
        let protected = free_port();
        let server = start(dir.path(), &ascending(knocks, protected, decoys));
        sweep(source, b, b + 19);
        let reached = connect_from(source, loopback(protected));
        let opened = matches!(reached, Reached::Served(_));
        assert_eq!(
            opened,
            !decoys,
            "decoys {decoys}: {reached:?}\n{}",
            server.logs()
        );
        drop(server);
    }
}

#[test]
fn nmap_udp_in_port_order_opens_the_ascending_door_without_decoys_and_never_with_them() {
    let b = base(1);
    let knocks = [b + 3, b + 9, b + 15];
    for decoys in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let protected = free_port();
        let server = start(dir.path(), &ascending(knocks, protected, decoys));
        let mut nmap = Command::new("nmap");
        nmap.args([
            "-sU",
            "-r",
            "-n",
            "-Pn",
            "--max-retries",
            "0",
            "--host-timeout",
            "20s",
        ])
        .args(["-p", &format!("{}-{}", b, b + 19), "127.0.0.1"]);
        run(nmap, LIMIT).expect_code(0);
        std::thread::sleep(Duration::from_millis(300));
        let reached = connect_from("127.0.0.1", loopback(protected));
        let opened = matches!(reached, Reached::Served(_));
        assert_eq!(
            opened,
            !decoys,
            "decoys {decoys}: {reached:?}\n{}",
            server.logs()
        );
    }
}

fn rotating(key: &Path, protected: u16, range: &str) -> String {
    format!(
        r#"bind = ["127.0.0.1"]
firewall = "userspace"

[[door]]
name = "web"
sequence = {{ rotate = "{}", period = "30s", length = 6, ports = "{range}" }}
window = "10s"
access = "1m"
lockout = "5s"
protected = ["tcp/{protected}"]
"#,
        key.display()
    )
}

fn keygen(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("door.key");
    let mut cmd = Command::new(bin("knock-client"));
    cmd.arg("--keygen").arg(&key);
    run(cmd, LIMIT).expect_code(0);
    key
}

#[test]
fn an_ordered_sweep_over_a_whole_rotating_range_never_opens() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let server = start(dir.path(), &rotating(&key, protected, "15100-15899"));
    sweep("127.0.0.33", 15_100, 15_899);
    let reached = connect_from("127.0.0.33", loopback(protected));
    assert_eq!(reached, Reached::Reset, "{}", server.logs());
}

#[test]
fn a_forged_wrong_knock_does_not_keep_a_rotating_doors_client_out_but_the_seeds_lockout_stays() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let server = start(dir.path(), &rotating(&key, protected, "16100-16899"));
    // The attacker's wrong knock, carrying the victim's address, on a
    // port the server hears (a decoy of... any heard port: take the log).
    let victim = "127.0.0.41";
    let heard = heard_port(&key);
    knock_from(victim, heard);
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.printed("locked out"), "{}", server.logs());
    let mut client = Command::new(bin("knock-client"));
    client
        .args(["--target", "127.0.0.1", "--door", "web"])
        .arg("--door-key")
        .arg(&key)
        .args(["--period", "30s", "--length", "6", "--ports", "16100-16899"])
        .args(["--protected-port", &protected.to_string()])
        .args([
            "--source", victim, "--delay", "0.05", "--wait", "0.3", "--check",
        ]);
    run(client, LIMIT).expect_code(0);

    // The seed's flags: the same forged knock keeps the victim out 5 s.
    let spec = crate::util::ServerSpec::new();
    let _seed = spec.start();
    knock_from(victim, spec.sequence[1]);
    std::thread::sleep(Duration::from_millis(200));
    let mut client = spec.client(victim);
    client.arg("--check");
    run(client, LIMIT).expect_code(1);
}

/// A port the rotating door hears that is not the first knock of any
/// accepted sequence: the decoy just above this period's first knock.
fn heard_port(key: &Path) -> u16 {
    use portknock::rotate::{DoorKey, MIN_ENTROPY_BITS, Rotation};
    let r = Rotation::new(Duration::from_secs(30), 6, "16100-16899", MIN_ENTROPY_BITS).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    r.sequence(&DoorKey::load(key).unwrap(), "web", r.period_at(now))[0] + 1
}
