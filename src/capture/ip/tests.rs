use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const SRC4: [u8; 4] = [192, 0, 2, 7];
const DST4: [u8; 4] = [192, 0, 2, 1];

fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0x30, 0x39];
    seg.extend_from_slice(&port.to_be_bytes());
    seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    seg
}

fn tcp(port: u16, flags: u8) -> Vec<u8> {
    let mut seg = vec![0x30, 0x39];
    seg.extend_from_slice(&port.to_be_bytes());
    seg.extend_from_slice(&[0; 8]); // seq, ack
    seg.push(0x50); // data offset 5
    seg.push(flags);
    seg.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    seg
}

/// An IPv4 packet with `options` bytes of options (a multiple of 4).
fn v4(protocol: u8, segment: &[u8], options: usize, fragment: u16) -> Vec<u8> {
    let ihl = 20 + options;
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&((ihl + segment.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&fragment.to_be_bytes());
    ip.extend_from_slice(&[64, protocol, 0, 0]);
    ip.extend_from_slice(&SRC4);
    ip.extend_from_slice(&DST4);
    ip.extend(std::iter::repeat_n(1u8, options)); // NOPs
    ip.extend_from_slice(segment);
    ip
}

fn src6() -> Ipv6Addr {
    "2001:db8::7".parse().unwrap()
}

/// An IPv6 packet whose chain is `extensions` (header type, body) then
/// `protocol` carrying `segment`.
fn v6(extensions: &[(u8, Vec<u8>)], protocol: u8, segment: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, (_, body)) in extensions.iter().enumerate() {
        let next = extensions.get(i + 1).map_or(protocol, |(t, _)| *t);
        let mut header = vec![next];
        header.extend_from_slice(body);
        chain.extend_from_slice(&header);
    }
    let first = extensions.first().map_or(protocol, |(t, _)| *t);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&((chain.len() + segment.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[first, 64]);
    ip.extend_from_slice(&src6().octets());
    ip.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    ip.extend_from_slice(&chain);
    ip.extend_from_slice(segment);
    ip
}

/// A hop-by-hop/routing/dest-opts body (after the next-header byte) of
/// `units` 8-byte units.
fn options_body(units: u8) -> Vec<u8> {
    let mut body = vec![units - 1];
    body.extend(std::iter::repeat_n(0u8, usize::from(units) * 8 - 2));
    body
}

fn fragment_body(offset: u16, more: bool) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 9]);
    body
}

#[test]
fn ipv4_udp_gives_the_sender_port_and_payload() {
    let packet = v4(UDP, &udp(1234, b"hello"), 0, 0);
    let heard = parse(&packet).unwrap();
    assert_eq!(heard.source, IpAddr::V4(Ipv4Addr::from(SRC4)));
    assert_eq!(heard.destination, IpAddr::V4(Ipv4Addr::from(DST4)));
    assert_eq!((heard.proto, heard.port), (Proto::Udp, 1234));
    assert_eq!(heard.payload, b"hello");
    assert!(is_knock(&heard));
}

#[test]
fn ipv4_options_are_skipped_by_the_ihl() {
    let packet = v4(UDP, &udp(5678, b"x"), 8, 0);
    let heard = parse(&packet).unwrap();
    assert_eq!((heard.port, heard.payload), (5678, &b"x"[..]));
}

#[test]
fn ipv4_tcp_gives_the_flags_and_only_syn_without_ack_is_a_knock() {
    for (flags, knock) in [
        (TCP_SYN, true),
        (TCP_SYN | 0x08, true), // SYN+PSH: still a SYN without ACK
        (TCP_SYN | TCP_ACK, false),
        (TCP_ACK, false),
        (0x04, false), // RST
        (0x01, false), // FIN
        (0, false),
    ] {
        let packet = v4(TCP, &tcp(9012, flags), 0, 0);
        let heard = parse(&packet).unwrap();
        assert_eq!(
            (heard.proto, heard.port, heard.tcp_flags),
            (Proto::Tcp, 9012, flags)
        );
        assert!(heard.payload.is_empty());
        assert_eq!(is_knock(&heard), knock, "flags {flags:#04x}");
    }
}

#[test]
fn ipv4_non_first_fragments_are_ignored_first_fragments_are_not() {
    let seg = udp(1234, b"abc");
    assert!(
        parse(&v4(UDP, &seg, 0, 0x2000)).is_some(),
        "more fragments, offset 0"
    );
    assert!(parse(&v4(UDP, &seg, 0, 0x4000)).is_some(), "don't fragment");
    assert!(parse(&v4(UDP, &seg, 0, 0x0001)).is_none(), "offset 8");
    assert!(parse(&v4(UDP, &seg, 0, 0x2100)).is_none());
}

#[test]
fn the_udp_payload_is_clipped_to_the_udp_and_ip_lengths() {
    // Link-layer padding after the IP packet: outside the total length.
    let mut packet = v4(UDP, &udp(1234, b"spa"), 0, 0);
    packet.extend_from_slice(&[0; 10]);
    assert_eq!(parse(&packet).unwrap().payload, b"spa");
    // A UDP length shorter than the segment.
    let mut seg = udp(1234, b"spa-and-more");
    seg[4..6].copy_from_slice(&11u16.to_be_bytes());
    assert_eq!(parse(&v4(UDP, &seg, 0, 0)).unwrap().payload, b"spa");
    // A snap length that cut the payload: what is there.
    let packet = v4(UDP, &udp(1234, b"truncated"), 0, 0);
    assert_eq!(
        parse(&packet[..packet.len() - 4]).unwrap().payload,
        b"trunc"
    );
    // A UDP length below the header's own size.
    let mut seg = udp(1234, b"");
    seg[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert!(parse(&v4(UDP, &seg, 0, 0)).is_none());
}

#[test]
fn truncated_or_inconsistent_ipv4_headers_give_none() {
    let packet = v4(UDP, &udp(1234, b""), 0, 0);
    for cut in 0..28 {
        assert!(parse(&packet[..cut]).is_none(), "cut at {cut}");
    }
    let mut bad_ihl = packet.clone();
    bad_ihl[0] = 0x44;
    assert!(parse(&bad_ihl).is_none(), "IHL below 5");
    let mut long_ihl = packet.clone();
    long_ihl[0] = 0x4f;
    assert!(parse(&long_ihl).is_none(), "IHL past the end");
    let mut short_total = packet.clone();
    short_total[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert!(parse(&short_total).is_none(), "total length below the IHL");
    let tcp_cut = v4(TCP, &tcp(1, TCP_SYN)[..13], 0, 0);
    assert!(parse(&tcp_cut).is_none(), "TCP header without its flags");
    assert!(parse(&v4(1, &[8, 0, 0, 0], 0, 0)).is_none(), "ICMP");
    assert!(parse(&[0x50; 40]).is_none(), "version 5");
}

#[test]
fn ipv6_udp_and_tcp() {
    let packet = v6(&[], UDP, &udp(1234, b"v6"));
    let heard = parse(&packet).unwrap();
    assert_eq!(heard.source, IpAddr::V6(src6()));
    assert_eq!(
        (heard.proto, heard.port, heard.payload),
        (Proto::Udp, 1234, &b"v6"[..])
    );
    let packet = v6(&[], TCP, &tcp(5678, TCP_SYN));
    let heard = parse(&packet).unwrap();
    assert_eq!(
        (heard.proto, heard.port, heard.tcp_flags),
        (Proto::Tcp, 5678, TCP_SYN)
    );
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let chain = vec![
        (HOP_BY_HOP, options_body(1)),
        (ROUTING, options_body(3)),
        (FRAGMENT, fragment_body(0, true)),
        (DEST_OPTS, options_body(2)),
    ];
    let packet = v6(&chain, TCP, &tcp(9012, TCP_SYN));
    let heard = parse(&packet).unwrap();
    assert_eq!((heard.port, heard.tcp_flags), (9012, TCP_SYN));
    let packet = v6(&chain, UDP, &udp(62201, b"pkt"));
    let heard = parse(&packet).unwrap();
    assert_eq!((heard.port, heard.payload), (62201, &b"pkt"[..]));
}

#[test]
fn ipv6_non_first_fragments_and_unknown_headers_give_none() {
    let seg = udp(1234, b"x");
    assert!(parse(&v6(&[(FRAGMENT, fragment_body(0, false))], UDP, &seg)).is_some());
    assert!(parse(&v6(&[(FRAGMENT, fragment_body(1, false))], UDP, &seg)).is_none());
    assert!(parse(&v6(&[], 50, &seg)).is_none(), "ESP");
    assert!(parse(&v6(&[], 59, &seg)).is_none(), "no next header");
    // A chain longer than the walk allows.
    let long: Vec<_> = (0..=MAX_EXTENSIONS)
        .map(|_| (DEST_OPTS, options_body(1)))
        .collect();
    assert!(parse(&v6(&long, UDP, &seg)).is_none());
}

#[test]
fn truncated_ipv6_headers_give_none() {
    let packet = v6(&[(HOP_BY_HOP, options_body(2))], TCP, &tcp(1, TCP_SYN));
    for cut in 0..packet.len() - 6 {
        assert!(parse(&packet[..cut]).is_none(), "cut at {cut}");
    }
    // An extension header claiming more than the packet holds.
    let mut lying = packet.clone();
    lying[41] = 200;
    assert!(parse(&lying).is_none());
    // A payload length shorter than the extension chain.
    let mut short = packet;
    short[4..6].copy_from_slice(&8u16.to_be_bytes());
    assert!(parse(&short).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic_and_payloads_stay_inside(
        which in 0..4usize,
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut packet = match which {
            0 => v4(UDP, &udp(1234, b"payload"), 4, 0),
            1 => v4(TCP, &tcp(1234, TCP_SYN), 0, 0),
            2 => v6(&[(HOP_BY_HOP, options_body(1)), (FRAGMENT, fragment_body(0, true))], UDP, &udp(1, b"p6")),
            _ => v6(&[(ROUTING, options_body(2))], TCP, &tcp(2, TCP_SYN)),
        };
        let i = at.index(packet.len());
        packet[i] = value;
        let len = cut.index(packet.len() + 1);
        let packet = &packet[..len];
        if let Some(heard) = parse(packet) {
            let range = packet.as_ptr_range();
            let inside = heard.payload.is_empty()
                || (range.contains(&heard.payload.as_ptr())
                    && heard.payload.as_ptr() as usize + heard.payload.len() <= range.end as usize);
            prop_assert!(inside);
        }
    }
}
