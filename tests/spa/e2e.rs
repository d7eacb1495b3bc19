//! SPA end to end on loopback: the real knock-server (`--spa`, userspace
//! gate) judged against Debian's real `fwknop` client and against our own
//! `knock-client --spa`: access opens for the address and port asked for
//! only, a replayed packet is refused (also after a SIGKILL and restart with
//! the same replay cache), a packet made with another key is refused.
//!
//! Needs `fwknop` (package fwknop-client) for the real-client test: missing,
//! it fails under `CI` and prints a loud SKIPPED line otherwise.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portknock::spa::GeneratedKeys;

use crate::util::spa::{HMAC, KEY, SpaServer, have};
use crate::util::{FLAG, Reached, bin, connect_from, loopback, run};

const WAIT: Duration = Duration::from_secs(10);

/// Runs Debian's fwknop client: asks for `access` for `allow`, saving the
/// packet it sends to `save`.
fn fwknop_send(dir: &Path, port: u16, access: &str, allow: &str, keys: (&str, &str), save: &Path) {
    let rc = dir.join("fwknoprc");
    std::fs::write(&rc, "[default]\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = Command::new("fwknop");
    cmd.arg("--rc-file")
        .arg(&rc)
        .args(["--no-save-args", "--use-hmac", "-A", access, "-a", allow])
        .args(["-D", "127.0.0.1", "-p", &port.to_string()])
        .args(["--key-base64-rijndael", keys.0, "--key-base64-hmac", keys.1])
        .arg("--save-packet")
        .arg(save)
        .env("HOME", dir);
    run(cmd, Duration::from_secs(20)).expect_code(0);
}

fn resend(packet: &Path, port: u16) {
    let text = std::fs::read_to_string(packet).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(text.trim_end().as_bytes(), ("127.0.0.1", port))
        .unwrap();
}

fn served(reached: &Reached) -> bool {
    matches!(reached, Reached::Served(text) if text.contains(FLAG))
}

#[test]
fn fwknop_client_opens_only_what_it_asked_for_once_even_across_a_crash() {
    if !have("fwknop", "fwknop_client_opens_only_what_it_asked_for_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let srv = SpaServer::new(d);
    let mut server = srv.start();
    let protected = loopback(srv.spec.protected_port);
    let keys = (KEY, HMAC);

    // A grant for another port does not open the protected one.
    let other = format!("tcp/{}", srv.other_port);
    fwknop_send(d, srv.spa_port, &other, "127.0.0.4", keys, &d.join("p0"));
    server.wait_for(
        &format!("access granted ip=127.0.0.4 port={}", srv.other_port),
        WAIT,
    );
    assert_eq!(connect_from("127.0.0.4", protected), Reached::Reset);

    // The requested port opens for the named address only.
    let access = format!("tcp/{}", srv.spec.protected_port);
    let saved = d.join("p1");
    fwknop_send(d, srv.spa_port, &access, "127.0.0.2", keys, &saved);
    let granted = format!(
        "access granted ip=127.0.0.2 port={}",
        srv.spec.protected_port
    );
    server.wait_for(&granted, WAIT);
    assert!(
        served(&connect_from("127.0.0.2", protected)),
        "{}",
        server.logs()
    );
    assert_eq!(connect_from("127.0.0.3", protected), Reached::Reset);

    // The same packet again is refused.
    resend(&saved, srv.spa_port);
    server.wait_for("code=\"replay\"", WAIT);
    assert_eq!(server.count(&granted), 1, "{}", server.logs());

    // Another key is refused before any decryption.
    let stranger = GeneratedKeys::generate().unwrap();
    let (k, h) = (stranger.key_base64(), stranger.hmac_key_base64());
    fwknop_send(
        d,
        srv.spa_port,
        &access,
        "127.0.0.5",
        (&k, &h),
        &d.join("p2"),
    );
    server.wait_for("code=\"hmac_mismatch\"", WAIT);
    assert_eq!(connect_from("127.0.0.5", protected), Reached::Reset);
    assert!(!server.printed("ip=127.0.0.5"), "{}", server.logs());

    // After a SIGKILL, the same replay cache still refuses the packet.
    server.signal_and_wait("KILL", WAIT);
    assert!(srv.cache.exists());
    let mut restarted = srv.start();
    resend(&saved, srv.spa_port);
    restarted.wait_for("code=\"replay\"", WAIT);
    assert!(!restarted.printed("access granted"), "{}", restarted.logs());
    assert_eq!(connect_from("127.0.0.2", protected), Reached::Reset);
}

fn our_client(srv: &SpaServer, source: &str) -> Command {
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--spa", "--target", "127.0.0.1", "--source", source])
        .args(["--server-port", &srv.spa_port.to_string()])
        .args(["--access", &format!("tcp/{}", srv.spec.protected_port)])
        .args(["--key-base64", KEY, "--hmac-key-base64", HMAC]);
    cmd
}

#[test]
fn our_client_opens_our_server_and_the_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let srv = SpaServer::new(dir.path());
    let mut server = srv.start();
    let protected = loopback(srv.spec.protected_port);

    let mut cmd = our_client(&srv, "127.0.0.6");
    cmd.args(["--check", "--wait", "0.2", "--timeout-request", "45"]);
    let out = run(cmd, Duration::from_secs(20)).expect_code(0);
    for line in [
        "[*] Access: tcp/",
        "for 127.0.0.6 (timeout: 45s requested)",
        "[+] SPA packet sent",
        "[+] SUCCESS!",
    ] {
        assert!(out.stdout.contains(line), "{line}\n{}", out.describe());
    }
    let granted = format!(
        "access granted ip=127.0.0.6 port={} access_secs=45",
        srv.spec.protected_port
    );
    assert!(server.printed(&granted), "{}", server.logs());
    assert_eq!(connect_from("127.0.0.7", protected), Reached::Reset);

    // A wrong key: the packet goes out, the check fails (exit 1).
    let stranger = GeneratedKeys::generate().unwrap();
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--spa", "--target", "127.0.0.1", "--source", "127.0.0.8"])
        .args(["--server-port", &srv.spa_port.to_string()])
        .args(["--access", &format!("tcp/{}", srv.spec.protected_port)])
        .args(["--key-base64", &stranger.key_base64()])
        .args(["--hmac-key-base64", &stranger.hmac_key_base64()])
        .args(["--check", "--wait", "0.2", "--timeout", "1"]);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(out.stdout.contains("FAILED"), "{}", out.describe());
    server.wait_for("code=\"hmac_mismatch\"", WAIT);
}
