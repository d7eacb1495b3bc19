//! knock-bench against a real server: a small bounded run of each load,
//! checked by the counts it reports (never by how fast: figures belong in
//! BENCHMARKS.md).

use std::process::Command;
use std::time::Duration;

use crate::util::{ServerSpec, bin, free_port, run};

/// A server with a stats endpoint, and a bench command aimed at it.
fn setup(extra: &[&str]) -> (crate::util::Proc, Command) {
    let mut spec = ServerSpec::new();
    let stats = format!("127.0.0.1:{}", free_port());
    spec.extra = vec!["--stats-listen".into(), stats.clone()];
    spec.extra.extend(extra.iter().map(|s| s.to_string()));
    let server = spec.start();
    let mut cmd = Command::new(bin("knock-bench"));
    cmd.args(["--sequence", &spec.sequence_arg()])
        .args(["--protected-port", &spec.protected_port.to_string()])
        .args(["--stats", &stats])
        .args(["--server-pid", &server.pid().to_string()])
        .args(["--time-limit", "20s", "--settle", "300ms", "--json"]);
    (server, cmd)
}

/// The value of `"name":value` in the bench's JSON report.
fn field(json: &str, name: &str) -> String {
    let key = format!("\"{name}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    json[start..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn paced_sequences_are_all_granted_and_every_packet_decided() {
    let (_server, mut cmd) = setup(&[]);
    cmd.args(["--mode", "sequences", "--count", "300", "--rate", "2000"])
        .args(["--source-base", "127.60.0.0"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    let json = &out.stdout;
    assert_eq!(field(json, "packets_sent"), "900", "{}", out.describe());
    assert_eq!(field(json, "server_decisions"), "900", "{}", out.describe());
    assert_eq!(field(json, "grants"), "300", "{}", out.describe());
    assert_eq!(field(json, "lost"), "0", "{}", out.describe());
}

#[test]
fn interleaved_sequences_all_open_and_latency_probes_see_access() {
    let (_server, mut cmd) = setup(&[]);
    cmd.args(["--mode", "interleaved", "--count", "300", "--gap", "50ms"])
        .args(["--source-base", "127.61.0.0"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    assert_eq!(field(&out.stdout, "grants"), "300", "{}", out.describe());

    let (_server, mut cmd) = setup(&[]);
    cmd.args(["--mode", "latency", "--count", "5", "--gap", "1ms"])
        .args(["--source-base", "127.62.0.0"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    assert_eq!(
        field(&out.stdout, "latency_samples"),
        "5",
        "{}",
        out.describe()
    );
    assert_eq!(
        field(&out.stdout, "probes_failed"),
        "0",
        "{}",
        out.describe()
    );
}

#[test]
fn a_first_knock_flood_past_the_bound_stays_bounded_and_lets_the_client_in() {
    let (_server, mut cmd) = setup(&["--max-tracked", "100"]);
    cmd.args(["--mode", "first-flood", "--count", "600", "--rate", "3000"])
        .args([
            "--source-base",
            "127.63.0.0",
            "--legit",
            "127.0.0.77",
            "--gap",
            "1ms",
        ])
        .args(["--legit-after", "100ms"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    let json = &out.stdout;
    // 600 flood knocks plus the client's three: each one decided.
    assert_eq!(field(json, "server_decisions"), "603", "{}", out.describe());
    // The table holds at most its bound; whatever it does not hold of the
    // 601 sources (600 flood, the client's completed sequence, kept until
    // its window ends so a copy of its last knock is no wrong knock) was
    // evicted.
    let tracked: u64 = field(json, "tracked_at_end").parse().unwrap();
    let evicted: u64 = field(json, "evictions").parse().unwrap();
    assert!(tracked <= 100, "{}", out.describe());
    assert_eq!(tracked + evicted, 601, "{}", out.describe());
    assert_eq!(field(json, "legit_got_in"), "true", "{}", out.describe());
}

#[test]
fn spa_mode_opens_every_packet_of_a_small_load_and_probes_see_access() {
    use crate::util::spa::{HMAC, KEY, SpaServer};
    let dir = tempfile::tempdir().unwrap();
    let mut server = SpaServer::new(dir.path());
    let stats = format!("127.0.0.1:{}", free_port());
    server.spec.extra.extend([
        // The bench sends each packet from the address it names.
        "--spa-require-source-match".into(),
        "--stats-listen".into(),
        stats.clone(),
    ]);
    let (spec, spa_port) = (server.spec.clone(), server.spa_port);
    let _server = server.start();
    let mut cmd = Command::new(bin("knock-bench"));
    cmd.args(["--mode", "spa", "--count", "200", "--rate", "1000"])
        .args(["--spa-latency-count", "3"])
        .args(["--protected-port", &spec.protected_port.to_string()])
        .args(["--spa-port", &spa_port.to_string()])
        .args(["--spa-key-base64", KEY, "--spa-hmac-key-base64", HMAC])
        .args(["--stats", &stats, "--source-base", "127.64.0.0"])
        .args(["--time-limit", "20s", "--settle", "2s", "--json"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    let json = &out.stdout;
    assert_eq!(field(json, "latency_samples"), "3", "{}", out.describe());
    assert_eq!(field(json, "probes_failed"), "0", "{}", out.describe());
    assert_eq!(field(json, "packets_sent"), "200", "{}", out.describe());
    // Every packet fresh and from its own address: each one accepted and
    // granted, none refused as a replay or for its source.
    assert_eq!(field(json, "spa_accepted"), "200", "{}", out.describe());
    assert_eq!(field(json, "spa_rejected"), "0", "{}", out.describe());
    assert_eq!(field(json, "opened"), "200", "{}", out.describe());
    assert_eq!(field(json, "lost"), "0", "{}", out.describe());
}

#[test]
fn spa_mode_without_keys_is_a_usage_error() {
    let mut cmd = Command::new(bin("knock-bench"));
    cmd.args(["--mode", "spa", "--count", "1"]);
    let out = run(cmd, Duration::from_secs(10)).expect_code(2);
    assert!(
        out.stderr.contains("--spa-key-base64"),
        "{}",
        out.describe()
    );
}
