//! `--metrics-listen`: `/metrics` under a bounded knock-bench load counts
//! what knock-bench offered and what was granted, and passes
//! `promtool check metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{ServerSpec, bin, free_port, run};

/// The body of `GET path` on `addr`, with the status line.
pub fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP reply");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels as printed).
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

fn field(json: &str, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

#[test]
fn metrics_count_what_knock_bench_offered_and_was_granted() {
    let mut spec = ServerSpec::new();
    let stats = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    spec.extra = vec![
        "--stats-listen".into(),
        stats.clone(),
        "--metrics-listen".into(),
        metrics.clone(),
    ];
    let server = spec.start();
    let mut cmd = Command::new(bin("knock-bench"));
    cmd.args(["--sequence", &spec.sequence_arg()])
        .args(["--protected-port", &spec.protected_port.to_string()])
        .args(["--stats", &stats])
        .args(["--server-pid", &server.pid().to_string()])
        .args(["--time-limit", "20s", "--settle", "300ms", "--json"])
        .args(["--mode", "sequences", "--count", "300", "--rate", "2000"])
        .args(["--source-base", "127.63.0.0"]);
    let out = run(cmd, Duration::from_secs(30)).expect_code(0);
    let offered = field(&out.stdout, "packets_sent");
    let granted = field(&out.stdout, "grants");
    assert_eq!((offered, granted), (900, 300), "{}", out.describe());

    let (status, body) = get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let packets = sample(
        &body,
        r#"portknock_capture_packets_total{source="socket",proto="udp"}"#,
    );
    let completed = sample(&body, r#"portknock_knocks_total{result="completed"}"#);
    assert_eq!((packets, completed), (offered, granted), "{body}");
    assert_eq!(
        sample(&body, r#"portknock_grants_active{origin="knock"}"#),
        300
    );
    assert!(!body.contains("127.63."), "no per-address labels");
    assert!(get(&metrics, "/").0.contains("404"));

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut promtool) = promtool else {
        assert!(std::env::var_os("CI").is_none(), "promtool missing in CI");
        eprintln!("SKIPPED: promtool check (promtool not installed)");
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
