//! Packets made by Debian's real `fwknop` client (`--test --save-packet`:
//! built, not sent) are accepted by our verifier with the fields asked for,
//! across digest types, HMAC types, text keys, timeouts and `-s`.
//!
//! Needs `fwknop` (package fwknop-client). Missing: fails under `CI`, warns
//! loudly otherwise.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use portknock::spa::{
    AccessConfOptions, RejectReason, ReplayCache, ServerPolicy, Verdict, Verifier,
    parse_access_conf,
};

use crate::util::spa::{HMAC, KEY, have};

/// Whether the real client is installed (a loud SKIPPED line, or a panic
/// under `CI`, when not).
fn have_fwknop() -> bool {
    have("fwknop", "spa::fwknop_client")
}

/// Runs the real client in test mode and returns the packet it built.
fn fwknop_packet(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("packet");
    let mut cmd = Command::new("fwknop");
    cmd.args([
        "--no-rc-file",
        "--no-save-args",
        "--test",
        "-D",
        "127.0.0.1",
        "--save-packet",
    ])
    .arg(&out)
    .args(args)
    .env("HOME", dir.path());
    let output = cmd.output().expect("run fwknop");
    assert!(
        output.status.success(),
        "{cmd:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    text.trim_end_matches('\n').to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verifier(stanza_extra: &str, keys: &str) -> Verifier {
    let conf =
        format!("SOURCE ANY\n{keys}FW_ACCESS_TIMEOUT 30\nMAX_FW_TIMEOUT 120\n{stanza_extra}");
    Verifier::new(
        parse_access_conf(&conf, AccessConfOptions::default())
            .unwrap()
            .stanzas,
        ServerPolicy::default(),
    )
}

fn b64_keys(hmac_type: &str) -> String {
    format!("KEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nHMAC_DIGEST_TYPE {hmac_type}\n")
}

#[test]
fn real_client_packets_are_accepted() {
    if !have_fwknop() {
        return;
    }
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let base = [
        "--key-base64-rijndael",
        KEY,
        "--key-base64-hmac",
        HMAC,
        "--use-hmac",
        "-U",
        "tester",
    ];
    // (extra client args, hmac type, expected allow ip, expected timeout)
    let cases: &[(&[&str], &str, Ipv4Addr, u32)] = &[
        (
            &["-A", "tcp/2222", "-a", "127.0.0.2"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 2),
            30,
        ),
        (
            &["-A", "tcp/22,udp/53", "-a", "127.0.0.3", "-m", "md5"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 3),
            30,
        ),
        (
            &["-A", "tcp/22", "-a", "127.0.0.3", "-m", "sha1"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 3),
            30,
        ),
        (
            &["-A", "tcp/22", "-a", "127.0.0.3", "-m", "sha384"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 3),
            30,
        ),
        (
            &["-A", "tcp/22", "-a", "127.0.0.3", "-m", "sha3_512"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 3),
            30,
        ),
        (
            &[
                "-A",
                "tcp/22",
                "-a",
                "127.0.0.4",
                "--hmac-digest-type",
                "sha1",
            ],
            "sha1",
            Ipv4Addr::new(127, 0, 0, 4),
            30,
        ),
        (
            &[
                "-A",
                "tcp/22",
                "-a",
                "127.0.0.4",
                "--hmac-digest-type",
                "md5",
            ],
            "md5",
            Ipv4Addr::new(127, 0, 0, 4),
            30,
        ),
        (
            &[
                "-A",
                "tcp/22",
                "-a",
                "127.0.0.4",
                "--hmac-digest-type",
                "sha384",
            ],
            "sha384",
            Ipv4Addr::new(127, 0, 0, 4),
            30,
        ),
        (
            &[
                "-A",
                "tcp/22",
                "-a",
                "127.0.0.4",
                "--hmac-digest-type",
                "sha3_256",
            ],
            "sha3_256",
            Ipv4Addr::new(127, 0, 0, 4),
            30,
        ),
        (
            &["-A", "tcp/22", "-a", "127.0.0.5", "-f", "45"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 5),
            45,
        ),
        (
            &["-A", "tcp/22", "-a", "127.0.0.5", "-f", "9999"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 5),
            120,
        ),
        (
            &["-A", "tcp/22", "-s"],
            "sha256",
            Ipv4Addr::new(127, 0, 0, 1),
            30,
        ),
    ];
    for (extra, hmac_type, ip, timeout) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let packet = fwknop_packet(&args);
        let v = verifier("", &b64_keys(hmac_type));
        let mut cache = ReplayCache::in_memory(120);
        match v.verify(packet.as_bytes(), src, now(), &mut cache) {
            Verdict::Accept(a) => {
                assert_eq!((a.allow_ip, a.timeout_secs), (*ip, *timeout), "{args:?}");
                assert_eq!(a.message.username, "tester", "{args:?}");
            }
            Verdict::Reject(r) => panic!("{args:?}: rejected: {}", r.reason),
        }
        // Sent again: a replay.
        let Verdict::Reject(r) = v.verify(packet.as_bytes(), src, now(), &mut cache) else {
            panic!("replay accepted")
        };
        assert_eq!(r.reason, RejectReason::Replay);
    }
}

#[test]
fn real_client_text_keys_and_wrong_keys() {
    if !have_fwknop() {
        return;
    }
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let packet = fwknop_packet(&[
        "--key-rijndael",
        "fwknop-test-passphrase",
        "--key-hmac",
        "hmac-test-passphrase-0123456789",
        "--use-hmac",
        "-A",
        "tcp/2222",
        "-a",
        "127.0.0.8",
    ]);
    let text_keys = "KEY fwknop-test-passphrase\nHMAC_KEY hmac-test-passphrase-0123456789\n";
    let mut cache = ReplayCache::in_memory(120);
    let Verdict::Reject(r) =
        verifier("", &b64_keys("sha256")).verify(packet.as_bytes(), src, now(), &mut cache)
    else {
        panic!("accepted with other keys")
    };
    assert_eq!(r.reason, RejectReason::HmacMismatch);
    let open_other = verifier("OPEN_PORTS tcp/22\n", text_keys);
    let Verdict::Reject(r) = open_other.verify(packet.as_bytes(), src, now(), &mut cache) else {
        panic!("port outside OPEN_PORTS accepted")
    };
    assert_eq!(r.reason.code(), "port_not_allowed");
    // Already recorded by the previous (authenticated) attempt: fwknopd's order.
    let ok = verifier("OPEN_PORTS tcp/2222\n", text_keys);
    let Verdict::Reject(r) = ok.verify(packet.as_bytes(), src, now(), &mut cache) else {
        panic!("replay accepted")
    };
    assert_eq!(r.reason, RejectReason::Replay);
    let mut fresh = ReplayCache::in_memory(120);
    assert!(matches!(
        ok.verify(packet.as_bytes(), src, now(), &mut fresh),
        Verdict::Accept(_)
    ));
}
