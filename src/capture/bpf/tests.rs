use libc::sock_filter;
use proptest::prelude::*;

use super::interp::run;
use super::{GROUP, SNAP_LEN, libpcap, max_ports, program};
use crate::capture::{CaptureError, CaptureSpec};

fn spec(udp: &[u16], tcp: &[u16]) -> CaptureSpec {
    CaptureSpec {
        udp_ports: udp.to_vec(),
        tcp_ports: tcp.to_vec(),
        interfaces: Vec::new(),
    }
}

const UDP: u8 = 17;
const TCP: u8 = 6;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// An IPv4 packet: `ihl` words of header, then a transport header of 20
/// bytes (destination port at 2, TCP flags at 13) and 8 bytes of payload.
fn v4(proto: u8, port: u16, flags: u8, frag: u16, ihl: u8) -> Vec<u8> {
    let header = usize::from(ihl.max(5)) * 4;
    let mut p = vec![0u8; header + 28];
    p[0] = 0x40 | ihl;
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[9] = proto;
    let t = usize::from(ihl) * 4;
    p[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&port.to_be_bytes());
    p[t + 13] = flags;
    p
}

/// An IPv6 packet with `next` as the fixed header's next header.
fn v6(next: u8, port: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 28];
    p[0] = 0x60;
    p[6] = next;
    p[42..44].copy_from_slice(&port.to_be_bytes());
    p[53] = flags;
    p
}

/// What the spec describes, read straight off the bytes: the verdict the
/// program must give (a field beyond the packet's end: not captured).
fn model(spec: &CaptureSpec, p: &[u8]) -> u32 {
    let be16 = |at: usize| p.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let accept = |proto: u8, port: Option<u16>, flags: Option<&u8>| -> Option<bool> {
        match proto {
            UDP => Some(spec.udp_ports.contains(&port?)),
            TCP => Some(*flags? & (SYN | ACK) == SYN && spec.tcp_ports.contains(&port?)),
            _ => Some(false),
        }
    };
    let verdict = match p.first().map(|b| b >> 4) {
        Some(4) => (|| {
            let t = usize::from(p[0] & 0xf) * 4;
            if be16(6)? & 0x1fff != 0 {
                return Some(false);
            }
            let proto = *p.get(9)?;
            if proto == TCP {
                p.get(t + 13)?;
            }
            accept(proto, be16(t + 2), p.get(t + 13))
        })(),
        Some(6) => (|| {
            let next = *p.get(6)?;
            if next == TCP {
                p.get(53)?;
            }
            accept(next, be16(42), p.get(53))
        })(),
        _ => Some(false),
    };
    if verdict == Some(true) { SNAP_LEN } else { 0 }
}

/// Packets around `spec`'s ports: both families, both protocols, every
/// flag combination that matters, fragments, odd header lengths, other
/// protocols and versions, and every truncation of each.
fn corpus(spec: &CaptureSpec) -> Vec<Vec<u8>> {
    let mut ports: Vec<u16> = [0, 1, 1233, 1235, 65535].to_vec();
    ports.extend(spec.udp_ports.iter().chain(&spec.tcp_ports).take(8));
    ports.extend(spec.udp_ports.iter().chain(&spec.tcp_ports).rev().take(4));
    let mut whole = Vec::new();
    for &port in &ports {
        for flags in [0, SYN, SYN | ACK, ACK, RST, 0xff, SYN | RST] {
            for proto in [UDP, TCP, 1, 132] {
                for frag in [0, 0x4000, 0x2000, 0x0001, 0x1000, 0x2001, 0x1fff] {
                    whole.push(v4(proto, port, flags, frag, 5));
                }
                for ihl in [0, 4, 6, 15] {
                    whole.push(v4(proto, port, flags, 0, ihl));
                }
                whole.push(v6(proto, port, flags));
            }
            for next in [0, 43, 44, 60] {
                whole.push(v6(next, port, flags));
            }
        }
    }
    let mut other = v4(UDP, ports[5 % ports.len()], 0, 0, 5);
    other[0] = 0x50;
    whole.push(other);
    whole.push(vec![0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]); // ARP
    let mut all = Vec::new();
    for p in whole {
        for len in 0..p.len() {
            all.push(p[..len].to_vec());
        }
        all.push(p);
    }
    all
}

/// Checks what the kernel's `sk_chk_filter` checks: every jump lands
/// inside the program, the last instruction returns, the size fits.
fn assert_valid(program: &[sock_filter]) {
    assert!(!program.is_empty() && program.len() <= libc::BPF_MAXINSNS as usize);
    let ret = (libc::BPF_RET) as u16;
    assert_eq!(program.last().unwrap().code & 0x07, ret, "last is a ret");
    for (pc, ins) in program.iter().enumerate() {
        if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
            let far = if u32::from(ins.code) & 0xf0 == libc::BPF_JA {
                ins.k as usize
            } else {
                usize::from(ins.jt.max(ins.jf))
            };
            assert!(
                pc + 1 + far < program.len(),
                "jump at {pc} leaves the program"
            );
        }
    }
}

/// The specs compared against libpcap.
fn specs() -> Vec<CaptureSpec> {
    let many: Vec<u16> = (2000..2000 + 2 * GROUP as u16 + 7).collect();
    vec![
        spec(&[1234, 5678, 9012], &[]),
        spec(&[], &[1234, 5678, 9012]),
        spec(&[5678, 62201], &[1234, 9012]),
        spec(&[1234], &[1234]),
        spec(&[0, 65535], &[1]),
        spec(&many, &many[..GROUP + 1]),
    ]
}

#[test]
fn the_program_gives_libpcaps_verdict_on_every_packet_of_the_corpus() {
    for spec in specs() {
        let ours = program(&spec).unwrap();
        assert_valid(&ours);
        let expr = libpcap::expression(&spec).unwrap();
        let Some(theirs) = libpcap::compile(&expr) else {
            return;
        };
        for packet in corpus(&spec) {
            assert_eq!(
                run(&ours, &packet),
                run(&theirs, &packet),
                "{expr}: verdicts differ on {packet:02x?}"
            );
        }
    }
}

#[test]
fn the_program_accepts_exactly_what_the_spec_describes_on_the_corpus() {
    for spec in specs() {
        let ours = program(&spec).unwrap();
        let mut accepted = 0;
        for packet in corpus(&spec) {
            let verdict = run(&ours, &packet);
            assert_eq!(verdict, model(&spec, &packet), "{spec:?}: {packet:02x?}");
            accepted += usize::from(verdict != 0);
        }
        assert!(accepted > 0, "the corpus has packets the spec wants");
    }
}

#[test]
fn the_seed_sequence_takes_udp_and_tcp_syns_and_nothing_else() {
    let p = program(&spec(&[1234, 5678, 9012], &[1234])).unwrap();
    assert_eq!(run(&p, &v4(UDP, 5678, 0, 0, 5)), SNAP_LEN);
    assert_eq!(run(&p, &v6(UDP, 9012, 0)), SNAP_LEN);
    assert_eq!(run(&p, &v4(TCP, 1234, SYN, 0, 5)), SNAP_LEN);
    assert_eq!(run(&p, &v6(TCP, 1234, SYN)), SNAP_LEN);
    assert_eq!(
        run(&p, &v4(TCP, 5678, SYN, 0, 5)),
        0,
        "5678 is a udp port only"
    );
    assert_eq!(run(&p, &v4(TCP, 1234, SYN | ACK, 0, 5)), 0);
    assert_eq!(run(&p, &v6(TCP, 1234, ACK)), 0);
    assert_eq!(
        run(&p, &v4(UDP, 5678, 0, 0x0010, 5)),
        0,
        "non-first fragment"
    );
    assert_eq!(
        run(&p, &v4(UDP, 5678, 0, 0x2000, 5)),
        SNAP_LEN,
        "first fragment"
    );
    assert_eq!(run(&p, &v6(44, 5678, 0)), 0, "IPv6 fragment header");
    assert_eq!(run(&p, &v4(UDP, 1233, 0, 0, 5)), 0);
}

#[test]
fn an_empty_spec_captures_nothing() {
    let p = program(&CaptureSpec::default()).unwrap();
    assert_valid(&p);
    for packet in corpus(&spec(&[1234], &[1234])) {
        assert_eq!(run(&p, &packet), 0);
    }
}

#[test]
fn the_most_ports_fit_and_one_more_is_a_clear_error() {
    let max = max_ports();
    assert_eq!(max, 4043);
    let all: Vec<u16> = (1..=max as u16 + 1).collect();
    let fits = program(&spec(&all[..max], &[])).unwrap();
    assert_eq!(fits.len(), libc::BPF_MAXINSNS as usize);
    assert_valid(&fits);
    assert_eq!(run(&fits, &v4(UDP, max as u16, 0, 0, 5)), SNAP_LEN);
    assert_eq!(run(&fits, &v4(UDP, 1, 0, 0, 5)), SNAP_LEN);
    assert_eq!(run(&fits, &v4(UDP, max as u16 + 1, 0, 0, 5)), 0);
    let err = program(&spec(&all, &[])).unwrap_err();
    assert!(
        matches!(err, CaptureError::TooManyPorts { ports, max: m } if ports == max + 1 && m == max)
    );
    assert_eq!(
        err.to_string(),
        "4044 capture ports do not fit in one classic BPF program (at most 4043 udp and tcp ports together); use the nflog source or fewer ports"
    );
    let split = program(&spec(&all[..2000], &all[..2043]));
    assert!(split.is_ok() || matches!(split, Err(CaptureError::TooManyPorts { .. })));
}

fn arb_spec() -> impl Strategy<Value = CaptureSpec> {
    let ports = || prop::collection::btree_set(1u16..=8, 0..=5);
    (ports(), ports()).prop_map(|(udp, tcp)| CaptureSpec {
        udp_ports: udp.into_iter().collect(),
        tcp_ports: tcp.into_iter().collect(),
        interfaces: Vec::new(),
    })
}

fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
    let proto = prop_oneof![Just(UDP), Just(TCP), any::<u8>()];
    let port = prop_oneof![1u16..=8, any::<u16>()];
    let frag = prop_oneof![Just(0u16), Just(0x4000), any::<u16>()];
    let v4 = (
        proto.clone(),
        port.clone(),
        any::<u8>(),
        frag,
        prop_oneof![Just(5u8), 0u8..16],
    )
        .prop_map(|(proto, port, flags, frag, ihl)| v4(proto, port, flags, frag, ihl));
    let v6 = (proto, port, any::<u8>()).prop_map(|(next, port, flags)| v6(next, port, flags));
    let junk = prop::collection::vec(any::<u8>(), 0..80);
    (prop_oneof![v4, v6, junk], any::<prop::sample::Index>()).prop_map(|(p, cut)| {
        // Mostly whole packets, sometimes cut short anywhere.
        let len = if cut.index(4) == 0 {
            cut.index(p.len() + 1)
        } else {
            p.len()
        };
        p[..len].to_vec()
    })
}

proptest! {
    #[test]
    fn the_program_accepts_exactly_the_packets_the_spec_describes(
        spec in arb_spec(),
        packets in prop::collection::vec(arb_packet(), 1..64),
    ) {
        let p = program(&spec).unwrap();
        for packet in packets {
            prop_assert_eq!(run(&p, &packet), model(&spec, &packet), "{:02x?}", packet);
        }
    }
}
