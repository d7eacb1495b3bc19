//! Unit tests of netlink.rs: the batches equal nft's own captured bytes.

use super::*;

/// Bytes from a `testdata/*.hex` capture of nft's own `sendmsg`.
fn hex(text: &str) -> Vec<u8> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

/// What we send differs from nft's bytes in two documented ways: nft
/// adds `NFTA_SET_ELEM_LIST_SET_ID` (type 4; for a set created in the
/// same batch, which ours never is), and we ask for an ack
/// (`NLM_F_ACK`) on each element message. This applies both to nft's
/// bytes and leaves everything else as captured.
fn as_we_send(nft: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = nft;
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let (message, tail) = rest.split_at(len);
        rest = tail;
        let ty = u16::from_ne_bytes(message[4..6].try_into().unwrap());
        if ty >> 8 != NFNL_SUBSYS_NFTABLES {
            out.extend_from_slice(message);
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&message[..20]);
        let flags = u16::from_ne_bytes(message[6..8].try_into().unwrap()) | NLM_F_ACK;
        out[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
        let mut attrs = &message[20..];
        while !attrs.is_empty() {
            let alen = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
            let aty = u16::from_ne_bytes(attrs[2..4].try_into().unwrap());
            let padded = alen.next_multiple_of(4);
            if aty != 4 {
                out.extend_from_slice(&attrs[..padded]);
            }
            attrs = &attrs[padded..];
        }
        let new_len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&new_len.to_ne_bytes());
    }
    out
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn renew_v4_matches_nft() {
    let batch = build(
        &[Change::Grant {
            ip: ip("192.0.2.2"),
            port: 2222,
            ttl: Duration::from_millis(2500),
        }],
        0,
    );
    let nft = hex(include_str!("../testdata/renew_v4.hex"));
    assert_eq!(batch.bytes, as_we_send(&nft));
    assert_eq!((batch.first_seq, batch.next_seq), (0, 5));
}

#[test]
fn renew_v6_matches_nft() {
    let batch = build(
        &[Change::Grant {
            ip: ip("2001:db8::2"),
            port: 22,
            ttl: Duration::from_secs(60),
        }],
        0,
    );
    let nft = hex(include_str!("../testdata/renew_v6.hex"));
    assert_eq!(batch.bytes, as_we_send(&nft));
}

#[test]
fn revoke_matches_nft_v4_and_v6() {
    for (addr, port, file) in [
        ("192.0.2.2", 2222, include_str!("../testdata/revoke_v4.hex")),
        ("2001:db8::2", 22, include_str!("../testdata/revoke_v6.hex")),
    ] {
        let batch = build(&[Change::Revoke { ip: ip(addr), port }], 0);
        assert_eq!(batch.bytes, as_we_send(&hex(file)), "{addr}");
        // A zero-ttl grant is a revoke.
        let zero = build(
            &[Change::Grant {
                ip: ip(addr),
                port,
                ttl: Duration::ZERO,
            }],
            0,
        );
        assert_eq!(zero.bytes, batch.bytes);
    }
}

#[test]
fn batch_matches_nft_last_change_wins() {
    let a = ip("::ffff:192.0.2.2"); // mapped: goes to the v4 set
    let b = ip("192.0.2.3");
    let c = ip("2001:db8::2");
    let ttl = Duration::from_secs(30);
    let changes = [
        Change::Grant {
            ip: a,
            port: 22,
            ttl,
        },
        Change::Revoke { ip: c, port: 22 },
        Change::Grant {
            ip: b,
            port: 22,
            ttl,
        },
        Change::Grant {
            ip: c,
            port: 22,
            ttl: 2 * ttl,
        },
        Change::Revoke { ip: b, port: 22 },
    ];
    let batch = build(&changes, 0);
    let nft = hex(include_str!("../testdata/batch.hex"));
    assert_eq!(batch.bytes, as_we_send(&nft));
    assert_eq!(batch.requests.len(), 6);
    assert_eq!(
        batch.requests[2].describe(),
        "netlink: add element inet portknock allowed_v4 { 192.0.2.2 . 22 timeout 30000ms }"
    );
    assert_eq!(
        batch.requests[1].describe(),
        "netlink: delete element inet portknock allowed_v4 { 192.0.2.2 . 22, 192.0.2.3 . 22 }"
    );
}

#[test]
fn large_batches_split_into_messages_and_sequence_numbers_wrap() {
    let changes: Vec<Change> = (0..2500u32)
        .map(|i| Change::Grant {
            ip: IpAddr::from((0xc633_6400u32 + i).to_be_bytes()),
            port: 2222,
            ttl: Duration::from_micros(10), // rounds up to 1 ms
        })
        .collect();
    let batch = build(&changes, u32::MAX - 2);
    // 3 steps x 3 messages (1024 + 1024 + 452), begin and end.
    assert_eq!(batch.requests.len(), 9);
    assert_eq!(batch.next_seq, 8);
    assert_eq!(batch.requests[0].seq, u32::MAX - 1);
    assert_eq!(batch.requests[1].seq, u32::MAX);
    assert_eq!(batch.requests[2].seq, 0);
    assert_eq!(batch.requests[8].elements[0].ms, 1);
    assert!(
        batch.requests[5]
            .describe()
            .ends_with(", ... (452 elements) }")
    );
    // Every message parses back with its length.
    let mut count = 0;
    let mut rest = &batch.bytes[..];
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        assert!(len >= 20 && len % 4 == 0 && len <= rest.len());
        rest = &rest[len..];
        count += 1;
    }
    assert_eq!(count, 11);
}

#[test]
fn acks_and_errors_parse() {
    let mut buf = Vec::new();
    for (seq, error) in [(7u32, 0i32), (8, -2)] {
        put_u32(&mut buf, 36);
        put_u16(&mut buf, NLMSG_ERROR);
        put_u16(&mut buf, 0x100); // NLM_F_CAPPED
        put_u32(&mut buf, seq);
        put_u32(&mut buf, 1234);
        buf.extend_from_slice(&error.to_ne_bytes());
        buf.extend_from_slice(&[0; 16]); // the request's header
    }
    // A truncated tail is ignored.
    buf.extend_from_slice(&[40, 0, 0, 0, 2, 0]);
    assert_eq!(parse_acks(&buf), vec![(7, 0), (8, 2)]);
    assert!(parse_acks(&[]).is_empty());
}
