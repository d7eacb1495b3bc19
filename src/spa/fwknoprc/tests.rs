use super::*;

const RC: &str = "
[default]
DIGEST_TYPE         sha512
SPA_SERVER_PORT     62202
VERBOSE             Y

[myserver]
SPA_SERVER          127.0.0.1
ACCESS              tcp/22, udp/53
ALLOW_IP            127.0.0.2
KEY_BASE64          kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=
HMAC_KEY_BASE64     vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==
USE_HMAC            Y
FW_TIMEOUT          45

[plain]
KEY                 text-key
ALLOW_IP            source
";

#[test]
fn named_stanza_inherits_default() {
    let rc = parse_fwknoprc(RC).unwrap();
    assert_eq!(rc.names(), ["default", "myserver", "plain"]);
    assert_eq!(
        rc.warnings,
        [RcWarning {
            line: 5,
            key: "VERBOSE".into()
        }]
    );
    let s = rc.stanza("myserver").unwrap();
    assert_eq!(s.spa_server.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.spa_server_port, 62202);
    assert_eq!(s.access.len(), 2);
    assert_eq!(s.allow_ip, Some(AllowIp::Ip(Ipv4Addr::new(127, 0, 0, 2))));
    assert_eq!(s.digest, DigestType::Sha512);
    assert_eq!(s.client_timeout, 45);
    let keys = s.keys.unwrap();
    assert_eq!((keys.key.len(), keys.hmac_key.unwrap().len()), (32, 64));
    let p = rc.stanza("plain").unwrap();
    assert_eq!(p.allow_ip, Some(AllowIp::Source));
    assert_eq!(p.keys.unwrap().key.expose(), b"text-key");
    assert!(matches!(rc.stanza("nope"), Err(RcError::NoStanza(_))));
}

#[test]
fn use_hmac_n_drops_the_hmac_key() {
    let rc = parse_fwknoprc("[a]\nKEY k\nHMAC_KEY h\nUSE_HMAC N\n").unwrap();
    assert!(rc.stanza("a").unwrap().keys.unwrap().hmac_key.is_none());
}

#[test]
fn bad_lines_are_reported_with_line_numbers() {
    let e = |t: &str| parse_fwknoprc(t).unwrap_err().to_string();
    assert_eq!(
        e("KEY x\n"),
        "line 1: KEY appears before the first [stanza] header"
    );
    assert!(e("[a]\nSPA_SERVER_PORT 0\n").starts_with("line 2: invalid SPA_SERVER_PORT"));
    assert!(e("[a]\nACCESS tcp/99999\n").starts_with("line 2: invalid ACCESS"));
    assert!(e("[a]\nALLOW_IP 1.2.3\n").starts_with("line 2: invalid ALLOW_IP"));
    assert!(e("[a]\nSPA_SERVER_PROTO tcp\n").contains("only udp"));
    assert!(e("[a]\nFW_TIMEOUT 99999\n").starts_with("line 2"));
    assert_eq!(
        e("[a\n"),
        "line 1: expected [stanza], a comment, or KEY VALUE"
    );
    assert_eq!(
        e("[a]\nLONELY\n"),
        "line 2: expected [stanza], a comment, or KEY VALUE"
    );
    let secret = e("[a]\nKEY_BASE64 s3cr3t!!\n");
    assert!(!secret.contains("s3cr3t"), "{secret}");
    let rc = parse_fwknoprc("[a]\nKEY same\nHMAC_KEY same\n").unwrap();
    assert!(
        rc.stanza("a")
            .unwrap_err()
            .to_string()
            .contains("identical")
    );
}
