use super::*;
use crate::spa::message::Proto;

const S1: &str = "
# portknock test
SOURCE                  ANY
KEY_BASE64              kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=
HMAC_KEY_BASE64         vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==
REQUIRE_SOURCE_ADDRESS  Y
FW_ACCESS_TIMEOUT       30
OPEN_PORTS              tcp/22, udp/53
MAX_FW_TIMEOUT          60
REQUIRE_USERNAME        alice

SOURCE 192.0.2.0/24
KEY fwknop-test-passphrase
HMAC_KEY hmac-test-passphrase-0123456789
HMAC_DIGEST_TYPE sha512
GPG_REMOTE_ID 1234
";

#[test]
fn parses_two_stanzas() {
    let conf = parse_access_conf(S1, AccessConfOptions::default()).unwrap();
    assert_eq!(conf.stanzas.len(), 2);
    let a = &conf.stanzas[0];
    assert_eq!(a.line, 3);
    assert_eq!(a.source, SourceSpec::Any);
    assert_eq!(a.keys.key.len(), 32);
    assert_eq!(a.keys.hmac_key.as_ref().unwrap().len(), 64);
    assert!(a.require_source_address);
    assert_eq!((a.fw_access_timeout, a.max_fw_timeout), (30, 60));
    assert_eq!(
        a.open_ports.as_deref(),
        Some(
            &[
                PortSpec {
                    proto: Proto::Tcp,
                    port: 22
                },
                PortSpec {
                    proto: Proto::Udp,
                    port: 53
                }
            ][..]
        )
    );
    assert_eq!(a.require_username.as_deref(), Some("alice"));
    let b = &conf.stanzas[1];
    assert_eq!(b.keys.key.expose(), b"fwknop-test-passphrase");
    assert_eq!(b.keys.hmac_digest, DigestType::Sha512);
    assert_eq!(
        (
            b.fw_access_timeout,
            b.max_fw_timeout,
            b.require_source_address
        ),
        (30, 300, false)
    );
    assert_eq!(conf.warnings.len(), 1);
    assert_eq!(conf.warnings[0].line, 16);
}

fn err(text: &str) -> String {
    parse_access_conf(text, AccessConfOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_files_get_clear_errors_with_lines() {
    let base = "SOURCE ANY\nKEY abc\nHMAC_KEY def\n";
    assert_eq!(
        err(&format!("{base}OPEN_PROTS tcp/22\n")),
        "line 4: unknown key 'OPEN_PROTS'"
    );
    assert!(err("KEY abc\n").contains("line 1: KEY appears before the first SOURCE"));
    assert!(
        err(&format!("{base}DESTINATION ANY\n")).contains("line 4: DESTINATION is not supported")
    );
    assert!(err(&format!("{base}OPEN_PORTS tcp/0\n")).contains("line 4: invalid OPEN_PORTS"));
    assert!(err(&format!("{base}FW_ACCESS_TIMEOUT -1\n")).contains("line 4"));
    assert!(err(&format!("{base}REQUIRE_SOURCE_ADDRESS maybe\n")).contains("expected Y or N"));
    assert!(err(&format!("{base}HMAC_DIGEST_TYPE sha999\n")).contains("unknown digest type"));
    assert!(err("SOURCE ANY\nKEY abc\n").contains("no HMAC_KEY"));
    assert!(err("SOURCE ANY\nHMAC_KEY abc\n").contains("no KEY"));
    assert!(err("SOURCE ANY\nKEY abc\nHMAC_KEY abc\n").contains("identical"));
    assert!(err("SOURCE 10.0.0.0/40\n").contains("line 1: invalid SOURCE"));
    assert!(err("# nothing\n").contains("no stanza"));
    assert!(err(&format!("{base}KEY\n")).contains("value is missing"));
    // A bad base64 key is reported without echoing the secret.
    let e = err("SOURCE ANY\nKEY_BASE64 s3cr3t!!\nHMAC_KEY x\n");
    assert!(
        e.contains("line 2: invalid KEY_BASE64") && !e.contains("s3cr3t"),
        "{e}"
    );
}

#[test]
fn missing_hmac_allowed_only_by_flag() {
    let text = "SOURCE ANY\nKEY shortpw\nENCRYPTION_MODE legacy\n";
    let conf = parse_access_conf(
        text,
        AccessConfOptions {
            allow_missing_hmac: true,
        },
    )
    .unwrap();
    assert!(conf.stanzas[0].keys.hmac_key.is_none());
    assert_eq!(conf.stanzas[0].keys.mode, EncryptionMode::Legacy);
}

#[test]
fn load_reports_the_path() {
    let e = load_access_conf(
        Path::new("/nonexistent/access.conf"),
        AccessConfOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/access.conf"));
}
