use super::*;

const EXAMPLE: &str = "3848327889411527:cm9vdA:1795470431:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMjIy:7WXOnmGkJ8HkLd3VwEmvSOyYoC20N9i5ejPiKK+px5A";
const WITH_SA: &str = "6543210987654321:c3ludGg:1795470431:3.0.0:3:MTI3LjAuMC4yLHRjcC8yMjIy:Y3J5cHQsc2VjcmV0:20:8loez//RKaDuaR6ty6RMGFrBDolm9u4p+v1TcCaNBgc";

/// Builds a plaintext from raw body fields with a correct SHA-256 digest.
fn with_digest(body: &str) -> String {
    format!(
        "{body}:{}",
        b64::encode(&DigestType::Sha256.hash(body.as_bytes()))
    )
}

#[test]
fn decodes_the_spec_examples() {
    let m = parse_plaintext(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(m.username, "root");
    assert_eq!(m.message, "127.0.0.2,tcp/2222");
    assert_eq!(m.allow_ip, Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        m.ports,
        vec![PortSpec {
            proto: Proto::Tcp,
            port: 2222
        }]
    );
    assert_eq!(m.msg_type, MessageType::Access);
    assert_eq!(m.digest_type, DigestType::Sha256);
    let m = parse_plaintext(WITH_SA.as_bytes()).unwrap();
    assert_eq!(m.server_auth.as_deref(), Some("crypt,secret"));
    assert_eq!(m.client_timeout, 20);
}

#[test]
fn encoder_reproduces_the_spec_example() {
    let text = encode_plaintext(&PlainFields {
        rand_val: "6543210987654321",
        username: "synth",
        timestamp: 1795470431,
        msg_type: MessageType::ClientTimeoutAccess,
        message: "127.0.0.2,tcp/2222",
        server_auth: Some("crypt,secret"),
        client_timeout: 20,
        digest: DigestType::Sha256,
    });
    assert_eq!(text, WITH_SA);
}

#[test]
fn digest_tampering_and_bad_fields_are_refused() {
    let mut t = EXAMPLE.to_string();
    t.replace_range(0..1, "4");
    assert_eq!(
        parse_plaintext(t.as_bytes()),
        Err(MessageError::DigestMismatch)
    );
    let cases: &[(&str, MessageError)] = &[
        (
            "123456789012345:cm9vdA:1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("random"),
        ),
        (
            "1234567890123456::1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("username"),
        ),
        // "a:b" as a username
        (
            "1234567890123456:YTpi:1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("username"),
        ),
        (
            "1234567890123456:cm9vdA:-1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("timestamp"),
        ),
        (
            "1234567890123456:cm9vdA:1234567890123:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("timestamp"),
        ),
        (
            "1234567890123456:cm9vdA:1:123456789:1:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("version"),
        ),
        (
            "1234567890123456:cm9vdA:1:3.0.0:7:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("message type"),
        ),
        // "127.0.0.2,tcp/0"
        (
            "1234567890123456:cm9vdA:1:3.0.0:1:MTI3LjAuMC4yLHRjcC8w",
            MessageError::Field("access message"),
        ),
        // "127.0.0.2" alone
        (
            "1234567890123456:cm9vdA:1:3.0.0:1:MTI3LjAuMC4y",
            MessageError::Field("access message"),
        ),
        (
            "1234567890123456:cm9vdA:1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg:YQ:YQ",
            MessageError::TooManyFields,
        ),
        (
            "1234567890123456:cm9vdA:1:3.0.0:3:MTI3LjAuMC4yLHRjcC8yMg:x",
            MessageError::Field("client timeout"),
        ),
        (
            "1234567890123456:cm9vdA:1:3.0.0:3:MTI3LjAuMC4yLHRjcC8yMg:65537",
            MessageError::Field("client timeout"),
        ),
        (
            "1234567890123456:cm9vdA:1:3.0.0:3:MTI3LjAuMC4yLHRjcC8yMg",
            MessageError::Field("client timeout"),
        ),
        // NAT "a b,22" has a space in the host
        (
            "1234567890123456:cm9vdA:1:3.0.0:2:MTI3LjAuMC4yLHRjcC8yMg:YSBiLDIy",
            MessageError::Field("NAT"),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse_plaintext(with_digest(body).as_bytes()),
            Err(*want),
            "{body}"
        );
    }
    assert_eq!(parse_plaintext(b"a:b:c"), Err(MessageError::TooFewFields));
    assert_eq!(
        parse_plaintext(b"1:2:3:4:5:6:xyz"),
        Err(MessageError::DigestLength)
    );
    assert_eq!(
        parse_plaintext(b"1:2:3:4:5:6:\x01"),
        Err(MessageError::NotPrintable)
    );
}

#[test]
fn optional_tails_by_type() {
    let ok = |body: &str| parse_plaintext(with_digest(body).as_bytes()).unwrap();
    let m = ok("1234567890123456:cm9vdA:1:3.0.0:4:MTI3LjAuMC4yLHRjcC8yMg:MTkyLjAuMi4xMCwyMg:YQ:60");
    assert_eq!(
        (
            m.nat_access.as_deref(),
            m.server_auth.as_deref(),
            m.client_timeout
        ),
        (Some("192.0.2.10,22"), Some("a"), 60)
    );
    let m = ok("1234567890123456:cm9vdA:1:3.0.0:1:MTI3LjAuMC4yLHRjcC8yMg:YQ");
    assert_eq!(m.server_auth.as_deref(), Some("a"));
    let m = ok("1234567890123456:cm9vdA:1:3.0.0:0:MTI3LjAuMC4yLGVjaG8gaGk");
    assert_eq!((m.msg_type, m.ports.len()), (MessageType::Command, 0));
}

#[test]
fn port_specs_parse_strictly() {
    assert_eq!("TCP/22".parse::<PortSpec>().unwrap().to_string(), "tcp/22");
    for bad in [
        "tcp/",
        "tcp/0",
        "tcp/65536",
        "sctp/1",
        "tcp22",
        "tcp/+1",
        "tcp/123456",
    ] {
        assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
    }
}
