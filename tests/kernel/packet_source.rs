//! The AF_PACKET capture source in network namespaces the tests create:
//! it hears UDP knocks and TCP SYNs sent from another namespace (IPv4 and
//! IPv6) while the host still answers them as closed ports, skips what
//! the doors do not name, binds to named interfaces, counts the kernel's
//! drops, and fails clearly without CAP_NET_RAW or for an unknown
//! interface.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use portknock::capture::packet::PacketSource;
use portknock::capture::{CaptureError, CaptureSource, CaptureSpec};

use crate::util::netns::{Netns, Topology, privileged};

/// What a test needs of a captured packet: sender, protocol (6/17),
/// destination port, TCP flags.
pub type Seen = (IpAddr, u8, u16, u8);

/// The fields of a raw IP packet (no options or extension headers).
fn fields(ip: &[u8]) -> Option<Seen> {
    let (source, proto, t) = match ip.first()? >> 4 {
        4 => {
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let t = usize::from(ip[0] & 0xf) * 4;
            (IpAddr::V4(Ipv4Addr::from(src)), *ip.get(9)?, t)
        }
        6 => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(src)), *ip.get(6)?, 40)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(ip.get(t + 2..t + 4)?.try_into().ok()?);
    let flags = if proto == 6 { *ip.get(t + 13)? } else { 0 };
    Some((source, proto, port, flags))
}

/// Reads from `source` until `want` packets came or `wait` passed
/// (bounded: poll of 50 ms slices), then once more for stragglers.
pub fn collect(source: &mut PacketSource, want: usize, wait: Duration) -> Vec<Seen> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + wait;
    loop {
        let mut pfd = libc::pollfd {
            fd: source.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
        source
            .drain(&mut |p| {
                assert_ne!(p.stamp_ns, 0, "every packet carries its receive stamp");
                seen.push(fields(p.ip).expect("an IP packet"));
            })
            .expect("drain");
        if seen.len() >= want || Instant::now() > deadline {
            return seen;
        }
    }
}

fn spec(udp: &[u16], tcp: &[u16], interfaces: &[&str]) -> CaptureSpec {
    CaptureSpec {
        udp_ports: udp.to_vec(),
        tcp_ports: tcp.to_vec(),
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
    }
}

/// A UDP datagram from `from` to `to`; returns whether the host answered
/// it as a closed port (ICMP port-unreachable, seen as ECONNREFUSED).
fn udp_refused(from: &str, to: SocketAddr) -> bool {
    let socket = UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.connect(to).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send(b"knock").unwrap();
    matches!(socket.recv(&mut [0; 16]), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn packet_source_hears_knocks_from_another_namespace_and_the_ports_still_look_closed() {
    if !privileged(
        "packet_source_hears_knocks_from_another_namespace_and_the_ports_still_look_closed",
    ) {
        return;
    }
    let topo = Topology::new("pkt");
    let mut source = topo
        .server
        .run(|| PacketSource::open(&spec(&[1234], &[5678], &[])).unwrap());
    let v4: IpAddr = "192.0.2.2".parse().unwrap();
    let v6: IpAddr = "2001:db8::2".parse().unwrap();
    for (from, to) in [(v4, "192.0.2.1"), (v6, "2001:db8::1")] {
        let to: IpAddr = to.parse().unwrap();
        let from_s = from.to_string();
        // Not captured: another UDP port, TCP to the udp-only knock port.
        assert!(
            topo.client
                .run(|| udp_refused(&from_s, SocketAddr::new(to, 1235)))
        );
        let tcp_1234 = topo.connect(&from_s, SocketAddr::new(to, 1234), Duration::from_secs(2));
        assert_eq!(tcp_1234.unwrap_err().kind(), ErrorKind::ConnectionRefused);
        // Captured, and answered as closed ports all the same.
        assert!(
            topo.client
                .run(|| udp_refused(&from_s, SocketAddr::new(to, 1234))),
            "the knock port answers ICMP port-unreachable"
        );
        let tcp = topo.connect(&from_s, SocketAddr::new(to, 5678), Duration::from_secs(2));
        assert_eq!(tcp.unwrap_err().kind(), ErrorKind::ConnectionRefused, "RST");
    }
    let seen = collect(&mut source, 4, Duration::from_secs(3));
    assert_eq!(
        seen,
        vec![
            (v4, 17, 1234, 0),
            (v4, 6, 5678, 0x02),
            (v6, 17, 1234, 0),
            (v6, 6, 5678, 0x02)
        ],
        "exactly the knocks, once each, in order"
    );
    assert_eq!(source.kernel_drops(), 0);
}

#[test]
fn packet_source_on_a_named_interface_hears_only_that_interface() {
    if !privileged("packet_source_on_a_named_interface_hears_only_that_interface") {
        return;
    }
    let topo = Topology::new("pktif");
    let (mut on_lo, mut on_both) = topo.server.run(|| {
        (
            PacketSource::open(&spec(&[1234], &[], &["lo"])).unwrap(),
            PacketSource::open(&spec(&[1234], &[], &["lo", "veth0"])).unwrap(),
        )
    });
    assert!(
        topo.client
            .run(|| udp_refused("192.0.2.2", "192.0.2.1:1234".parse().unwrap()))
    );
    assert!(
        topo.server
            .run(|| udp_refused("127.0.0.1", "127.0.0.1:1234".parse().unwrap()))
    );
    let lo = collect(&mut on_lo, 2, Duration::from_millis(500));
    assert_eq!(lo, vec![("127.0.0.1".parse().unwrap(), 17, 1234, 0)]);
    let both = collect(&mut on_both, 2, Duration::from_secs(3));
    assert_eq!(both.len(), 2, "one epoll fd reads both sockets: {both:?}");
}

#[test]
fn packet_source_names_an_unknown_interface() {
    if !privileged("packet_source_names_an_unknown_interface") {
        return;
    }
    let ns = Netns::new("pktunk");
    for name in ["nosuch0", "bad\0name"] {
        let err = ns
            .run(|| PacketSource::open(&spec(&[1234], &[], &["lo", name])))
            .err()
            .expect("an unknown interface fails");
        assert!(matches!(&err, CaptureError::UnknownInterface { name: n } if n == name));
        assert_eq!(
            err.to_string(),
            format!("unknown interface '{name}' (--interface): no such network interface here")
        );
    }
}

#[test]
fn packet_source_without_net_raw_says_what_is_missing() {
    if !privileged("packet_source_without_net_raw_says_what_is_missing") {
        return;
    }
    // Capabilities are per thread on Linux: drop CAP_NET_RAW from this
    // thread's effective set only.
    let err = std::thread::spawn(|| {
        drop_effective(13); // CAP_NET_RAW (linux/capability.h)
        PacketSource::open(&spec(&[1234], &[], &[])).err()
    })
    .join()
    .unwrap()
    .expect("no CAP_NET_RAW, no packet socket");
    assert!(matches!(
        err,
        CaptureError::MissingCapability {
            capability: "CAP_NET_RAW",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "packet capture needs CAP_NET_RAW: run as root or grant the capability, or choose --capture socket"
    );
}

#[test]
fn packet_source_counts_what_the_kernel_dropped() {
    if !privileged("packet_source_counts_what_the_kernel_dropped") {
        return;
    }
    let ns = Netns::new("pktdrop");
    let (mut source, sent) = ns.run(|| {
        let source = PacketSource::open(&spec(&[1234], &[], &["lo"])).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Bounded: 30 000 datagrams unread overflow the 8 MiB buffer.
        let sent = (0..30_000)
            .filter(|_| socket.send_to(b"knock", "127.0.0.1:1234").is_ok())
            .count();
        (source, sent)
    });
    let mut read = 0;
    for _ in 0..10_000 {
        let n = source.drain(&mut |_| {}).unwrap();
        if n == 0 {
            break;
        }
        read += n;
    }
    let drops = source.kernel_drops() as usize;
    assert!(drops > 0, "the buffer overflowed (read {read} of {sent})");
    assert_eq!(
        read + drops,
        sent,
        "every datagram is read or counted as dropped"
    );
}

/// Clears capability `cap` from the calling thread's effective set.
fn drop_effective(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
}

/// `knock-client` sends TCP knocks as SYNs (and UDP ones as datagrams),
/// in order, over IPv4 and IPv6: heard by the packet source on loopback.
#[test]
fn knock_client_tcp_knocks_arrive_as_syns_in_order() {
    if !privileged("knock_client_tcp_knocks_arrive_as_syns_in_order") {
        return;
    }
    let ns = Netns::new("pkttcp");
    let mut source = ns.run(|| PacketSource::open(&spec(&[5678], &[1234, 9012], &["lo"])).unwrap());
    for target in ["127.0.0.1", "::1"] {
        let mut cmd = ns.command(crate::util::bin("knock-client"));
        cmd.args([
            "--target",
            target,
            "--sequence",
            "1234:tcp,5678:udp,9012:tcp",
        ])
        .args(["--protected-port", "2222", "--delay", "0.05"]);
        crate::util::run(cmd, Duration::from_secs(20)).expect_code(0);
    }
    let seen = collect(&mut source, 6, Duration::from_secs(3));
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let v6: IpAddr = "::1".parse().unwrap();
    assert_eq!(
        seen,
        vec![
            (v4, 6, 1234, 0x02),
            (v4, 17, 5678, 0),
            (v4, 6, 9012, 0x02),
            (v6, 6, 1234, 0x02),
            (v6, 17, 5678, 0),
            (v6, 6, 9012, 0x02),
        ],
        "SYNs without ACK and the datagram, once each, in order"
    );
}
