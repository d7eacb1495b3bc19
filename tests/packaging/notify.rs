//! `Type=notify` as systemd sees it: the test binds a Unix datagram socket,
//! hands its path to the real `knock-server` in `NOTIFY_SOCKET`, and reads
//! what the daemon says: `READY=1` once it serves (its knock ports open the
//! door), `RELOADING=1` with `MONOTONIC_USEC` then `READY=1` around every
//! SIGHUP (a refused reload too), `STOPPING=1` at the end.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Proc, bin, connect_from, free_port, free_ports, knock_from, loopback};

/// Bound on every wait.
const LIMIT: Duration = Duration::from_secs(10);

/// The fake service manager's end.
struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next notification (one datagram, its lines), within `LIMIT`.
    fn next(&self) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let left = deadline.saturating_duration_since(Instant::now());
        self.socket.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within the limit");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Nothing more arrives within `wait`.
    fn quiet(&self, wait: Duration) -> bool {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        self.socket.recv(&mut buf).is_err()
    }
}

fn door_file(sequence: &[u16], protected: u16) -> String {
    let seq: Vec<String> = sequence.iter().map(u16::to_string).collect();
    format!(
        "bind = [\"127.0.0.1\"]\nfirewall = \"userspace\"\n\n[[door]]\nname = \"ssh\"\nsequence = [{}]\nwindow = \"10s\"\naccess = \"1m\"\nlockout = \"1s\"\nprotected = [\"tcp/{protected}\"]\n",
        seq.join(", ")
    )
}

#[track_caller]
fn assert_has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want || l.starts_with(want)),
        "no {want:?} in {lines:?}"
    );
}

#[test]
fn the_daemon_notifies_ready_reloading_and_stopping() {
    let manager = Manager::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let sequence = free_ports(3);
    let protected = free_port();
    std::fs::write(&path, door_file(&sequence, protected)).unwrap();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config")
        .arg(&path)
        .args(["--control-socket", "none"])
        .env("NOTIFY_SOCKET", &manager.path);
    let mut server = Proc::spawn(cmd);

    let ready = manager.next();
    assert_has(&ready, "READY=1");
    assert_has(&ready, "STATUS=ready: firewall userspace");
    // Ready means serving: the knock sockets and the gate are up.
    for port in &sequence {
        knock_from("127.0.0.2", *port);
    }
    let deadline = Instant::now() + LIMIT;
    while !matches!(
        connect_from("127.0.0.2", loopback(protected)),
        crate::util::Reached::Served(_)
    ) {
        assert!(Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    }

    // A good reload: RELOADING=1 with the clock, then READY=1.
    server.signal("HUP");
    let reloading = manager.next();
    assert_has(&reloading, "RELOADING=1");
    assert_has(&reloading, "MONOTONIC_USEC=");
    let reloaded = manager.next();
    assert_has(&reloaded, "READY=1");
    assert_has(&reloaded, "STATUS=ready: configuration reloaded");

    // A refused reload ends the reload too.
    std::fs::write(&path, "bogus = 1\n").unwrap();
    server.signal("HUP");
    assert_has(&manager.next(), "RELOADING=1");
    let refused = manager.next();
    assert_has(&refused, "READY=1");
    assert_has(&refused, "STATUS=ready: reload refused");
    assert!(server.running(), "{}", server.logs());

    let status = server.signal_and_wait("TERM", LIMIT);
    assert!(status.success(), "{status:?}\n{}", server.logs());
    let stopping = manager.next();
    assert_has(&stopping, "STOPPING=1");
    assert!(manager.quiet(Duration::from_millis(100)));
}

/// Under the privilege split (root, a kernel backend, in a namespace the
/// test makes) the packet process, a child running as another user,
/// notifies: the unit's `NotifyAccess=all`. The socket is reachable by any
/// user, as systemd's `/run/systemd/notify` is.
#[test]
fn under_the_privilege_split_the_packet_process_notifies() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::util::netns::privileged("under_the_privilege_split_the_packet_process_notifies") {
        return;
    }
    let manager = Manager::new();
    let open = std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(manager.path.parent().unwrap(), open.clone()).unwrap();
    std::fs::set_permissions(&manager.path, open).unwrap();
    let ns = crate::util::netns::Netns::new("notify");
    let mut cmd = ns.command(bin("knock-server"));
    cmd.args(["--firewall", "nftables", "--privilege-split", "on"])
        .args([
            "--sequence",
            "41001,41002,41003",
            "--protected-port",
            "42222",
        ])
        .args(["--bind", "127.0.0.1", "--control-socket", "none"])
        .env("NOTIFY_SOCKET", &manager.path);
    let mut server = Proc::spawn(cmd);
    let ready = manager.next();
    assert_has(&ready, "READY=1");
    assert_has(&ready, "STATUS=ready: firewall nftables");
    assert!(ns.rules().contains("portknock"), "{}", ns.rules());
    server.signal("HUP");
    assert_has(&manager.next(), "RELOADING=1");
    assert_has(&manager.next(), "READY=1");
    let status = server.signal_and_wait("TERM", LIMIT);
    assert!(status.success(), "{status:?}\n{}", server.logs());
    assert!(
        server.printed("firewall helper stopped"),
        "no split:\n{}",
        server.logs()
    );
    assert_has(&manager.next(), "STOPPING=1");
    assert!(!ns.rules().contains("portknock"), "{}", ns.rules());
}
