use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn every_request_reads_back_as_itself() {
    let requests = [
        Request::Hello,
        Request::Setup,
        Request::Bye,
        Request::Apply(vec![
            Change::Grant {
                ip: ip("192.0.2.7"),
                port: 2222,
                ttl: Duration::from_millis(30_500),
            },
            Change::Revoke {
                ip: ip("2001:db8::7"),
                port: 53,
            },
        ]),
        Request::Apply(Vec::new()),
        Request::Reconfigure(vec![22, 2222], vec![51820]),
    ];
    for request in requests {
        assert_eq!(Request::decode(&request.encode()), Ok(request));
    }
}

#[test]
fn every_reply_reads_back_as_itself() {
    let replies = [
        Reply::Backend(FirewallKind::Nftables),
        Reply::Backend(FirewallKind::Iptables),
        Reply::Ready,
        Reply::Reconfigured,
        Reply::Results(vec![Outcome::Applied, Outcome::Refused, Outcome::Failed]),
        Reply::Failed("port 22 is not protected".into()),
    ];
    for reply in replies {
        assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
    }
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    assert_eq!(
        Request::decode(&[]),
        Err(WireError::Malformed("shorter than a header"))
    );
    assert_eq!(Request::decode(&[2, 1]), Err(WireError::Version(2)));
    assert_eq!(
        Request::decode(&[VERSION, 0x7f]),
        Err(WireError::Opcode(0x7f))
    );
    assert_eq!(
        Request::decode(&[VERSION, HELLO, 0]),
        Err(WireError::Malformed("trailing bytes"))
    );
    // A count over the bound is refused before anything is read.
    assert_eq!(
        Request::decode(&[VERSION, APPLY, 0xff, 0xff]),
        Err(WireError::TooMany(65_535))
    );
    // One change announced, half of one sent.
    let mut cut = Request::Apply(vec![Change::Revoke {
        ip: ip("192.0.2.1"),
        port: 1,
    }])
    .encode();
    cut.truncate(cut.len() - 12);
    assert!(matches!(
        Request::decode(&cut),
        Err(WireError::Malformed(_))
    ));
    // A reply opcode is not a request.
    assert_eq!(
        Request::decode(&Reply::Ready.encode()),
        Err(WireError::Opcode(READY))
    );
}

#[test]
fn a_change_with_an_unknown_family_or_kind_is_refused() {
    let mut bytes = Request::Apply(vec![Change::Revoke {
        ip: ip("192.0.2.1"),
        port: 1,
    }])
    .encode();
    bytes[5] = 5; // family
    assert_eq!(
        Request::decode(&bytes),
        Err(WireError::Malformed("unknown family"))
    );
    bytes[5] = 4;
    bytes[4] = 9; // kind
    assert_eq!(
        Request::decode(&bytes),
        Err(WireError::Malformed("unknown change"))
    );
    bytes[4] = 2;
    bytes[11] = 1; // a revoke with a ttl
    assert_eq!(
        Request::decode(&bytes),
        Err(WireError::Malformed("revoke with a ttl"))
    );
}

#[test]
fn a_long_failure_message_is_cut_on_a_character_boundary() {
    let long = "é".repeat(MAX_MESSAGE);
    let Ok(Reply::Failed(text)) = Reply::decode(&Reply::Failed(long).encode()) else {
        panic!("not a failure");
    };
    assert!(text.len() <= MAX_MESSAGE && text.chars().all(|c| c == 'é'));
}

#[test]
fn the_largest_request_fits_the_datagram_bound() {
    let changes = vec![
        Change::Grant {
            ip: ip("2001:db8::1"),
            port: 1,
            ttl: MAX_TTL,
        };
        MAX_CHANGES
    ];
    assert_eq!(Request::Apply(changes).encode().len(), MAX_DATAGRAM);
}

proptest! {
    #[test]
    fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Request::decode(&bytes);
        let _ = Reply::decode(&bytes);
    }

    #[test]
    fn versioned_bytes_decode_without_panic(op in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = vec![VERSION, op];
        bytes.extend(rest);
        let _ = Request::decode(&bytes);
        let _ = Reply::decode(&bytes);
    }
}
