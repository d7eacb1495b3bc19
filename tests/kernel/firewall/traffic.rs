//! Real traffic through each backend: a server namespace with the firewall
//! and a listener on the protected port, a client namespace joined by a
//! veth pair. Without a grant a connect is refused at once (`--deny
//! reset`, the default: a RST, like a closed port) or times out (`--deny
//! drop`); granted ones connect.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use portknock::firewall::iptables::IptablesFirewall;
use portknock::firewall::nftables::NftablesFirewall;
use portknock::firewall::{Deny, Firewall, FirewallOptions};

use crate::util::netns::{Topology, privileged};

const PORT: u16 = 2222;
const TTL: Duration = Duration::from_secs(60);
/// How long a connect may take before we call it dropped.
const DROPPED_AFTER: Duration = Duration::from_millis(800);

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), PORT)
}

/// A connect from `from` to `to` without a grant: refused by a RST with
/// [`Deny::Reset`], unanswered (timed out) with [`Deny::Drop`].
fn assert_denied(topo: &Topology, from: &str, to: &str, deny: Deny) {
    let start = Instant::now();
    // A RST may wait for neighbour discovery of a fresh source address:
    // refused is the verdict, not how fast.
    let wait = match deny {
        Deny::Reset => Duration::from_secs(5),
        Deny::Drop => DROPPED_AFTER,
    };
    match (topo.connect(from, addr(to), wait), deny) {
        (Ok(_), _) => panic!("{from} -> {to}:{PORT} connected but should be denied ({deny})"),
        (Err(e), Deny::Reset) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{from} -> {to}: {e} (deny reset answers a RST)"
        ),
        (Err(e), Deny::Drop) => {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::TimedOut,
                "{from} -> {to}: {e}"
            );
            assert!(start.elapsed() >= DROPPED_AFTER - Duration::from_millis(50));
        }
    }
}

fn assert_open(topo: &Topology, from: &str, to: &str) -> TcpStream {
    topo.connect(from, addr(to), Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{from} -> {to}:{PORT} should connect: {e}"))
}

/// Accepts the connection already queued on `listener` (bounded wait).
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    for _ in 0..200 {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    panic!("no connection to accept within 2 s");
}

/// Whether bytes written by the client after the grant ended reach the server.
fn established_survives(client: &mut TcpStream, server: &mut TcpStream) -> bool {
    client.write_all(b"ping").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// The scenario for one backend made by `make` inside the server namespace.
fn scenario<F: Firewall>(
    tag: &str,
    keep_established: bool,
    deny: Deny,
    make: fn(FirewallOptions) -> F,
) {
    let topo = Topology::new(tag);
    let (v4, v6) = topo.listen(PORT);
    let options = FirewallOptions {
        keep_established,
        deny,
        ..FirewallOptions::new([PORT])
    };
    let mut fw = topo.server.run(|| {
        let mut fw = make(options);
        fw.setup().unwrap();
        fw
    });
    // Without a grant: denied, both families.
    assert_denied(&topo, "192.0.2.2", "192.0.2.1", deny);
    assert_denied(&topo, "2001:db8::2", "2001:db8::1", deny);

    // Grant 192.0.2.2 and 2001:db8::2 only.
    topo.server.run(|| {
        fw.grant("192.0.2.2".parse().unwrap(), PORT, TTL).unwrap();
        fw.grant("2001:db8::2".parse().unwrap(), PORT, TTL).unwrap();
    });
    let mut client4 = assert_open(&topo, "192.0.2.2", "192.0.2.1");
    let mut server4 = accept(&v4);
    let _client6 = assert_open(&topo, "2001:db8::2", "2001:db8::1");
    let _server6 = accept(&v6);
    assert_denied(&topo, "192.0.2.3", "192.0.2.1", deny);
    assert_denied(&topo, "2001:db8::3", "2001:db8::1", deny);

    // The grant ends: new connections are denied again; the open one lives
    // on only while established connections are kept.
    topo.server.run(|| {
        fw.revoke("192.0.2.2".parse().unwrap(), PORT).unwrap();
        fw.revoke("2001:db8::2".parse().unwrap(), PORT).unwrap();
    });
    assert_denied(&topo, "192.0.2.2", "192.0.2.1", deny);
    assert_denied(&topo, "2001:db8::2", "2001:db8::1", deny);
    assert_eq!(
        established_survives(&mut client4, &mut server4),
        keep_established,
        "established connection after revoke (keep_established = {keep_established})"
    );
    topo.server.run(|| fw.teardown().unwrap());
    // Without our rules the port is reachable by anyone.
    drop(assert_open(&topo, "192.0.2.3", "192.0.2.1"));
}

fn iptables(options: FirewallOptions) -> IptablesFirewall {
    IptablesFirewall::new(options).unwrap()
}

fn nftables(options: FirewallOptions) -> NftablesFirewall {
    NftablesFirewall::new(options).unwrap()
}

#[test]
fn iptables_traffic_is_reset_until_granted_per_ip_v4_and_v6() {
    if privileged("iptables_traffic_is_reset_until_granted_per_ip_v4_and_v6") {
        scenario("ipt-tr", true, Deny::Reset, iptables);
    }
}

#[test]
fn iptables_traffic_without_keep_established_cuts_open_connections() {
    if privileged("iptables_traffic_without_keep_established_cuts_open_connections") {
        scenario("ipt-tr-noest", false, Deny::Drop, iptables);
    }
}

#[test]
fn nftables_traffic_is_reset_until_granted_per_ip_v4_and_v6() {
    if privileged("nftables_traffic_is_reset_until_granted_per_ip_v4_and_v6") {
        scenario("nft-tr", true, Deny::Reset, nftables);
    }
}

#[test]
fn nftables_traffic_without_keep_established_cuts_open_connections() {
    if privileged("nftables_traffic_without_keep_established_cuts_open_connections") {
        scenario("nft-tr-noest", false, Deny::Drop, nftables);
    }
}

/// nftables closes access on time by itself, with nobody revoking.
#[test]
fn nftables_traffic_stops_when_the_kernel_timeout_ends() {
    if !privileged("nftables_traffic_stops_when_the_kernel_timeout_ends") {
        return;
    }
    let topo = Topology::new("nft-tr-exp");
    let _listeners = topo.listen(PORT);
    topo.server.run(|| {
        let mut fw = nftables(FirewallOptions::new([PORT]));
        fw.setup().unwrap();
        fw.grant("192.0.2.2".parse().unwrap(), PORT, Duration::from_secs(2))
            .unwrap();
        // dropped without teardown, as if the server were SIGKILLed
    });
    drop(assert_open(&topo, "192.0.2.2", "192.0.2.1"));
    std::thread::sleep(Duration::from_millis(2300));
    assert_denied(&topo, "192.0.2.2", "192.0.2.1", Deny::Reset);
}

/// The admin's own table, which tracks connections (as any host with NAT or
/// `ct state` rules of its own does): conntrack keeps following the
/// stranger's connection while our rules are gone. Without it the kernel
/// tracks nothing in the namespace during the flush, and the stranger's
/// next packet is picked up as `new`, which hides the bug.
const ADMIN_TABLE: &str = "table inet admin { chain input { \
    type filter hook input priority 10; policy accept; ct state established counter; }; }";

/// Debian's `nftables.service` reload: one transaction that flushes the
/// ruleset and loads the admin's file.
fn debian_reload() -> String {
    format!("printf '%s\\n' 'flush ruleset' '{ADMIN_TABLE}' | nft -f -")
}

/// Issue 9 item 1 (fail closed): someone flushes our rules (`flush`, run in
/// the server namespace), a stranger connects while they are gone, and the
/// rules come back as the server's repair brings them (setup, then the live
/// grant). The stranger's open connection must not ride the established
/// rule: its next data gets no answer. The granted client's connection,
/// opened before the flush, lives on, also after its grant ends.
fn stranger_cut_by_the_repair<F: Firewall>(
    tag: &str,
    flush: &[&str],
    make: fn(FirewallOptions) -> F,
) {
    let topo = Topology::new(tag);
    let (v4, _v6) = topo.listen(PORT);
    let granted: IpAddr = "192.0.2.2".parse().unwrap();
    topo.server.sh(&["nft", ADMIN_TABLE]);
    let mut fw = topo.server.run(|| {
        let mut fw = make(FirewallOptions::new([PORT]));
        fw.setup().unwrap();
        fw.grant(granted, PORT, TTL).unwrap();
        fw
    });
    let mut client = assert_open(&topo, "192.0.2.2", "192.0.2.1");
    let mut server = accept(&v4);

    topo.server.sh(flush);
    let mut stranger = assert_open(&topo, "192.0.2.3", "192.0.2.1");
    let mut stranger_server = accept(&v4);
    assert!(
        established_survives(&mut stranger, &mut stranger_server),
        "the stranger is in while our rules are flushed"
    );

    topo.server.run(|| {
        fw.setup().unwrap();
        fw.grant(granted, PORT, TTL).unwrap();
        assert!(fw.verify().unwrap().is_empty());
    });
    assert!(
        !established_survives(&mut stranger, &mut stranger_server),
        "the stranger's connection from the flushed window rides the established rule"
    );
    assert_denied(&topo, "192.0.2.3", "192.0.2.1", Deny::Reset);
    assert!(established_survives(&mut client, &mut server), "granted");
    topo.server.run(|| fw.revoke(granted, PORT).unwrap());
    assert!(
        established_survives(&mut client, &mut server),
        "the granted connection outlives its grant"
    );
    topo.server.run(|| fw.teardown().unwrap());
}

#[test]
fn nftables_a_strangers_connection_from_a_flushed_window_is_cut_by_the_repair() {
    let t = "nftables_a_strangers_connection_from_a_flushed_window_is_cut_by_the_repair";
    if privileged(t) {
        let reload = debian_reload();
        stranger_cut_by_the_repair("nft-tr-cut", &["sh", "-c", &reload], nftables);
    }
}

#[test]
fn iptables_a_strangers_connection_from_a_flushed_window_is_cut_by_the_repair() {
    let t = "iptables_a_strangers_connection_from_a_flushed_window_is_cut_by_the_repair";
    if privileged(t) {
        stranger_cut_by_the_repair("ipt-tr-cut", &["iptables", "-F"], iptables);
    }
}

/// A protected UDP port with a listener bound: without a grant, a
/// datagram is answered with ICMP port-unreachable (`--deny reset`) like
/// a closed port, or with nothing (`--deny drop`); granted, it arrives.
fn udp_denied<F: Firewall>(tag: &str, deny: Deny, make: fn(FirewallOptions) -> F) {
    const UDP_PORT: u16 = 51820;
    let topo = Topology::new(tag);
    let listeners = topo.server.run(|| {
        [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")]
            .map(|(host, _)| std::net::UdpSocket::bind((host, UDP_PORT)).unwrap())
    });
    let mut fw = topo.server.run(|| {
        let mut fw = make(FirewallOptions {
            udp_ports: vec![UDP_PORT],
            deny,
            ..FirewallOptions::new([])
        });
        fw.setup().unwrap();
        fw
    });
    let send = |from: &str, to: &str| -> std::io::Result<usize> {
        let from: IpAddr = from.parse().unwrap();
        let to = SocketAddr::new(to.parse().unwrap(), UDP_PORT);
        topo.client.run(|| {
            let socket = std::net::UdpSocket::bind((from, 0))?;
            socket.connect(to)?;
            socket.set_read_timeout(Some(DROPPED_AFTER))?;
            socket.send(b"hello")?;
            socket.recv(&mut [0; 8])
        })
    };
    for (host, client) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
        let err = send(client, host).unwrap_err();
        let want = match deny {
            Deny::Reset => std::io::ErrorKind::ConnectionRefused,
            Deny::Drop => std::io::ErrorKind::WouldBlock,
        };
        assert_eq!(err.kind(), want, "{client} -> {host} ({deny}): {err}");
        topo.server
            .run(|| fw.grant(client.parse().unwrap(), UDP_PORT, TTL).unwrap());
        let _ = send(client, host);
    }
    for listener in &listeners {
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (n, from) = listener
            .recv_from(&mut [0; 8])
            .expect("the granted datagram arrives");
        assert_eq!(n, 5, "from {from}");
    }
    topo.server.run(|| fw.teardown().unwrap());
}

#[test]
fn nftables_udp_protected_port_answers_port_unreachable_with_reset_and_nothing_with_drop() {
    if privileged(
        "nftables_udp_protected_port_answers_port_unreachable_with_reset_and_nothing_with_drop",
    ) {
        udp_denied("nft-udp-rst", Deny::Reset, nftables);
        udp_denied("nft-udp-drop", Deny::Drop, nftables);
    }
}

#[test]
fn iptables_udp_protected_port_answers_port_unreachable_with_reset_and_nothing_with_drop() {
    if privileged(
        "iptables_udp_protected_port_answers_port_unreachable_with_reset_and_nothing_with_drop",
    ) {
        udp_denied("ipt-udp-rst", Deny::Reset, iptables);
        udp_denied("ipt-udp-drop", Deny::Drop, iptables);
    }
}
