//! A bad knockd.conf: one message with file:line, exit 2, nothing started.

use std::process::Command;
use std::time::Duration;

use crate::util::{bin, run};

fn refused(text: &str, line: usize, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knockd.conf");
    std::fs::write(&path, text).unwrap();
    let compat = ["knockd", "-c"];
    for (i, how) in [&["--knockd-config"][..], &compat[..]]
        .into_iter()
        .enumerate()
    {
        let mut cmd = Command::new(bin("knock-server"));
        cmd.args(how)
            .arg(&path)
            .args(["--state-dir"])
            .arg(dir.path());
        if i == 0 {
            cmd.arg("--check-config");
        }
        let out = run(cmd, Duration::from_secs(20)).expect_code(2);
        let at = format!("{}:{line}: ", path.display());
        assert!(out.stderr.contains(&at), "{at}\n{}", out.describe());
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
}

#[test]
fn every_malformed_line_shape_exits_2_with_file_and_line() {
    refused(
        "[d]\nsequence = 1:udp\nfrobnicate = 1\n",
        3,
        "unknown directive 'FROBNICATE'",
    );
    refused("[d]\nsequence = 1:udp,99999:udp\n", 2, "bad port '99999'");
    refused("[d]\nsequence = 1:sctp\n", 2, "unknown protocol 'sctp'");
    refused(
        "[d]\nsequence = 1\ntcpflags = syn, ack\n",
        3,
        "unrecognized TCP flag ' ack'",
    );
    refused(
        "[options]\nUseSyslog\n[d]\nseq_timeout = 5\n",
        3,
        "empty knock sequence",
    );
    refused(
        "[d]\none_time_sequences = /nonexistent/seqs\n",
        2,
        "/nonexistent/seqs",
    );
    refused(
        "[d]\nsequence = 1:udp\ncommand = echo %IP% | logger\n",
        3,
        "needs a shell: '|'",
    );
    refused("[d]\nsequence = 1,2\ntcpflags = fin\n", 3, "TCPFlags = fin");
}

#[test]
fn knockd_flags_that_are_not_supported_exit_2() {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args(["knockd", "-l"]);
    let out = run(cmd, Duration::from_secs(20)).expect_code(2);
    assert!(out.stderr.contains("-l"), "{}", out.describe());
}
