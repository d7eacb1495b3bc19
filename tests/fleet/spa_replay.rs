//! SPA fleet-wide replay (issue 15): a packet built by Debian's real
//! `fwknop` client, accepted by node A, then replayed to node B (whose own
//! replay cache has never seen it, as with one fwknopd per host), is
//! refused by B because A created its digest in the group's bucket.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use super::lab::{FleetLab, KNOCKER, MEMBERS};
use crate::util::spa::{HMAC, KEY, have};

const SPA_PORT: u16 = 62201;

/// The uid of `nobody`, the packet process's user here.
fn nobody() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The packet the real client builds (not sent) for `allow`, at `node`.
fn fwknop_packet(node: &str, allow: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("packet");
    let mut cmd = Command::new("fwknop");
    cmd.args(["--no-rc-file", "--no-save-args", "--test", "-D", node])
        .arg("--save-packet")
        .arg(&out)
        .args(["--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC])
        .args(["--use-hmac", "-U", "tester", "-A", "tcp/2222", "-a", allow])
        .env("HOME", dir.path());
    let output = cmd.output().expect("run fwknop");
    assert!(output.status.success(), "{output:?}");
    std::fs::read_to_string(&out)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn an_spa_packet_accepted_on_a_and_replayed_to_b_is_refused() {
    if !have("fwknop", "fleet::spa_replay") {
        return;
    }
    let Some(mut lab) = FleetLab::new("fleet::spa_replay", "fls", 20) else {
        return;
    };
    // The packet process of the privilege split runs as nobody: the
    // access file and the replay caches' directory are its own.
    let spa_dir = lab.dir.path().join("spa");
    std::fs::create_dir(&spa_dir).unwrap();
    let access = spa_dir.join("access.conf");
    std::fs::write(
        &access,
        format!("SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/2222\nFW_ACCESS_TIMEOUT 20\n"),
    )
    .unwrap();
    let uid = nobody();
    for path in [&spa_dir, &access] {
        std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    }
    std::fs::set_permissions(&spa_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    lab.start_nats();
    for node in [0, 1] {
        let spa = format!(
            "[spa]\nport = {SPA_PORT}\naccess = \"{}\"\nreplay-cache = \"{}\"\n",
            access.display(),
            spa_dir.join(format!("replay{node}")).display()
        );
        let config = lab.config(node, "", "");
        let text = std::fs::read_to_string(&config).unwrap();
        // [spa] before [fleet]: a table ends at the next header.
        let text = text.replacen("[fleet]", &format!("{spa}\n[fleet]"), 1);
        std::fs::write(&config, text).unwrap();
        lab.start_node_with(node, &config, "fleet: watching grants");
    }
    let packet = fwknop_packet(MEMBERS[0][0], MEMBERS[KNOCKER][0]);
    let send = |lab: &FleetLab, node: usize| {
        let from = SocketAddr::new(MEMBERS[KNOCKER][0].parse().unwrap(), 0);
        let to = SocketAddr::new(MEMBERS[node][0].parse().unwrap(), SPA_PORT);
        lab.lan.clients[KNOCKER].run(|| {
            UdpSocket::bind(from)
                .unwrap()
                .send_to(packet.as_bytes(), to)
                .unwrap();
        });
    };
    send(&lab, 0);
    lab.node(0)
        .wait_for("spa packet accepted", Duration::from_secs(5));
    lab.wait_served(KNOCKER, 0, Duration::from_secs(3));
    // The SPA grant reaches B through the fleet too.
    lab.wait_served(KNOCKER, 1, Duration::from_secs(3));
    // The replay to B: B's own cache passes it, the fleet's refuses it.
    send(&lab, 1);
    let start = Instant::now();
    while !lab
        .node(1)
        .printed("already accepted by a node of the fleet")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            lab.node(1).logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = lab.node(1).logs();
    assert!(
        !b.lines()
            .any(|l| l.contains("access granted") && l.contains("via=\"spa\"")),
        "B granted the replayed packet\n{b}"
    );
}
