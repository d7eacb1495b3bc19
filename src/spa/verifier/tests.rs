use super::*;
use crate::spa::access_conf::{AccessConfOptions, parse_access_conf};
use crate::spa::encoder::{SpaRequest, encode, encode_with};
use crate::spa::message::{PortSpec, Proto};
use crate::spa::replay::ReplayCache;

const NOW: u64 = 1_795_470_431;
const CONF: &str = "SOURCE ANY
KEY_BASE64 kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=
HMAC_KEY_BASE64 vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==
OPEN_PORTS tcp/2222, udp/53
MAX_FW_TIMEOUT 60
";

fn verifier(conf: &str, policy: ServerPolicy) -> Verifier {
    Verifier::new(
        parse_access_conf(conf, AccessConfOptions::default())
            .unwrap()
            .stanzas,
        policy,
    )
}

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        proto: Proto::Tcp,
        port,
    }
}

fn src() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn packet(v: &Verifier, req: &SpaRequest) -> String {
    encode(req, &v.stanzas()[0].keys).unwrap()
}

fn reason(v: Verdict) -> RejectReason {
    match v {
        Verdict::Reject(r) => r.reason,
        Verdict::Accept(a) => panic!("accepted: {a:?}"),
    }
}

#[test]
fn round_trip_accepts_once() {
    let v = verifier(CONF, ServerPolicy::default());
    let mut req = SpaRequest::new("alice", Ipv4Addr::new(127, 0, 0, 2), vec![tcp(2222)], NOW);
    req.client_timeout = 600;
    let p = packet(&v, &req);
    let mut cache = ReplayCache::in_memory(120);
    let Verdict::Accept(a) = v.verify(p.as_bytes(), src(), NOW + 5, &mut cache) else {
        panic!("rejected")
    };
    assert_eq!(
        (a.allow_ip, a.ports.as_slice(), a.timeout_secs),
        (req.allow_ip, &[tcp(2222)][..], 60)
    );
    assert_eq!(a.message.username, "alice");
    assert_eq!(
        reason(v.verify(p.as_bytes(), src(), NOW + 5, &mut cache)),
        RejectReason::Replay
    );
}

#[test]
fn encoder_reproduces_the_synthetic_vector() {
    let v = verifier(CONF, ServerPolicy::default());
    let req = SpaRequest::new("synth", Ipv4Addr::new(127, 0, 0, 2), vec![tcp(2222)], NOW);
    let salt = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
    let p = encode_with(&req, &v.stanzas()[0].keys, "1234567890123456", salt).unwrap();
    assert_eq!(
        p,
        "8AESIzRFVmdzOfcTPT5goHrTVnsULc+hhPmcv/D6rpYrC4caJXVkxnXTkxfp0qRwjHdrhjak3Y4+JDm21GCp+9b5+yhatIYqWsBmukfxUtT5RChaVq8LXCNpAsoYDgc0i9g+PjyjurDxC0KwqNBPjLVIki22umNEniy75lgeaNErgprmjTDjsCEhdlDG79QhFD+o9jQS935i82ulVq8DEH5sAVFcZtGK8"
    );
}

#[test]
fn policy_rejections() {
    let v = verifier(
        CONF,
        ServerPolicy {
            require_source_match: true,
            ..ServerPolicy::default()
        },
    );
    let mut cache = ReplayCache::in_memory(120);
    let mut check = |req: &SpaRequest, now: u64, want: RejectReason| {
        let got = reason(v.verify(packet(&v, req).as_bytes(), src(), now, &mut cache));
        assert_eq!(got, want);
    };
    let base = SpaRequest::new("root", Ipv4Addr::new(127, 0, 0, 1), vec![tcp(2222)], NOW);
    check(
        &SpaRequest {
            access: vec![tcp(22)],
            ..base.clone()
        },
        NOW,
        RejectReason::PortNotAllowed(tcp(22)),
    );
    check(
        &base,
        NOW + 121,
        RejectReason::StaleTimestamp {
            skew_secs: -121,
            max_age_secs: 120,
        },
    );
    check(
        &base,
        NOW - 121,
        RejectReason::StaleTimestamp {
            skew_secs: 121,
            max_age_secs: 120,
        },
    );
    check(
        &SpaRequest {
            allow_ip: Ipv4Addr::new(127, 0, 0, 9),
            ..base.clone()
        },
        NOW,
        RejectReason::SourceMismatch,
    );
    // Exactly 120 s is still inside the window.
    let p = packet(&v, &base);
    assert!(matches!(
        v.verify(p.as_bytes(), src(), NOW + 120, &mut cache),
        Verdict::Accept(_)
    ));
}

#[test]
fn zero_address_uses_the_source_unless_required() {
    let v = verifier(CONF, ServerPolicy::default());
    let req = SpaRequest::new("root", Ipv4Addr::UNSPECIFIED, vec![tcp(2222)], NOW);
    let mut cache = ReplayCache::in_memory(120);
    let p = packet(&v, &req);
    let Verdict::Accept(a) = v.verify(p.as_bytes(), "127.0.0.7".parse().unwrap(), NOW, &mut cache)
    else {
        panic!("rejected")
    };
    assert_eq!(a.allow_ip, Ipv4Addr::new(127, 0, 0, 7));
    let p = packet(&v, &req);
    assert_eq!(
        reason(v.verify(p.as_bytes(), "::1".parse().unwrap(), NOW, &mut cache)),
        RejectReason::SourceNotIpv4
    );
    let strict = verifier(
        &format!("{CONF}REQUIRE_SOURCE_ADDRESS Y\n"),
        ServerPolicy::default(),
    );
    let p = packet(&strict, &req);
    assert_eq!(
        reason(strict.verify(p.as_bytes(), src(), NOW, &mut cache)),
        RejectReason::SourceAddressRequired
    );
}

#[test]
fn stanza_selection_by_source_and_username() {
    let conf = format!(
        "SOURCE 192.0.2.0/24\n{}REQUIRE_USERNAME bob\n",
        &CONF["SOURCE ANY\n".len()..]
    );
    let v = verifier(&conf, ServerPolicy::default());
    let req = SpaRequest::new("alice", Ipv4Addr::new(192, 0, 2, 1), vec![tcp(2222)], NOW);
    let p = packet(&v, &req);
    let mut cache = ReplayCache::in_memory(120);
    assert_eq!(
        reason(v.verify(p.as_bytes(), src(), NOW, &mut cache)),
        RejectReason::NoStanzaForSource
    );
    let from = "192.0.2.1".parse().unwrap();
    assert_eq!(
        reason(v.verify(p.as_bytes(), from, NOW, &mut cache)),
        RejectReason::UsernameMismatch
    );
}

#[test]
fn prechecks_run_first() {
    let v = verifier(CONF, ServerPolicy::default());
    let mut cache = ReplayCache::in_memory(120);
    let mut r = |p: &[u8]| reason(v.verify(p, src(), NOW, &mut cache));
    assert_eq!(
        r(&[b'A'; 139]),
        RejectReason::TooShort { len: 139, min: 140 }
    );
    assert_eq!(
        r(&[b'A'; 1501]),
        RejectReason::TooLong {
            len: 1501,
            max: 1500
        }
    );
    let mut p = b"U2FsdGVkX1".to_vec();
    p.extend([b'A'; 200]);
    assert_eq!(r(&p), RejectReason::SaltedPrefixPresent);
    let mut p = vec![b'A'; 200];
    p[150] = b'-';
    assert_eq!(r(&p), RejectReason::BadCharacter { offset: 150 });
    assert_eq!(r(&[b'A'; 400]), RejectReason::TreatedAsGpg { len: 400 });
    assert_eq!(r(&[b'A'; 399]), RejectReason::HmacMismatch);
}

#[test]
fn failing_replay_store_fails_closed() {
    struct Broken;
    impl ReplayStore for Broken {
        fn contains(&self, _: &ReplayDigest) -> bool {
            false
        }
        fn commit(&mut self, _: u64) -> Result<(), crate::spa::replay::ReplayError> {
            Ok(())
        }
        fn record(
            &mut self,
            _: ReplayDigest,
            _: u64,
        ) -> Result<(), crate::spa::replay::ReplayError> {
            Err(crate::spa::replay::ReplayError {
                path: "/x".into(),
                op: "append to",
                source: std::io::Error::other("disk full"),
            })
        }
    }
    let v = verifier(CONF, ServerPolicy::default());
    let p = packet(
        &v,
        &SpaRequest::new("root", Ipv4Addr::new(127, 0, 0, 2), vec![tcp(2222)], NOW),
    );
    assert_eq!(
        reason(v.verify(p.as_bytes(), src(), NOW, &mut Broken)),
        RejectReason::ReplayCacheFailed
    );
}

/// Every other spelling of `p` that a lenient base64 decoder reads as the
/// same bytes: `=` padding appended, unused trailing bits of the last
/// character set.
fn respellings(p: &str) -> Vec<String> {
    let full = format!("{}{p}", crate::spa::cipher::SALTED_PREFIX_B64);
    let bytes = b64::decode(full.as_bytes()).unwrap();
    let mut out = vec![format!("{p}="), format!("{p}==")];
    let (head, last) = p.split_at(p.len() - 1);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for &c in ALPHABET {
        let text = format!("{head}{}", c as char);
        let full = format!("{}{text}", crate::spa::cipher::SALTED_PREFIX_B64);
        if text != last && b64::decode(full.as_bytes()).as_deref() == Some(&bytes[..]) {
            out.push(text);
        }
    }
    out.retain(|t| t != p);
    out
}

/// Issue 9 item 11: one captured packet opened access once per spelling.
#[test]
fn a_respelled_packet_is_not_a_new_packet_without_hmac() {
    let conf = "SOURCE ANY\nKEY_BASE64 kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=\n";
    let opts = AccessConfOptions {
        allow_missing_hmac: true,
    };
    let v = Verifier::new(
        parse_access_conf(conf, opts).unwrap().stanzas,
        ServerPolicy::default(),
    );
    // A packet whose text has unused trailing bits (length not 0 mod 4).
    let p = (0..)
        .map(|i| {
            let user = format!("u{}", "x".repeat(i));
            packet(
                &v,
                &SpaRequest::new(&user, Ipv4Addr::new(127, 0, 0, 2), vec![tcp(22)], NOW),
            )
        })
        .find(|p| (p.len() + crate::spa::cipher::SALTED_PREFIX_B64.len()) % 4 == 2)
        .unwrap();
    let variants = respellings(&p);
    // `=`, `==`, and 15 other last characters (4 unused bits).
    assert_eq!(variants.len(), 17, "{variants:?}");
    let mut cache = ReplayCache::in_memory(120);
    assert!(matches!(
        v.verify(p.as_bytes(), src(), NOW, &mut cache),
        Verdict::Accept(_)
    ));
    for variant in &variants {
        let got = reason(v.verify(variant.as_bytes(), src(), NOW, &mut cache));
        assert_eq!(got, RejectReason::DecryptFailed, "{variant}");
    }
    // Not even first: a respelled packet never reaches the cache.
    let mut fresh = ReplayCache::in_memory(120);
    for variant in &variants {
        let got = reason(v.verify(variant.as_bytes(), src(), NOW, &mut fresh));
        assert_eq!(got, RejectReason::DecryptFailed, "{variant}");
    }
    assert!(fresh.is_empty());
}

#[test]
fn a_respelled_packet_fails_its_hmac() {
    let v = verifier(CONF, ServerPolicy::default());
    let p = packet(
        &v,
        &SpaRequest::new("root", Ipv4Addr::new(127, 0, 0, 2), vec![tcp(2222)], NOW),
    );
    let mut cache = ReplayCache::in_memory(120);
    assert!(matches!(
        v.verify(p.as_bytes(), src(), NOW, &mut cache),
        Verdict::Accept(_)
    ));
    for variant in [format!("{p}="), format!("{p}==")] {
        let got = reason(v.verify(variant.as_bytes(), src(), NOW, &mut cache));
        assert_eq!(got, RejectReason::HmacMismatch, "{variant}");
    }
}
