//! Rotating doors end to end (issue 14, "Must show"): the real
//! knock-server with a config file and the userspace gate on loopback, the
//! real knock-client deriving the sequence from the same key file. A
//! rotating door opens; the same knocks replayed from the same and from
//! another address, in the same period and the next, are refused; a
//! client whose clock is off by one period gets in; bad input is refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use portknock::rotate::{DoorKey, MIN_ENTROPY_BITS, Rotation};

use crate::util::{Proc, Reached, bin, connect_from, free_port, knock_from, loopback, run};

const LIMIT: Duration = Duration::from_secs(20);
/// Each test's own range below the ephemeral range, so no free port
/// another test picks, and no other test's rotating door, collides with
/// its rotating ports; 6 knocks over 900 ports: 58.9 bits; 100 ports apart, so decoy bands never
/// reach another test's range.
fn set_range(range: &'static str) {
    RANGE.with(|r| r.set(range));
}

fn ports() -> &'static str {
    RANGE.with(|r| r.get())
}

thread_local! {
    static RANGE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("10000-10899") };
}
const LENGTH: &str = "6";

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
}

/// Sleeps past the next boundary if it is less than `margin` away, so a
/// whole sequence fits in one period (bounded: one period at most).
fn settle(period: Duration, margin: Duration) {
    let into = Duration::from_nanos((unix_now().as_nanos() % period.as_nanos()) as u64);
    let left = period - into;
    if left < margin {
        std::thread::sleep(left + Duration::from_millis(50));
    }
}

fn keygen(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("door.key");
    let mut cmd = Command::new(bin("knock-client"));
    cmd.arg("--keygen").arg(&key);
    run(cmd, LIMIT).expect_code(0);
    key
}

fn config(key: &Path, state: &Path, period: &str, protected: u16) -> String {
    format!(
        r#"bind = ["127.0.0.1"]
firewall = "userspace"

[[door]]
name = "web"
sequence = {{ rotate = "{}", period = "{period}", length = {LENGTH}, ports = "{}", protocols = "udp", state = "{}" }}
window = "5s"
access = "1m"
lockout = "1s"
protected = ["tcp/{protected}"]
"#,
        key.display(),
        ports(),
        state.display()
    )
}

fn start(dir: &Path, text: &str) -> Proc {
    let path = dir.join("portknock.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config").arg(&path);
    let mut server = Proc::spawn_logging(cmd, "info");
    server.wait_for("knock server ready", LIMIT);
    server
}

fn client(key: &Path, period: &str, protected: u16, source: &str, offset: i64) -> Command {
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--target", "127.0.0.1", "--door", "web"])
        .arg("--door-key")
        .arg(key)
        .args(["--period", period, "--length", LENGTH, "--ports", ports()])
        .args(["--clock-offset", &offset.to_string()])
        .args(["--protected-port", &protected.to_string()])
        .args([
            "--source", source, "--delay", "0.05", "--wait", "0.3", "--check",
        ]);
    cmd
}

/// The sequence of period `c`, derived here as the client and server do.
fn sequence(key: &Path, period: Duration, c: u64) -> Vec<u16> {
    let rotation = Rotation::new(period, 6, ports(), MIN_ENTROPY_BITS).unwrap();
    rotation.sequence(&DoorKey::load(key).unwrap(), "web", c)
}

fn replay(from: &str, ports: &[u16]) {
    for &port in ports {
        knock_from(from, port);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_rotating_door_opens_once_and_replays_are_refused_from_any_address_in_this_period_and_the_next()
{
    set_range("10000-10899");
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let period = Duration::from_secs(3);
    let server = start(
        dir.path(),
        &config(&key, &dir.path().join("used"), "3s", protected),
    );
    settle(period, Duration::from_millis(1500));
    let c = period_now(period);
    let out = run(client(&key, "3s", protected, "127.0.0.2", 0), LIMIT);
    let out = out.expect_code(0);
    assert!(out.stdout.contains("SUCCESS"), "{}", out.describe());
    let used = sequence(&key, period, c);
    // Replays in the same period: from the same address (no renewal) and
    // from another (stays shut).
    replay("127.0.0.2", &used);
    replay("127.0.0.3", &used);
    assert_eq!(
        connect_from("127.0.0.3", loopback(protected)),
        Reached::Reset
    );
    // And after the boundary, while period c is still accepted as c-1.
    settle(period, period);
    assert_eq!(period_now(period), c + 1, "{}", server.logs());
    replay("127.0.0.4", &used);
    assert_eq!(
        connect_from("127.0.0.4", loopback(protected)),
        Reached::Reset
    );
    assert_eq!(server.count("access granted"), 1, "{}", server.logs());
    assert_eq!(server.count("access renewed"), 0, "{}", server.logs());
    // The state file remembers the use across a restart.
    let text = std::fs::read_to_string(dir.path().join("used")).unwrap();
    assert!(text.contains(&format!("web {c}")), "{text}");
}

fn period_now(period: Duration) -> u64 {
    (unix_now().as_nanos() / period.as_nanos()) as u64
}

#[test]
fn a_client_clock_off_by_one_period_gets_in_and_two_periods_does_not() {
    set_range("11000-11899");
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let _server = start(
        dir.path(),
        &config(&key, &dir.path().join("used"), "30s", protected),
    );
    settle(Duration::from_secs(30), Duration::from_secs(3));
    for (source, offset, opens) in [
        ("127.0.0.5", -30, true),
        ("127.0.0.6", 30, true),
        ("127.0.0.7", 60, false),
        ("127.0.0.8", -60, false),
    ] {
        let out = run(client(&key, "30s", protected, source, offset), LIMIT);
        let code = if opens { 0 } else { 1 };
        out.expect_code(code);
    }
}

#[test]
fn used_sequences_stay_refused_after_a_restart() {
    set_range("12000-12899");
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let text = config(&key, &dir.path().join("used"), "30s", protected);
    settle(Duration::from_secs(30), Duration::from_secs(5));
    let mut server = start(dir.path(), &text);
    run(client(&key, "30s", protected, "127.0.0.9", 0), LIMIT).expect_code(0);
    server.signal_and_wait("TERM", LIMIT);
    let _server = start(dir.path(), &text);
    run(client(&key, "30s", protected, "127.0.0.10", 0), LIMIT).expect_code(1);
    // The next period's sequence is unused.
    run(client(&key, "30s", protected, "127.0.0.11", 30), LIMIT).expect_code(0);
}

#[test]
fn bad_rotating_input_is_refused_with_a_clear_message() {
    set_range("13000-13899");
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let state = dir.path().join("used");
    let protected = free_port();
    let readable = dir.path().join("readable.key");
    std::fs::copy(&key, &readable).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, "0011223344\n").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let good = config(&key, &state, "30s", protected);
    let cases = [
        (
            good.replace(&key.display().to_string(), "/nonexistent/door.key"),
            "cannot read key file",
        ),
        (
            good.replace(&key.display().to_string(), &readable.display().to_string()),
            "mode 0644",
        ),
        (
            good.replace(&key.display().to_string(), &short.display().to_string()),
            "5-byte key",
        ),
        (
            good.replace("period = \"30s\"", "period = \"0s\""),
            "at least 1s",
        ),
        (
            good.replace(ports(), "13000-13500")
                .replace("length = 6", "length = 4"),
            "35.9 bits",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let mut cmd = Command::new(bin("knock-server"));
        cmd.arg("--config").arg(&path).arg("--check-config");
        let out = run(cmd, LIMIT).expect_code(2);
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
    }
    // The client refuses the same.
    let mut cmd = client(&readable, "30s", protected, "127.0.0.2", 0);
    cmd.arg("--quiet");
    let out = run(cmd, LIMIT).expect_code(2);
    assert!(out.stderr.contains("mode 0644"), "{}", out.describe());
    let mut cmd = client(&key, "0s", protected, "127.0.0.2", 0);
    cmd.arg("--quiet");
    run(cmd, LIMIT).expect_code(2);
}

/// Sequences paced one a period, each started 1.7 s into a 2 s period
/// with its 6 knocks 100 ms apart, so every one straddles a boundary:
/// knock-bench derives each from its first knock's period, as the client.
#[test]
fn paced_load_across_eight_period_boundaries_loses_no_sequence() {
    set_range("14000-14899");
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path());
    let protected = free_port();
    let stats = format!("127.0.0.1:{}", free_port());
    let text = config(&key, &dir.path().join("used"), "2s", protected).replacen(
        "firewall = \"userspace\"",
        &format!("firewall = \"userspace\"\nstats-listen = \"{stats}\""),
        1,
    );
    let server = start(dir.path(), &text);
    // Wait until 1.7 s into a period (bounded: one period).
    let period = Duration::from_secs(2);
    let into = Duration::from_nanos((unix_now().as_nanos() % period.as_nanos()) as u64);
    let target = Duration::from_millis(1700);
    std::thread::sleep(if into <= target {
        target - into
    } else {
        period + target - into
    });
    let mut bench = Command::new(bin("knock-bench"));
    bench
        .args([
            "--mode",
            "sequences",
            "--count",
            "8",
            "--rate",
            "0.5",
            "--gap",
            "100ms",
        ])
        .arg("--door-key")
        .arg(&key)
        .args([
            "--door",
            "web",
            "--period",
            "2s",
            "--length",
            LENGTH,
            "--ports",
            ports(),
        ])
        .args(["--protected-port", &protected.to_string()])
        .args(["--source-base", "127.80.0.0", "--stats", &stats])
        .args(["--time-limit", "40s", "--settle", "500ms", "--json"]);
    let out = run(bench, Duration::from_secs(60)).expect_code(0);
    let json = out.stdout.trim();
    for needle in [
        "\"periods\":8",
        "\"grants\":8",
        "\"lost\":0",
        "\"server_packets\":48",
    ] {
        assert!(json.contains(needle), "{needle}\n{json}\n{}", server.logs());
    }
}
