//! What `knock-client` prints, checked against the real binary: the seed's
//! layout line for line (golden files in `tests/data/client/`), colours only
//! on a terminal and never with `NO_COLOR`, and a reader that leaves early
//! (`| head -1`) costs the output, never a panic or the knock.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{ServerSpec, bin, free_port, run};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A golden file with its placeholders filled in.
fn golden(name: &str, knocks: &[u16], port: u16) -> String {
    let path = format!("{}/tests/data/client/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = text.replace("{PORT}", &port.to_string());
    for (i, knock) in knocks.iter().enumerate() {
        text = text.replace(&format!("{{K{}}}", i + 1), &knock.to_string());
    }
    text
}

/// Asserts equality line by line, naming the first line that differs.
#[track_caller]
fn assert_lines(actual: &str, expected: &str, context: &str) {
    for (n, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "line {} differs\n{context}", n + 1);
    }
    assert_eq!(actual, expected, "line count or ends differ\n{context}");
}

#[test]
fn a_successful_knock_prints_the_seeds_example_line_for_line() {
    let spec = ServerSpec::new();
    let _server = spec.start();
    let mut cmd = spec.client("127.0.0.2");
    cmd.args(["--check", "--wait", "1", "--timeout", "2"]);
    let out = run(cmd, CLIENT_TIMEOUT).expect_code(0);
    let expected = golden("knock_check.golden", &spec.sequence, spec.protected_port);
    assert_lines(&out.stdout, &expected, &out.describe());
}

#[test]
fn check_only_against_a_shut_port_has_the_same_layout() {
    let spec = ServerSpec::new();
    let _server = spec.start();
    let mut cmd = spec.client("127.0.0.3");
    cmd.args(["--check-only", "--timeout", "2"]);
    let out = run(cmd, CLIENT_TIMEOUT).expect_code(1);
    let expected = golden("check_only_closed.golden", &[], spec.protected_port);
    assert_lines(&out.stdout, &expected, &out.describe());
}

/// `knock-client --check-only` at a closed loopback port, in a pseudo
/// terminal made by util-linux `script`; returns what the terminal showed.
fn on_a_terminal(no_color: Option<&str>) -> String {
    let port = free_port();
    let client = bin("knock-client");
    let line = format!(
        "{} --target 127.0.0.1 --protected-port {port} --check-only --timeout 1",
        client.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    cmd.env_remove("NO_COLOR");
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let out = run(cmd, CLIENT_TIMEOUT).expect_code(1);
    assert!(out.stdout.contains("Attempting"), "{}", out.describe());
    out.stdout
}

#[test]
fn colours_appear_on_a_terminal_unless_no_color_is_set() {
    let coloured = on_a_terminal(None);
    assert!(
        coloured.contains("\x1b[1;31m[-]\x1b[0m Port"),
        "{coloured:?}"
    );
    let plain = on_a_terminal(Some("1"));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("[-] Port"), "{plain:?}");
}

#[test]
fn a_pipe_is_never_coloured() {
    let port = free_port();
    let mut cmd = Command::new(bin("knock-client"));
    cmd.args(["--target", "127.0.0.1", "--check-only", "--timeout", "1"])
        .args(["--protected-port", &port.to_string()])
        .env_remove("NO_COLOR");
    let out = run(cmd, CLIENT_TIMEOUT).expect_code(1);
    assert!(!out.stdout.contains('\x1b'), "{}", out.describe());
}

/// Runs `knock-client ARGS | head -1` under `pipefail`, so the exit status
/// is the client's, and the pipe really closes after the first line.
fn through_head(args: &[String]) -> crate::util::Outcome {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", r#"set -o pipefail; "$@" | head -1"#, "_"])
        .arg(bin("knock-client"))
        .args(args);
    run(cmd, CLIENT_TIMEOUT)
}

#[test]
fn a_reader_that_leaves_early_costs_the_output_not_the_knock() {
    let spec = ServerSpec::new();
    let server = spec.start();
    let args: Vec<String> = [
        "--target",
        "127.0.0.1",
        "--source",
        "127.0.0.4",
        "--delay",
        "0.05",
        "--wait",
        "0.2",
        "--check",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--sequence".to_string(),
        spec.sequence_arg(),
        "--protected-port".to_string(),
        spec.protected_port.to_string(),
    ])
    .collect();
    // Exit 0 with --check: the knock went through and the port opened.
    let out = through_head(&args).expect_code(0);
    assert_eq!(
        out.stdout,
        format!("{}\n", "=".repeat(60)),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    assert!(server.printed("access granted"), "{}", server.logs());

    // A failed check keeps its exit code 1 through the closed pipe.
    let mut closed = args.clone();
    closed.push("--check-only".to_string());
    closed.retain(|a| a != "--check");
    let stranger: Vec<String> = closed
        .iter()
        .map(|a| a.replace("127.0.0.4", "127.0.0.6"))
        .collect();
    let out = through_head(&stranger).expect_code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
}

/// The writing end of a pipe whose reading end is already closed: every
/// write to it fails with EPIPE, from the first byte.
fn reader_gone() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe(2)");
    // SAFETY: both descriptors were just returned by pipe(2) and are owned
    // by nobody else; each is wrapped exactly once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn every_write_into_a_pipe_without_reader_is_quiet() {
    let port = free_port().to_string();
    let cases: [(&[&str], i32); 2] = [
        (&["--keygen"], 0),
        (
            &[
                "--target",
                "127.0.0.1",
                "--check-only",
                "--timeout",
                "1",
                "--protected-port",
                &port,
            ],
            1,
        ),
    ];
    for (args, code) in cases {
        let out = Command::new(bin("knock-client"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(reader_gone())
            .stderr(Stdio::piped())
            .output()
            .expect("knock-client runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
