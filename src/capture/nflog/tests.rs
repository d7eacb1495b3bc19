//! Byte fixtures for the NFLOG messages (little-endian hosts: the netlink
//! header is host order) and the drop count.

use super::drops::Drops;
use super::message::{self, Item, Logged, MSG_PACKET, Messages};

/// An IPv4/UDP packet 192.0.2.2:40000 -> 192.0.2.1:1234, no payload.
const UDP_V4: [u8; 28] = [
    0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1, 0x9c, 0x40, 0x04,
    0xd2, 0, 8, 0, 0,
];

/// One NFULNL_MSG_PACKET for group 27502 as the kernel builds it:
/// PACKET_HDR (hw proto 0x0800, hook 0), SEQ 7, TIMESTAMP 1 s 2 us,
/// PAYLOAD = [`UDP_V4`].
fn fixture() -> Vec<u8> {
    let hex = "\
        58000000 0004 0000 00000000 00000000\
        02 00 6b6e\
        0800 0100 0800 00 00\
        0800 0c00 00000007\
        1400 0300 0000000000000001 0000000000000002\
        2000 0900";
    let compact: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out: Vec<u8> = (0..compact.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&compact[i..i + 2], 16).unwrap())
        .collect();
    out.extend_from_slice(&UDP_V4);
    assert_eq!(out.len(), 0x58);
    out
}

/// A netlink message of type `ty`, sequence `seq`, around `body`.
fn msg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(body);
    out.resize((out.len() + 3) & !3, 0);
    out
}

fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize((out.len() + 3) & !3, 0);
    out
}

fn packet_body(group: u16, seq: Option<u32>, payload: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![libc::AF_INET as u8, 0];
    body.extend_from_slice(&group.to_be_bytes());
    if let Some(seq) = seq {
        body.extend(attr(libc::NFULA_SEQ as u16, &seq.to_be_bytes()));
    }
    if let Some(payload) = payload {
        body.extend(attr(libc::NFULA_PAYLOAD as u16, payload));
    }
    body
}

#[cfg(target_endian = "little")]
#[test]
fn a_logged_packet_as_the_kernel_builds_it_parses() {
    let bytes = fixture();
    let items: Vec<Item<'_>> = Messages::new(&bytes).collect();
    assert_eq!(
        items,
        vec![Item::Packet(Logged {
            group: 27502,
            payload: &UDP_V4,
            stamp_ns: 1_000_002_000,
            seq: Some(7),
        })]
    );
}

#[test]
fn a_batch_of_packets_closed_by_done_parses_in_order() {
    let mut bytes = msg(MSG_PACKET, 0, &packet_body(5, Some(1), Some(b"abc")));
    bytes.extend(msg(MSG_PACKET, 0, &packet_body(5, Some(2), Some(&UDP_V4))));
    bytes.extend(msg(libc::NLMSG_DONE as u16, 0, &[0, 0, 0, 0]));
    let items: Vec<Item<'_>> = Messages::new(&bytes).collect();
    assert_eq!(items.len(), 3);
    let Item::Packet(first) = items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(
        (first.payload, first.seq, first.stamp_ns),
        (&b"abc"[..], Some(1), 0)
    );
    let Item::Packet(second) = items[1] else {
        panic!("{items:?}")
    };
    assert_eq!((second.payload, second.group), (&UDP_V4[..], 5));
    assert_eq!(items[2], Item::Other);
}

#[test]
fn acks_and_refusals_carry_their_sequence_and_errno() {
    let mut ok = 0i32.to_ne_bytes().to_vec();
    ok.extend_from_slice(&[0; 16]);
    let mut refused = (-libc::EPERM).to_ne_bytes().to_vec();
    refused.extend_from_slice(&[0; 16]);
    let mut bytes = msg(libc::NLMSG_ERROR as u16, 1, &ok);
    bytes.extend(msg(libc::NLMSG_ERROR as u16, 2, &refused));
    let items: Vec<Item<'_>> = Messages::new(&bytes).collect();
    assert_eq!(
        items,
        vec![
            Item::Ack { seq: 1, errno: 0 },
            Item::Ack {
                seq: 2,
                errno: libc::EPERM
            }
        ]
    );
}

#[test]
fn a_packet_message_without_payload_is_skipped() {
    let bytes = msg(MSG_PACKET, 0, &packet_body(5, Some(3), None));
    assert_eq!(Messages::new(&bytes).collect::<Vec<_>>(), vec![Item::Other]);
}

#[test]
fn every_truncation_of_a_batch_parses_without_panic_or_overread() {
    let mut bytes = msg(MSG_PACKET, 0, &packet_body(5, Some(1), Some(&UDP_V4)));
    let first_len = bytes.len();
    bytes.extend(msg(MSG_PACKET, 0, &packet_body(5, Some(2), Some(&UDP_V4))));
    for cut in 0..bytes.len() {
        let items: Vec<Item<'_>> = Messages::new(&bytes[..cut]).collect();
        let packets = items
            .iter()
            .filter(|item| matches!(item, Item::Packet(p) if p.payload == UDP_V4))
            .count();
        // Only whole messages yield packets; a cut one is Malformed.
        assert_eq!(packets, usize::from(cut >= first_len), "cut at {cut}");
        if cut != 0 && cut != first_len {
            assert_eq!(items.last(), Some(&Item::Malformed), "cut at {cut}");
        }
    }
}

#[test]
fn lengths_that_lie_are_malformed_not_loops() {
    // nlmsg_len 0 (would never advance), 15 (shorter than its header),
    // and past the buffer.
    for len in [0u32, 15, 1000] {
        let mut bytes = msg(MSG_PACKET, 0, &packet_body(5, None, Some(&UDP_V4)));
        bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            Messages::new(&bytes).collect::<Vec<_>>(),
            vec![Item::Malformed],
            "nlmsg_len {len}"
        );
    }
    // An attribute whose length is 2 (shorter than its header) or runs
    // past the message.
    for alen in [2u16, 200] {
        let mut body = packet_body(5, None, Some(&UDP_V4));
        body[4..6].copy_from_slice(&alen.to_ne_bytes());
        let bytes = msg(MSG_PACKET, 0, &body);
        assert_eq!(
            Messages::new(&bytes).collect::<Vec<_>>(),
            vec![Item::Malformed],
            "nla_len {alen}"
        );
    }
    // A packet message too short for its nfgenmsg; an error without errno.
    let bytes = msg(MSG_PACKET, 0, &[2, 0]);
    assert_eq!(
        Messages::new(&bytes).collect::<Vec<_>>(),
        vec![Item::Malformed]
    );
    let bytes = msg(libc::NLMSG_ERROR as u16, 0, &[1, 2]);
    assert_eq!(
        Messages::new(&bytes).collect::<Vec<_>>(),
        vec![Item::Malformed]
    );
}

#[test]
fn short_timestamp_and_sequence_attributes_are_ignored() {
    let mut body = vec![2, 0, 0, 5];
    body.extend(attr(libc::NFULA_TIMESTAMP as u16, &[1, 2, 3]));
    body.extend(attr(libc::NFULA_SEQ as u16, &[9]));
    body.extend(attr(libc::NFULA_PAYLOAD as u16, b"x"));
    let bytes = msg(MSG_PACKET, 0, &body);
    let items: Vec<Item<'_>> = Messages::new(&bytes).collect();
    assert_eq!(
        items,
        vec![Item::Packet(Logged {
            group: 5,
            payload: b"x",
            stamp_ns: 0,
            seq: None
        })]
    );
}

#[cfg(target_endian = "little")]
#[test]
fn config_requests_are_the_bytes_libnetfilter_log_sends() {
    // nflog_bind_group(h, 27502): NFULNL_MSG_CONFIG, REQUEST|ACK,
    // AF_UNSPEC, res_id 27502, NFULA_CFG_CMD { BIND } padded.
    let bind = message::bind(27502, 1);
    assert_eq!(
        bind,
        [
            0x1c, 0, 0, 0, 0x01, 0x04, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0, //
            0, 0, 0x6b, 0x6e, //
            5, 0, 1, 0, 1, 0, 0, 0
        ]
    );
    // nflog_set_mode(COPY_PACKET, 2048) + qthresh 1 + timeout 0 + flags SEQ.
    let config = message::configure(27502, 2, 2048, 1, 0);
    assert_eq!(
        config,
        [
            0x38, 0, 0, 0, 0x01, 0x04, 0x05, 0, 2, 0, 0, 0, 0, 0, 0, 0, //
            0, 0, 0x6b, 0x6e, //
            10, 0, 2, 0, 0, 0, 0x08, 0, 2, 0, 0, 0, // mode: be32 2048, COPY_PACKET, pad
            8, 0, 5, 0, 0, 0, 0, 1, // qthresh
            8, 0, 4, 0, 0, 0, 0, 0, // timeout
            6, 0, 6, 0, 0, 1, 0, 0, // flags: be16 SEQ, pad
        ]
    );
}

#[test]
fn drops_count_sequence_gaps_and_overruns_as_a_lower_bound() {
    let mut drops = Drops::default();
    drops.seen(7);
    assert_eq!(drops.total(), 0, "the first number starts the count");
    drops.seen(8);
    drops.seen(11);
    assert_eq!(drops.total(), 2, "9 and 10 missing");
    drops.overrun();
    assert_eq!(drops.total(), 2, "the overrun is one of the gaps");
    drops.overrun();
    drops.overrun();
    assert_eq!(drops.total(), 3, "three overruns lost at least three");
    assert_eq!(drops.overruns(), 3);
}

#[test]
fn sequence_numbers_wrap_and_old_ones_count_nothing() {
    let mut drops = Drops::default();
    drops.seen(u32::MAX - 1);
    drops.seen(1);
    assert_eq!(drops.total(), 2, "u32::MAX and 0 missing across the wrap");
    drops.seen(1);
    drops.seen(0);
    assert_eq!(drops.total(), 2, "a repeated or older number adds nothing");
    drops.seen(2);
    assert_eq!(drops.total(), 3, "counted again from the older number");
}
