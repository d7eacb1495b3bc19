//! Unit tests of the control protocol's parser: every command, every
//! refusal, and a property that no input makes it panic.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<Request, RequestError> {
    parse_request(text.as_bytes())
}

#[test]
fn every_command_parses() {
    assert_eq!(parse(r#"{"v":1,"cmd":"status"}"#), Ok(Request::Status));
    assert_eq!(
        parse("{\"v\":1,\"cmd\":\"list\",\"all\":true}\n"),
        Ok(Request::List { all: true })
    );
    assert_eq!(parse(r#"{"v":1,"cmd":"flush"}"#), Ok(Request::Flush));
    assert_eq!(parse(r#"{"v":1,"cmd":"reload"}"#), Ok(Request::Reload));
    assert_eq!(
        parse(r#"{"v":1,"cmd":"grant","ip":"192.0.2.7","port":"tcp/22","for":"5m"}"#),
        Ok(Request::Grant {
            ip: "192.0.2.7".parse().unwrap(),
            target: Target::Port(22),
            duration: Some(Duration::from_secs(300)),
        })
    );
    assert_eq!(
        parse(r#"{"v":1,"cmd":"grant","ip":"::ffff:192.0.2.7","door":"ssh"}"#),
        Ok(Request::Grant {
            ip: "192.0.2.7".parse().unwrap(),
            target: Target::Door("ssh".into()),
            duration: None,
        })
    );
    assert_eq!(
        parse(r#"{"v":1,"cmd":"revoke","ip":"2001:db8::1"}"#),
        Ok(Request::Revoke {
            ip: "2001:db8::1".parse().unwrap(),
            door: None,
        })
    );
}

#[test]
fn what_the_client_sends_the_daemon_reads() {
    let wire = WireRequest {
        ip: Some("192.0.2.1".into()),
        door: Some("web".into()),
        duration: Some("60s".into()),
        ..WireRequest::new("grant")
    };
    let line = wire.to_line();
    assert!(line.ends_with('\n'));
    assert_eq!(
        parse_request(line.as_bytes()),
        Ok(Request::Grant {
            ip: "192.0.2.1".parse().unwrap(),
            target: Target::Door("web".into()),
            duration: Some(Duration::from_secs(60)),
        })
    );
}

#[test]
fn bad_requests_are_refused_with_what_is_wrong() {
    let err = |text: &str| parse(text).unwrap_err();
    assert!(matches!(err("not json"), RequestError::Malformed(_)));
    assert!(matches!(
        err(r#"{"cmd":"status"}"#),
        RequestError::Malformed(_)
    ));
    assert!(matches!(
        err(r#"{"v":1,"cmd":"status","bogus":1}"#),
        RequestError::Malformed(_)
    ));
    assert_eq!(err(r#"{"v":2,"cmd":"status"}"#), RequestError::Version(2));
    assert_eq!(
        err(r#"{"v":1,"cmd":"explode"}"#),
        RequestError::Command("explode".into())
    );
    for bad in [
        r#"{"v":1,"cmd":"grant"}"#,
        r#"{"v":1,"cmd":"grant","ip":"example.org"}"#,
        r#"{"v":1,"cmd":"grant","ip":"192.0.2.1","port":"sctp/22"}"#,
        r#"{"v":1,"cmd":"grant","ip":"192.0.2.1","port":"tcp/0"}"#,
        r#"{"v":1,"cmd":"grant","ip":"192.0.2.1","port":"22","door":"a"}"#,
        r#"{"v":1,"cmd":"grant","ip":"192.0.2.1","for":"25h"}"#,
        r#"{"v":1,"cmd":"grant","ip":"192.0.2.1","for":"500ms"}"#,
        r#"{"v":1,"cmd":"status","ip":"192.0.2.1"}"#,
        r#"{"v":1,"cmd":"flush","all":true}"#,
        r#"{"v":1,"cmd":"revoke","ip":"192.0.2.1","for":"1m"}"#,
    ] {
        assert!(
            matches!(parse(bad), Err(RequestError::Value { .. })),
            "{bad}: {:?}",
            parse(bad)
        );
    }
    let long = format!(
        r#"{{"v":1,"cmd":"status","x":"{}"}}"#,
        "a".repeat(MAX_REQUEST)
    );
    assert_eq!(err(&long), RequestError::TooLong);
    assert!(matches!(
        parse_request(&[0xff, 0xfe]),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn replies_round_trip() {
    let reply = Reply {
        done: Some(Done {
            message: "flushed 3 grants".into(),
            changed: 3,
        }),
        ..Reply::ok()
    };
    let back: Reply = serde_json::from_str(reply.to_line().trim_end()).unwrap();
    assert_eq!(back, reply);
    let refused: Reply = serde_json::from_str(&Reply::error("no").to_line()).unwrap();
    assert_eq!((refused.ok, refused.error.as_deref()), (false, Some("no")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&bytes);
    }

    #[test]
    fn arbitrary_requests_of_known_shape_never_panic(
        v in 0u64..3,
        cmd in "(status|list|grant|revoke|flush|reload|[a-z]{0,8})",
        ip in proptest::option::of("[0-9a-f:.]{0,40}"),
        door in proptest::option::of(".{0,40}"),
        port in proptest::option::of("(tcp/|udp/|x/)?[0-9]{0,7}"),
        duration in proptest::option::of("[0-9]{0,6}(ms|s|m|h|d|)"),
        all in any::<bool>(),
    ) {
        let wire = WireRequest { v, cmd, all, ip, door, port, duration };
        let line = wire.to_line();
        if let Ok(Request::Grant { duration: Some(d), .. }) = parse_request(line.as_bytes()) {
            prop_assert!(d >= ACCESS_BOUNDS.min && d <= ACCESS_BOUNDS.max);
        }
    }
}
