//! Issue 10 "Must show" with a kernel backend: three doors in one
//! `knock-server --config` (different sequences, a shared knock port, two
//! protected ports on one door, an allow list) in the lab's namespaces,
//! with nftables and with iptables. Each door opens only its own ports for
//! the knocker only; a source outside `allow` never opens.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use super::lab::{A, B, Backend, CLIENTS, HOST, Lab, PORT, Timing};
use crate::util::{FLAG, Proc, Reached, bin, connect_from};

/// The extra protected ports (2222, the lab's, is ssh's first).
const SSH2: u16 = 2224;
const WEB: u16 = 2225;
const LAN: u16 = 2226;

fn config(backend: Backend) -> String {
    format!(
        r#"bind = ["{h}"]
firewall = "{b}"

[[door]]
name = "ssh"
sequence = [1234, 5678, 9012]
access = "30s"
lockout = "2s"
protected = ["tcp/{PORT}", "tcp/{SSH2}"]

[[door]]
name = "web"
sequence = [1234, 7000]
access = "30s"
lockout = "2s"
protected = ["tcp/{WEB}"]

[[door]]
name = "lan"
sequence = [7100, 7200]
access = "30s"
lockout = "2s"
protected = ["tcp/{LAN}"]
allow = ["{allowed}/32"]
"#,
        h = HOST[0],
        b = backend.name(),
        allowed = CLIENTS[B][0],
    )
}

/// Knocks `ports` from `client` (IPv4) at the host, 50 ms apart.
fn knock(lab: &Lab, client: usize, ports: &[u16]) {
    let source: IpAddr = CLIENTS[client][0].parse().unwrap();
    let host: IpAddr = HOST[0].parse().unwrap();
    lab.lan.clients[client].run(|| {
        let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
        for &port in ports {
            socket
                .send_to(b"knock", SocketAddr::new(host, port))
                .unwrap();
            thread::sleep(Duration::from_millis(50));
        }
    });
    thread::sleep(Duration::from_millis(300));
}

/// Whether `client` is served the flag on `port`.
fn served(lab: &Lab, client: usize, port: u16) -> bool {
    let source = CLIENTS[client][0];
    let to = SocketAddr::new(HOST[0].parse().unwrap(), port);
    let reached = lab.lan.clients[client].run(|| connect_from(source, to));
    matches!(reached, Reached::Served(text) if text.contains(FLAG))
}

fn three_doors(test: &str, tag: &str, backend: Backend) {
    let timing = Timing {
        access: 30,
        lockout: 2,
    };
    let Some(mut lab) = Lab::prepare(test, tag, backend, timing) else {
        return;
    };
    let mut services = Vec::new();
    for port in [SSH2, WEB, LAN] {
        let mut cmd = lab.lan.host.command(bin("protected-service"));
        cmd.args(["--port", &port.to_string(), "--close-after", "5"]);
        let mut service = Proc::spawn(cmd);
        service.wait_for("protected-service listening", Duration::from_secs(10));
        services.push(service);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    std::fs::write(&path, config(backend)).unwrap();
    let mut cmd = lab.lan.host.command(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn(cmd);
    server.wait_for("knock server ready", Duration::from_secs(10));
    lab.server = Some(server);
    let rules = lab.lan.host.rules();
    for port in [PORT, SSH2, WEB, LAN] {
        assert!(
            rules.contains(&port.to_string()),
            "{port} not protected:\n{rules}"
        );
    }

    knock(&lab, A, &[1234, 5678, 9012]);
    assert!(
        served(&lab, A, PORT) && served(&lab, A, SSH2),
        "ssh opens both its ports"
    );
    assert!(
        !served(&lab, A, WEB) && !served(&lab, A, LAN),
        "ssh opens only its own"
    );
    assert!(
        !served(&lab, B, PORT) && !served(&lab, B, SSH2),
        "for the knocker only"
    );

    // A is outside lan's allow list: the right sequence never opens it.
    knock(&lab, A, &[7100, 7200]);
    assert!(!served(&lab, A, LAN), "a source outside allow opened lan");

    knock(&lab, B, &[7100, 7200]);
    assert!(served(&lab, B, LAN), "lan opens for its allowed source");
    assert!(!served(&lab, B, WEB), "lan opens only its own port");
    knock(&lab, B, &[1234, 7000]);
    assert!(served(&lab, B, WEB), "web (sharing knock port 1234) opens");
    assert!(!served(&lab, B, PORT), "web does not open ssh's ports");
    lab.stop_server();
    drop(services);
}

#[test]
fn nftables_three_doors_open_their_own_ports_for_the_knocker_only() {
    three_doors(
        "nftables_three_doors_open_their_own_ports_for_the_knocker_only",
        "doors-nft",
        Backend::Nftables,
    );
}

#[test]
fn iptables_three_doors_open_their_own_ports_for_the_knocker_only() {
    three_doors(
        "iptables_three_doors_open_their_own_ports_for_the_knocker_only",
        "doors-ipt",
        Backend::Iptables,
    );
}
