use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;

fn record(expires_at: u64, id: &str) -> GrantRecord {
    GrantRecord {
        kind: RecordKind::Grant,
        ip: "192.0.2.7".parse().unwrap(),
        door: "ssh".into(),
        ports: vec![22, 2222],
        expires_at,
        origin: "a".into(),
        id: id.into(),
    }
}

fn key() -> GroupKey {
    GroupKey::new(b"0123456789abcdef-group-key".to_vec())
}

fn signed_bytes(group: &str, r: GrantRecord) -> Vec<u8> {
    serde_json::to_vec(&key().sign(group, r)).unwrap()
}

#[test]
fn a_signed_record_verifies_and_round_trips() {
    let r = record(1_000, "a.1.0");
    let bytes = signed_bytes("bastions", r.clone());
    assert_eq!(key().verify("bastions", &bytes), Ok(r));
}

#[test]
fn a_record_signed_with_another_key_is_refused() {
    let bytes = serde_json::to_vec(
        &GroupKey::new(b"another-key-of-16-bytes".to_vec()).sign("bastions", record(1, "x")),
    )
    .unwrap();
    assert_eq!(
        key().verify("bastions", &bytes),
        Err(RecordError::BadSignature)
    );
}

#[test]
fn a_record_of_another_group_is_refused_even_with_the_same_key() {
    let bytes = signed_bytes("web", record(1, "x"));
    assert_eq!(
        key().verify("bastions", &bytes),
        Err(RecordError::BadSignature)
    );
}

#[test]
fn every_field_is_covered_by_the_mac() {
    let good = key().sign("g", record(5_000, "a.1.0"));
    let tamper: [fn(&mut GrantRecord); 7] = [
        |r| r.ip = "192.0.2.8".parse().unwrap(),
        |r| r.door = "web".into(),
        |r| r.ports = vec![22],
        |r| r.expires_at += 1,
        |r| r.origin = "b".into(),
        |r| r.id = "a.1.1".into(),
        |r| r.kind = RecordKind::Revoke,
    ];
    for change in tamper {
        let mut forged = good.clone();
        change(&mut forged.record);
        let bytes = serde_json::to_vec(&forged).unwrap();
        assert_eq!(key().verify("g", &bytes), Err(RecordError::BadSignature));
    }
}

#[test]
fn unsigned_malformed_and_oversized_values_are_refused() {
    let unsigned = SignedRecord {
        record: record(1, "x"),
        hmac: None,
    };
    let bytes = serde_json::to_vec(&unsigned).unwrap();
    assert_eq!(key().verify("g", &bytes), Err(RecordError::Unsigned));
    assert!(matches!(
        key().verify("g", b"{\"ip\":1}"),
        Err(RecordError::Malformed(_))
    ));
    assert!(matches!(
        key().verify("g", &vec![b' '; MAX_RECORD_LEN + 1]),
        Err(RecordError::TooLong(_))
    ));
    let mut bad_hex = key().sign("g", record(1, "x"));
    bad_hex.hmac = Some("zz".into());
    let bytes = serde_json::to_vec(&bad_hex).unwrap();
    assert_eq!(key().verify("g", &bytes), Err(RecordError::BadSignature));
}

#[test]
fn a_newline_in_a_field_is_refused_before_the_mac() {
    let mut r = record(1, "x");
    r.origin = "a\nb".into();
    let bytes = signed_bytes("g", r);
    assert!(matches!(
        key().verify("g", &bytes),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn keys_are_per_door_and_address_and_nats_safe() {
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(key_of("ssh", v6), "ssh.2001_db8__1");
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(key_of("ssh", mapped), "ssh.192.0.2.1");
}

const ACCESS: Option<Duration> = Some(Duration::from_secs(30));

#[test]
fn a_live_record_applies_with_its_remaining_time() {
    let r = record(100_000, "b.9.0");
    assert_eq!(
        decide(&r, 90_000, "a.1.", ACCESS),
        Decision::Apply {
            ttl: Duration::from_secs(10),
            skewed: false
        }
    );
}

#[test]
fn an_ended_record_is_never_reopened() {
    for now in [100_000, 100_001, 200_000] {
        assert_eq!(
            decide(&record(100_000, "b.9.0"), now, "a.1.", ACCESS),
            Decision::Skip(Skip::Expired)
        );
    }
}

#[test]
fn own_records_of_this_run_are_skipped_but_a_previous_run_is_applied() {
    let mine = record(100_000, "a.1.5");
    assert_eq!(
        decide(&mine, 90_000, "a.1.", ACCESS),
        Decision::Skip(Skip::Own)
    );
    let before_restart = record(100_000, "a.0.5");
    assert!(matches!(
        decide(&before_restart, 90_000, "a.1.", ACCESS),
        Decision::Apply { .. }
    ));
}

#[test]
fn a_door_not_shared_here_is_skipped() {
    assert_eq!(
        decide(&record(100_000, "b.9.0"), 90_000, "a.1.", None),
        Decision::Skip(Skip::NotShared)
    );
}

#[test]
fn a_record_far_in_the_future_is_clamped_with_a_skew_warning() {
    let far = record(90_000 + 3_600_000, "b.9.0");
    assert_eq!(
        decide(&far, 90_000, "a.1.", ACCESS),
        Decision::Apply {
            ttl: Duration::from_secs(30),
            skewed: true
        }
    );
    // Within the tolerance: clamped, no warning.
    let near = record(90_000 + 33_000, "b.9.0");
    assert_eq!(
        decide(&near, 90_000, "a.1.", ACCESS),
        Decision::Apply {
            ttl: Duration::from_secs(30),
            skewed: false
        }
    );
}

#[test]
fn a_revocation_applies_even_when_ended() {
    let mut r = record(50_000, "b.9.0");
    r.kind = RecordKind::Revoke;
    assert_eq!(decide(&r, 90_000, "a.1.", ACCESS), Decision::Revoke);
}

fn raw(text: &str) -> Result<FleetSettings, FleetConfigError> {
    toml::from_str::<RawFleet>(text)
        .map_err(|e| FleetConfigError(e.to_string()))?
        .validate()
}

#[test]
fn the_fleet_table_parses_with_defaults() {
    let s = raw(
        "url = \"nats://127.0.0.1:4222\"\ngroup = \"bastions\"\nnode = \"a\"\nkey-file = \"k\"\n",
    )
    .unwrap();
    assert_eq!(s.urls, vec!["nats://127.0.0.1:4222"]);
    assert_eq!(s.when_unreachable, WhenUnreachable::GrantLocally);
    assert_eq!(s.auth, FleetAuth::None);
    assert!(s.spa);
    assert_eq!(s.grants_bucket(), "portknock-grants-bastions");
    assert_eq!(s.replay_bucket(), "portknock-replay-bastions");
    let s = raw("url = [\"nats://a:1\", \"tls://b:2\"]\ngroup = \"g\"\nnode = \"a\"\nkey-file = \"k\"\nuser = \"u\"\npassword = \"s3cr3tpw\"\nwhen-unreachable = \"refuse\"\n").unwrap();
    assert_eq!(s.urls.len(), 2);
    assert_eq!(s.when_unreachable, WhenUnreachable::Refuse);
    assert_eq!(s.auth.word(), "user/password");
    assert!(!format!("{s:?}").contains("s3cr3tpw"));
}

#[test]
fn bad_fleet_settings_are_refused_naming_the_value() {
    let base = "group = \"g\"\nnode = \"a\"\nkey-file = \"k\"\n";
    for (extra, word) in [
        ("url = \"http://x:1\"", "http://x:1"),
        ("url = []", "at least one"),
        (
            "url = \"nats://x:1\"\nwhen-unreachable = \"maybe\"",
            "maybe",
        ),
        ("url = \"nats://x:1\"\nuser = \"u\"", "user and password"),
        (
            "url = \"nats://x:1\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"",
            "one kind",
        ),
    ] {
        let err = raw(&format!("{extra}\n{base}")).unwrap_err();
        assert!(err.0.contains(word), "{extra}: {err}");
    }
    let err =
        raw("url = \"nats://x:1\"\ngroup = \"a.b\"\nnode = \"a\"\nkey-file = \"k\"").unwrap_err();
    assert!(err.0.contains("group 'a.b'"), "{err}");
    let err =
        raw("url = \"nats://x:1\"\ngroup = \"g\"\nnode = \"n.1\"\nkey-file = \"k\"").unwrap_err();
    assert!(err.0.contains("node 'n.1'"), "{err}");
}

#[test]
fn the_key_file_must_be_private_and_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load_key(&path).is_ok());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(load_key(&path).unwrap_err().0.contains("chmod 600"));
    std::fs::write(&path, "short\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load_key(&path).unwrap_err().0.contains("at least 16"));
    assert!(load_key(&dir.path().join("missing")).is_err());
}

const FILE: &str = r#"
[fleet]
url = ["nats://192.0.2.1:4222", "nats://192.0.2.2:4222"]
group = "bastions"
node = "a"
key-file = "/etc/portknock/group.key"
user = "pk"
password = "s3cr3tpw"
when-unreachable = "refuse"

[[door]]
name = "ssh"
sequence = [1234, 5678]
protected = ["tcp/22"]
fleet = true

[[door]]
name = "local"
sequence = [7000, 7001]
protected = ["tcp/2223"]
"#;

#[test]
fn doors_opt_in_and_the_check_config_rendering_reads_back_masked() {
    use crate::config::Reveal;
    let path = std::path::Path::new("f.toml");
    let config = crate::config::file::parse(path, FILE).unwrap();
    let fleet: Vec<bool> = config.doors().iter().map(|d| d.fleet()).collect();
    assert_eq!(fleet, vec![true, false]);
    let settings = config.globals().fleet.clone().unwrap();
    assert_eq!(settings.when_unreachable, WhenUnreachable::Refuse);
    let shown = config.render(Reveal::Masked);
    assert!(
        shown.contains("[fleet]") && !shown.contains("s3cr3tpw"),
        "{shown}"
    );
    let back = crate::config::file::parse(path, &config.render(Reveal::Secrets)).unwrap();
    assert_eq!(back.globals().fleet, config.globals().fleet);
    assert_eq!(back.doors(), config.doors());
}

#[test]
fn a_bad_fleet_table_is_refused_at_its_line() {
    let text = FILE.replace("nats://192.0.2.2:4222", "http://x");
    let err = crate::config::file::parse(std::path::Path::new("f.toml"), &text).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("f.toml:2:") && shown.contains("http://x"),
        "{shown}"
    );
}
