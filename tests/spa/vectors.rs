//! Every vector of `tests/data/spa/vectors.json` (made with the real fwknop
//! 2.6.10 client, judged by the real fwknopd; see `FWKNOP-SPA.md` beside
//! it), fed in file order to one verifier and one replay cache, with each
//! vector's `now` injected. The file is part of the repository, so the
//! test reads nothing outside the checkout.

use std::net::IpAddr;
use std::path::PathBuf;

use portknock::spa::{
    AccessConfOptions, ReplayCache, ServerPolicy, Verdict, Verifier, parse_access_conf,
};
use serde_json::Value;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/spa/vectors.json")
}

/// Loads the file (part of the repository: missing is a failure).
fn load() -> Value {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors.json is not valid JSON")
}

/// One access.conf holding the file's stanzas (S1..S4) with its server defaults.
fn access_conf(doc: &Value) -> (String, Vec<String>) {
    let defaults = &doc["server_defaults"];
    let yn = |b: bool| if b { "Y" } else { "N" };
    let mut text = String::new();
    let mut names = Vec::new();
    for (name, stanza) in doc["stanzas"].as_object().expect("stanzas object") {
        names.push(name.clone());
        text.push_str("SOURCE ANY\n");
        for (k, v) in stanza["conf"].as_object().expect("conf object") {
            text.push_str(&format!("{k} {}\n", v.as_str().expect("conf value")));
        }
        text.push_str(&format!(
            "REQUIRE_SOURCE_ADDRESS {}\nFW_ACCESS_TIMEOUT {}\nMAX_FW_TIMEOUT {}\n\n",
            yn(defaults["require_source_address"].as_bool().unwrap()),
            defaults["fw_access_timeout"],
            defaults["max_fw_timeout"],
        ));
    }
    (text, names)
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Compares the decoded fields the vector lists with ours.
fn check_fields(name: &str, e: &Value, m: &portknock::spa::SpaMessage) {
    assert_eq!(
        m.rand_val,
        e["rand_val"].as_str().unwrap(),
        "{name}: rand_val"
    );
    assert_eq!(
        m.username,
        e["username"].as_str().unwrap(),
        "{name}: username"
    );
    assert_eq!(
        m.timestamp,
        e["timestamp"].as_u64().unwrap(),
        "{name}: timestamp"
    );
    assert_eq!(m.version, e["version"].as_str().unwrap(), "{name}: version");
    assert_eq!(
        u64::from(m.msg_type.code()),
        e["msg_type"].as_u64().unwrap(),
        "{name}: msg_type"
    );
    assert_eq!(m.message, e["message"].as_str().unwrap(), "{name}: message");
    assert_eq!(
        m.nat_access,
        opt_str(&e["nat_access"]),
        "{name}: nat_access"
    );
    assert_eq!(
        m.server_auth,
        opt_str(&e["server_auth"]),
        "{name}: server_auth"
    );
    assert_eq!(
        u64::from(m.client_timeout),
        e["client_timeout"].as_u64().unwrap(),
        "{name}: client_timeout"
    );
    assert_eq!(
        m.digest_type.name(),
        e["digest_type"].as_str().unwrap(),
        "{name}: digest_type"
    );
}

#[test]
fn every_vector_gets_fwknopds_verdict_in_file_order() {
    let doc = load();
    let defaults = &doc["server_defaults"];
    let (conf, names) = access_conf(&doc);
    // S4 is fwknop's legacy mode without HMAC: allowed here explicitly.
    let stanzas = parse_access_conf(
        &conf,
        AccessConfOptions {
            allow_missing_hmac: true,
        },
    )
    .expect("stanzas from vectors.json parse")
    .stanzas;
    let max_age = defaults["max_spa_packet_age"].as_u64().unwrap();
    let policy = ServerPolicy {
        max_age_secs: max_age,
        require_source_match: false,
        allow_nat: defaults["nat_enabled"].as_bool().unwrap(),
    };
    assert!(
        !defaults["enable_cmd_exec"].as_bool().unwrap(),
        "portknock never executes commands"
    );
    let verifier = Verifier::new(stanzas, policy);
    // The file-backed cache, so the vectors exercise persistence as well.
    let dir = tempfile::tempdir().unwrap();
    let vectors = doc["vectors"].as_array().expect("vectors array");
    let first_now = vectors[0]["now"].as_u64().unwrap();
    let mut cache =
        ReplayCache::open(&dir.path().join("replay.cache"), max_age, first_now).unwrap();

    let (mut accepted, mut rejected) = (0, 0);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let packet = v["packet"].as_str().unwrap();
        let src: IpAddr = v["src_ip"].as_str().unwrap().parse().unwrap();
        let now = v["now"].as_u64().unwrap();
        let e = &v["expect"];
        match verifier.verify(packet.as_bytes(), src, now, &mut cache) {
            Verdict::Accept(a) => {
                assert!(
                    e["accept"].as_bool().unwrap(),
                    "{name}: accepted, fwknopd rejects ({})",
                    e["reason"]
                );
                check_fields(name, e, &a.message);
                assert_eq!(
                    u64::from(a.timeout_secs),
                    e["fw_timeout"].as_u64().unwrap(),
                    "{name}: fw_timeout"
                );
                assert_eq!(
                    a.replay_digest,
                    e["replay_digest"].as_str().unwrap(),
                    "{name}: replay_digest"
                );
                let stanza = v["server_stanza"].as_str().unwrap();
                assert_eq!(
                    names[a.stanza], stanza,
                    "{name}: accepted by the wrong stanza"
                );
                let ip = a.message.message.split(',').next().unwrap();
                assert_eq!(a.allow_ip.to_string(), ip, "{name}: allow_ip");
                accepted += 1;
            }
            Verdict::Reject(r) => {
                assert!(
                    !e["accept"].as_bool().unwrap(),
                    "{name}: rejected ({}), fwknopd accepts",
                    r.reason
                );
                assert_eq!(
                    r.reason.code(),
                    e["reason"].as_str().unwrap(),
                    "{name}: reason ({})",
                    r.reason
                );
                if e.get("rand_val").is_some() && r.reason.code() != "treated_as_gpg" {
                    let m = r
                        .message
                        .as_deref()
                        .unwrap_or_else(|| panic!("{name}: decoded fields missing"));
                    check_fields(name, e, m);
                }
                rejected += 1;
            }
        }
    }
    assert_eq!(
        (accepted, rejected),
        (16, 13),
        "the file holds 16 accepted and 13 rejected vectors"
    );

    // The replay state survives a restart: every accepted packet is refused
    // by a cache reopened from disk.
    // Opened as of the oldest vector, and each judged at its own `now`: a
    // regenerated file (regenerate.sh) keeps the synthetic vectors' older
    // times beside the fresh ones.
    drop(cache);
    let oldest = vectors.iter().filter_map(|v| v["now"].as_u64()).min();
    let mut reopened = ReplayCache::open(
        &dir.path().join("replay.cache"),
        max_age,
        oldest.unwrap_or(first_now),
    )
    .unwrap();
    for v in vectors
        .iter()
        .filter(|v| v["expect"]["accept"].as_bool() == Some(true))
    {
        let src: IpAddr = v["src_ip"].as_str().unwrap().parse().unwrap();
        let verdict = verifier.verify(
            v["packet"].as_str().unwrap().as_bytes(),
            src,
            v["now"].as_u64().unwrap(),
            &mut reopened,
        );
        let Verdict::Reject(r) = verdict else {
            panic!("{}: replay accepted after reopen", v["name"])
        };
        assert_eq!(r.reason.code(), "replay", "{}", v["name"]);
    }
}

/// Without NAT enabled (portknock's default), fwknop's NAT packets are refused.
#[test]
fn nat_vectors_are_refused_by_default_policy() {
    let doc = load();
    let (conf, _) = access_conf(&doc);
    let stanzas = parse_access_conf(
        &conf,
        AccessConfOptions {
            allow_missing_hmac: true,
        },
    )
    .unwrap()
    .stanzas;
    let verifier = Verifier::new(stanzas, ServerPolicy::default());
    let mut cache = ReplayCache::in_memory(120);
    let mut seen = 0;
    for v in doc["vectors"].as_array().unwrap() {
        if !matches!(v["expect"]["msg_type"].as_u64(), Some(2 | 4 | 5 | 6)) {
            continue;
        }
        let verdict = verifier.verify(
            v["packet"].as_str().unwrap().as_bytes(),
            "127.0.0.1".parse().unwrap(),
            v["now"].as_u64().unwrap(),
            &mut cache,
        );
        let Verdict::Reject(r) = verdict else {
            panic!("{}: NAT accepted", v["name"])
        };
        assert_eq!(r.reason.code(), "nat_not_enabled");
        seen += 1;
    }
    assert_eq!(seen, 3);
}
