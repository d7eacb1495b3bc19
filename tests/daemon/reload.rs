//! Reload: new knock rules swapped into a running daemon.

use std::time::Duration;

use portknock::config::file;

use super::in_process::{Running, door_file, knock, opens_within, served};
use crate::util::{Proc, Reached, bin, connect_from, free_port, free_ports, knock_from, loopback};

/// Waits (bounded) for the daemon to take a reload: `probe` knocks the new
/// sequence until it opens.
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn reload_changes_the_sequence_and_keeps_the_open_grant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let old = free_ports(3);
    let new = free_ports(3);
    let protected = free_port();
    std::fs::write(&path, door_file(&old, protected, "1m")).unwrap();
    let running = Running::start(file::load(&path).unwrap(), Some(&path));
    assert!(opens_within("127.0.0.2", &old, protected, LIMIT));

    std::fs::write(&path, door_file(&new, protected, "1m")).unwrap();
    running.reload.blocking_send(()).unwrap();
    assert!(
        opens_within("127.0.0.3", &new, protected, LIMIT),
        "the new sequence never opened"
    );
    // The grant opened before the reload stays.
    assert!(served(&connect_from("127.0.0.2", loopback(protected))));
    // The old sequence no longer opens.
    knock("127.0.0.4", &old);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        connect_from("127.0.0.4", loopback(protected)),
        Reached::Reset
    );
    running.stop().unwrap();
}

#[test]
fn an_invalid_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let sequence = free_ports(3);
    let protected = free_port();
    std::fs::write(&path, door_file(&sequence, protected, "1m")).unwrap();
    let running = Running::start(file::load(&path).unwrap(), Some(&path));
    assert!(opens_within("127.0.0.2", &sequence, protected, LIMIT));
    // Half a sequence from another source, then a broken file.
    knock("127.0.0.3", &sequence[..2]);
    std::fs::write(
        &path,
        "[[door]]\nname = \"ssh\"\nsequence = []\nbogus = 1\n",
    )
    .unwrap();
    running.reload.blocking_send(()).unwrap();
    // A reload that is refused is one that is still running: send another
    // request so the first is surely handled before we look.
    running.reload.blocking_send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    knock_from("127.0.0.3", sequence[2]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        served(&connect_from("127.0.0.3", loopback(protected))),
        "the half-done source lost its progress"
    );
    assert!(served(&connect_from("127.0.0.2", loopback(protected))));
    assert!(opens_within("127.0.0.5", &sequence, protected, LIMIT));
    running.stop().unwrap();
}

#[test]
fn sighup_reloads_the_binary_and_a_bad_file_is_logged_and_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let old = free_ports(3);
    let new = free_ports(3);
    let protected = free_port();
    std::fs::write(&path, door_file(&old, protected, "1m")).unwrap();
    let mut cmd = std::process::Command::new(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", LIMIT);
    assert!(opens_within("127.0.0.2", &old, protected, LIMIT));

    std::fs::write(&path, "window = 3\n").unwrap();
    server.signal("HUP");
    server.wait_for("reload refused", LIMIT);
    assert!(server.printed("unknown field"), "{}", server.logs());

    std::fs::write(&path, door_file(&new, protected, "1m")).unwrap();
    server.signal("HUP");
    server.wait_for("configuration reloaded", LIMIT);
    assert!(opens_within("127.0.0.3", &new, protected, LIMIT));
    assert!(served(&connect_from("127.0.0.2", loopback(protected))));
    assert!(server.running(), "SIGHUP must not stop the server");
    let status = server.signal_and_wait("TERM", LIMIT);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_reload_that_keeps_the_door_keeps_a_half_done_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let sequence = free_ports(3);
    let protected = free_port();
    std::fs::write(&path, door_file(&sequence, protected, "1m")).unwrap();
    let running = Running::start(file::load(&path).unwrap(), Some(&path));
    // Served once, so the daemon is surely up before the half sequence.
    assert!(opens_within("127.0.0.2", &sequence, protected, LIMIT));
    knock("127.0.0.3", &sequence[..2]);
    // The same door, the file rewritten: the reload goes through.
    std::fs::write(&path, door_file(&sequence, protected, "1m")).unwrap();
    running.reload.blocking_send(()).unwrap();
    running.reload.blocking_send(()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    knock_from("127.0.0.3", sequence[2]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        served(&connect_from("127.0.0.3", loopback(protected))),
        "the half-done source lost its progress"
    );
    running.stop().unwrap();
}
