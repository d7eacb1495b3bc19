//! The NFLOG capture source against the real kernel: the kernel backends'
//! capture rule and `NflogSource`, with a server and a client namespace
//! (`util::netns::Topology`: server 192.0.2.1 / 2001:db8::1, client
//! 192.0.2.2 / 2001:db8::2). Every firewall call runs inside the server
//! namespace.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use portknock::capture::nflog::{DEFAULT_GROUP, NflogRule, NflogSource};
use portknock::capture::{CaptureError, CaptureSource, CaptureSpec};
use portknock::firewall::iptables::IptablesFirewall;
use portknock::firewall::nftables::NftablesFirewall;
use portknock::firewall::{Firewall, FirewallOptions};

use crate::util::netns::{Topology, privileged, sh};

const UDP_KNOCK: u16 = 1234;
const TCP_KNOCK: u16 = 9012;
const NEIGHBOUR: u16 = 1235;
const SERVER: [&str; 2] = ["192.0.2.1", "2001:db8::1"];
const CLIENT: [&str; 2] = ["192.0.2.2", "2001:db8::2"];

fn options() -> FirewallOptions {
    let spec = CaptureSpec {
        udp_ports: vec![UDP_KNOCK],
        tcp_ports: vec![TCP_KNOCK],
        interfaces: Vec::new(),
    };
    FirewallOptions {
        capture: Some(NflogRule::new(spec, DEFAULT_GROUP)),
        ..FirewallOptions::new([2222])
    }
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// What a test needs to know of a logged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    source: IpAddr,
    proto: u8,
    port: u16,
    /// TCP flags (0 for UDP).
    flags: u8,
}

fn seen(source: &str, proto: u8, port: u16, flags: u8) -> Seen {
    Seen {
        source: source.parse().unwrap(),
        proto,
        port,
        flags,
    }
}

/// A minimal parse (no IPv6 extension headers: the tests send none).
fn parse(ip: &[u8]) -> Option<Seen> {
    let (source, proto, l4): (IpAddr, u8, usize) = match ip.first()? >> 4 {
        4 => {
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            (src.into(), ip[9], usize::from(ip[0] & 0xf) * 4)
        }
        6 => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            (src.into(), ip[6], 40)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(ip.get(l4 + 2..l4 + 4)?.try_into().ok()?);
    let flags = if proto == 6 { *ip.get(l4 + 13)? } else { 0 };
    Some(Seen {
        source,
        proto,
        port,
        flags,
    })
}

/// Reads until `last` arrives (packets on one path arrive in order, so
/// everything sent before it has arrived too), at most 5 s.
fn read_until(source: &mut NflogSource, last: Seen) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while !got.contains(&last) && Instant::now() < deadline {
        let mut poll = libc::pollfd {
            fd: source.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, 200) };
        source
            .drain(&mut |packet| {
                assert_ne!(packet.stamp_ns, 0, "every packet has a stamp");
                got.push(parse(packet.ip).expect("an IP packet"));
            })
            .expect("drain");
    }
    assert!(got.contains(&last), "{last:?} never logged; got {got:?}");
    got
}

/// A UDP datagram from `from` to `to`; true when the host answered with a
/// port-unreachable (the connected socket's recv is refused).
fn udp_refused(from: &str, to: SocketAddr) -> bool {
    let socket = UdpSocket::bind(at(from, 0)).unwrap();
    socket.connect(to).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket.send(b"knock").unwrap();
    let mut buf = [0u8; 16];
    matches!(socket.recv(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

/// A TCP connect from `from` to `to`; true when it was refused (RST).
fn tcp_refused(topo: &Topology, from: &str, to: SocketAddr) -> bool {
    matches!(
        topo.connect(from, to, Duration::from_secs(2)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// A bare TCP segment with `flags` to `to` (raw socket, no checksum: the
/// capture rule sees it before TCP would discard it).
fn raw_tcp(from: &str, to: SocketAddr, flags: u8) {
    let domain = socket2::Domain::for_address(to);
    let socket =
        socket2::Socket::new(domain, socket2::Type::RAW, Some(socket2::Protocol::TCP)).unwrap();
    socket.bind(&at(from, 0).into()).unwrap();
    let mut segment = [0u8; 20];
    segment[0..2].copy_from_slice(&40000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&to.port().to_be_bytes());
    segment[12] = 0x50;
    segment[13] = flags;
    segment[14] = 0x10;
    socket
        .send_to(&segment, &at(&to.ip().to_string(), 0).into())
        .unwrap();
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// Sends, from the client, what must be logged and what must not, and
/// checks the host's own answers; returns what the reader got.
fn knock_and_read(topo: &Topology, source: &mut NflogSource) -> Vec<Seen> {
    topo.client.run(|| {
        for family in 0..2 {
            let (from, server) = (CLIENT[family], SERVER[family]);
            // Not logged: a neighbour port, and TCP without SYN-only.
            assert!(udp_refused(from, at(server, NEIGHBOUR)));
            for flags in [ACK, RST, SYN | ACK] {
                raw_tcp(from, at(server, TCP_KNOCK), flags);
            }
            assert!(tcp_refused(topo, from, at(server, NEIGHBOUR)));
            // Logged, and still answered as a closed port answers.
            assert!(
                udp_refused(from, at(server, UDP_KNOCK)),
                "{server}: no ICMP"
            );
            assert!(
                tcp_refused(topo, from, at(server, TCP_KNOCK)),
                "{server}: no RST"
            );
        }
    });
    read_until(source, seen(CLIENT[1], 6, TCP_KNOCK, SYN))
}

fn expected() -> Vec<Seen> {
    CLIENT
        .iter()
        .flat_map(|client| {
            [
                seen(client, 17, UDP_KNOCK, 0),
                seen(client, 6, TCP_KNOCK, SYN),
            ]
        })
        .collect()
}

fn ruleset() -> String {
    let mut all = sh(&["nft", "list", "ruleset"]);
    for tool in ["iptables-save", "ip6tables-save"] {
        all.push_str(&sh(&[tool, "-t", "raw"]));
    }
    all
}

#[test]
fn nflog_over_nftables_hears_udp_and_syn_knocks_v4_v6_and_the_ports_still_answer() {
    if !privileged("nflog_over_nftables_hears_udp_and_syn_knocks_v4_v6_and_the_ports_still_answer")
    {
        return;
    }
    let topo = Topology::new("nflog-nft");
    topo.server.run(|| {
        let mut fw = NftablesFirewall::new(options()).unwrap();
        fw.setup().unwrap();
        let mut source = NflogSource::open(DEFAULT_GROUP).unwrap();
        assert_eq!(knock_and_read(&topo, &mut source), expected());
        assert_eq!(source.kernel_drops(), 0);
        assert_eq!(fw.verify().unwrap(), Vec::<String>::new());
        // Someone deletes the chain: the check names it.
        sh(&["nft", "delete", "chain", "inet", "portknock", "capture"]);
        assert_eq!(
            fw.verify().unwrap(),
            vec!["table inet portknock chain capture".to_string()]
        );
        fw.setup().unwrap();
        assert_eq!(fw.verify().unwrap(), Vec::<String>::new());
        fw.teardown().unwrap();
        let rules = ruleset();
        assert!(
            !rules.contains("portknock") && !rules.contains("log group"),
            "{rules}"
        );
    });
}

#[test]
fn nflog_over_iptables_hears_udp_and_syn_knocks_v4_v6_and_teardown_leaves_nothing() {
    if !privileged("nflog_over_iptables_hears_udp_and_syn_knocks_v4_v6_and_teardown_leaves_nothing")
    {
        return;
    }
    let topo = Topology::new("nflog-ipt");
    topo.server.run(|| {
        let mut fw = IptablesFirewall::new(options()).unwrap();
        fw.setup().unwrap();
        let mut source = NflogSource::open(DEFAULT_GROUP).unwrap();
        assert_eq!(knock_and_read(&topo, &mut source), expected());
        assert_eq!(fw.verify().unwrap(), Vec::<String>::new());
        sh(&["ip6tables", "-t", "raw", "-F", "PORTKNOCK"]);
        let missing = fw.verify().unwrap();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing
                .iter()
                .all(|m| m.starts_with("ip6tables-save: raw: -A PORTKNOCK"))
        );
        fw.setup().unwrap();
        assert_eq!(fw.verify().unwrap(), Vec::<String>::new());
        fw.teardown().unwrap();
        let rules = ruleset();
        assert!(
            !rules.contains("PORTKNOCK") && !rules.contains("NFLOG"),
            "{rules}"
        );
    });
}

#[test]
fn nflog_hears_knocks_that_a_default_drop_input_policy_drops() {
    if !privileged("nflog_hears_knocks_that_a_default_drop_input_policy_drops") {
        return;
    }
    let topo = Topology::new("nflog-drop");
    topo.server.run(|| {
        // The admin's own policy: drop everything addressed to this host...
        sh(&["nft", "add", "table", "inet", "admin"]);
        sh(&[
            "nft",
            "add chain inet admin input { type filter hook input priority 0; policy drop; }",
        ]);
        // ... but IPv6 neighbour discovery, as every real such policy does.
        sh(&[
            "nft",
            "add rule inet admin input icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
        ]);
        let mut fw = NftablesFirewall::new(options()).unwrap();
        fw.setup().unwrap();
        let mut source = NflogSource::open(DEFAULT_GROUP).unwrap();
        topo.client.run(|| {
            for family in 0..2 {
                // Silent, like every other port of this host.
                assert!(!udp_refused(CLIENT[family], at(SERVER[family], UDP_KNOCK)));
            }
        });
        let got = read_until(&mut source, seen(CLIENT[1], 17, UDP_KNOCK, 0));
        assert_eq!(
            got,
            vec![seen(CLIENT[0], 17, UDP_KNOCK, 0), seen(CLIENT[1], 17, UDP_KNOCK, 0)]
        );
        fw.teardown().unwrap();
    });
}

#[test]
fn nflog_group_held_by_another_reader_is_a_clear_error() {
    if !privileged("nflog_group_held_by_another_reader_is_a_clear_error") {
        return;
    }
    let topo = Topology::new("nflog-busy");
    topo.server.run(|| {
        let first = NflogSource::open(4242).unwrap();
        let err = NflogSource::open(4242).unwrap_err();
        assert!(
            matches!(err, CaptureError::GroupTaken { group: 4242 }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("NFLOG group 4242") && text.contains("--nflog-group"),
            "{text}"
        );
        // Another group is free, and the group is free again once closed.
        drop(NflogSource::open(4243).unwrap());
        drop(first);
        NflogSource::open(4242).expect("the group is released on close");
    });
}

/// Knocks sent while the reader is not reading overflow its receive
/// buffer: what was lost shows in `kernel_drops` (sequence gaps, known
/// once the next packet arrives), and every packet sent is either read or
/// counted as dropped.
#[test]
fn nflog_counts_every_packet_the_kernel_dropped_for_a_slow_reader() {
    if !privileged("nflog_counts_every_packet_the_kernel_dropped_for_a_slow_reader") {
        return;
    }
    const FLOOD: usize = 100_000;
    let topo = Topology::new("nflog-flood");
    topo.server.run(|| {
        let mut fw = NftablesFirewall::new(options()).unwrap();
        fw.setup().unwrap();
        let mut source = NflogSource::open(DEFAULT_GROUP).unwrap();
        let flood = || {
            topo.client.run(|| {
                let socket = UdpSocket::bind(at(CLIENT[0], 0)).unwrap();
                let to = at(SERVER[0], UDP_KNOCK);
                for _ in 0..FLOOD {
                    // A full send queue may refuse one: not sent, not counted.
                    let _ = socket.send_to(b"k", to);
                }
            })
        };
        flood();
        let mut read = 0u64;
        let mut drain_all = |source: &mut NflogSource| {
            while source.drain(&mut |_| read += 1).expect("drain") > 0 {}
        };
        drain_all(&mut source);
        // The next packet shows the gap before it.
        topo.client
            .run(|| udp_refused(CLIENT[1], at(SERVER[1], UDP_KNOCK)));
        let _ = read_until(&mut source, seen(CLIENT[1], 17, UDP_KNOCK, 0));
        read += 1;
        let drops = source.kernel_drops();
        eprintln!(
            "flood of {FLOOD}: read {read}, kernel drops {drops}, ENOBUFS reads {}",
            source.overruns()
        );
        assert!(drops > 0, "the flood overflowed nothing: make it larger");
        assert!(source.overruns() > 0, "ENOBUFS was reported");
        assert_eq!(read + drops, FLOOD as u64 + 1, "read or counted, every one");
        fw.teardown().unwrap();
    });
}

#[test]
fn nflog_rule_is_replaced_while_running_and_removed() {
    if !privileged("nflog_rule_is_replaced_while_running_and_removed") {
        return;
    }
    let topo = Topology::new("nflog-set");
    topo.server.run(|| {
        let mut nft = NftablesFirewall::new(options()).unwrap();
        let mut ipt = IptablesFirewall::new(options()).unwrap();
        let mut moved = options().capture.unwrap();
        moved.spec.udp_ports = vec![4321];
        for fw in [&mut nft as &mut dyn Firewall, &mut ipt] {
            fw.setup().unwrap();
            fw.set_capture(Some(moved.clone())).unwrap();
            assert_eq!(fw.verify().unwrap(), Vec::<String>::new(), "{}", fw.name());
            let rules = ruleset();
            assert!(rules.contains("4321") && !rules.contains("1234"), "{rules}");
            fw.set_capture(None).unwrap();
            assert_eq!(fw.verify().unwrap(), Vec::<String>::new(), "{}", fw.name());
            let rules = ruleset();
            assert!(
                !rules.contains("log group") && !rules.contains("NFLOG"),
                "{rules}"
            );
            fw.teardown().unwrap();
        }
    });
}

/// Figures, not a test of speed (run by hand with `--ignored
/// --nocapture`): the time from a client's `send` to the reader's `drain`
/// handing the knock over, one knock at a time.
#[test]
#[ignore = "figures for BENCHMARKS.md; run by hand"]
fn nflog_delivery_latency_figures() {
    if !privileged("nflog_delivery_latency_figures") {
        return;
    }
    const KNOCKS: usize = 2000;
    let topo = Topology::new("nflog-lat");
    // A socket keeps its namespace: made in the client's, used from here.
    let client = topo
        .client
        .run(|| UdpSocket::bind(at(CLIENT[0], 0)).unwrap());
    topo.server.run(|| {
        let mut fw = NftablesFirewall::new(options()).unwrap();
        fw.setup().unwrap();
        let mut source = NflogSource::open(DEFAULT_GROUP).unwrap();
        let mut micros = Vec::with_capacity(KNOCKS);
        for _ in 0..KNOCKS {
            let start = Instant::now();
            client.send_to(b"k", at(SERVER[0], UDP_KNOCK)).unwrap();
            let mut got = 0;
            while got == 0 && start.elapsed() < Duration::from_secs(2) {
                let mut poll = libc::pollfd {
                    fd: source.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut poll, 1, 100) };
                got = source.drain(&mut |_| {}).unwrap();
            }
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
        micros.sort_by(f64::total_cmp);
        eprintln!(
            "nflog send->drain over {KNOCKS} knocks: median {:.1} us, p99 {:.1} us, max {:.1} us, drops {}",
            micros[KNOCKS / 2],
            micros[KNOCKS * 99 / 100],
            micros[KNOCKS - 1],
            source.kernel_drops()
        );
        fw.teardown().unwrap();
    });
}
