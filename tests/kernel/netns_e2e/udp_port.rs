//! Issue 10: a door protecting `udp/N` (a WireGuard-like UDP service) with
//! each kernel backend, in the lab's namespaces. A UDP echo responder runs
//! in the server host's namespace on the protected port: a stranger's
//! datagram gets no answer, the knocker's does once the knock opened the
//! door, and a fresh flow of the knocker's gets none after the grant ends
//! (each probe uses a new source port, so no conntrack entry of an earlier
//! probe carries it). The userspace gate cannot guard UDP: it refuses the
//! door with exit 2.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::lab::{A, B, Backend, CLIENTS, HOST, Lab, Timing};
use crate::util::{Proc, bin};

/// The protected UDP port (WireGuard's).
const WG: u16 = 51820;
/// The grant's length, in seconds.
const ACCESS: u64 = 4;

fn config(backend: &str) -> String {
    format!(
        r#"bind = ["{h}"]
firewall = "{backend}"

[[door]]
name = "wg"
sequence = [1234, 5678, 9012]
access = "{ACCESS}s"
lockout = "2s"
protected = ["udp/{WG}"]
"#,
        h = HOST[0],
    )
}

/// Answers every datagram to `socket` with the same bytes until `stop`;
/// at most 1000 answers and 120 s (a bounded loop).
fn echo(socket: UdpSocket, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(120);
        let mut buf = [0u8; 512];
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end && answered < 1000 {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
                answered += 1;
            }
        }
    })
}

/// Whether `client`, from a new socket (a new flow), gets its datagram to
/// the protected port echoed within a second.
fn answered(lab: &Lab, client: usize) -> bool {
    let source: SocketAddr = format!("{}:0", CLIENTS[client][0]).parse().unwrap();
    let to = SocketAddr::new(HOST[0].parse().unwrap(), WG);
    lab.lan.clients[client].run(|| {
        let socket = UdpSocket::bind(source).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        // Three tries: one lost datagram is not a closed port.
        for _ in 0..3 {
            socket.send_to(b"ping", to).unwrap();
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                return from == to && &buf[..n] == b"ping";
            }
        }
        false
    })
}

/// Knocks the door's sequence from `client` (IPv4), 50 ms apart.
fn knock(lab: &Lab, client: usize) {
    let source: SocketAddr = format!("{}:0", CLIENTS[client][0]).parse().unwrap();
    let host = HOST[0].parse().unwrap();
    lab.lan.clients[client].run(|| {
        let socket = UdpSocket::bind(source).unwrap();
        for port in [1234, 5678, 9012] {
            socket
                .send_to(b"knock", SocketAddr::new(host, port))
                .unwrap();
            thread::sleep(Duration::from_millis(50));
        }
    });
    thread::sleep(Duration::from_millis(300));
}

fn udp_door(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: ACCESS,
        lockout: 2,
    };
    let Some(mut lab) = Lab::prepare(test, tag, backend, timing) else {
        return;
    };
    // The socket is made in the host's namespace and stays there.
    let at: SocketAddr = SocketAddr::new(HOST[0].parse().unwrap(), WG);
    let socket = lab.lan.host.run(|| UdpSocket::bind(at).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let responder = echo(socket, stop.clone());
    assert!(
        answered(&lab, A),
        "the echo responder answers without a server"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    std::fs::write(&path, config(backend.name())).unwrap();
    let mut cmd = lab.lan.host.command(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", Duration::from_secs(10));
    lab.server = Some(server);
    let rules = lab.lan.host.rules();
    assert!(
        rules.contains(&WG.to_string()),
        "{WG} not protected:\n{rules}"
    );

    assert!(!answered(&lab, B), "a stranger's datagram was answered");
    assert!(!answered(&lab, A), "answered before the knock");
    knock(&lab, A);
    let granted = Instant::now();
    assert!(answered(&lab, A), "the knocker's datagram got no answer");
    assert!(!answered(&lab, B), "the grant opened for a stranger too");
    // The grant ends (the kernel's timeout or the daemon's timer).
    let end = granted + Duration::from_secs(ACCESS + 2);
    thread::sleep(end.saturating_duration_since(Instant::now()));
    assert!(!answered(&lab, A), "answered after the grant ended");

    lab.stop_server();
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
}

#[test]
fn nftables_a_udp_protected_port_answers_the_knocker_only_while_granted() {
    udp_door(
        "nftables_a_udp_protected_port_answers_the_knocker_only_while_granted",
        "udp-nft",
        Backend::Nftables,
    );
}

#[test]
fn iptables_a_udp_protected_port_answers_the_knocker_only_while_granted() {
    udp_door(
        "iptables_a_udp_protected_port_answers_the_knocker_only_while_granted",
        "udp-ipt",
        Backend::Iptables,
    );
}
