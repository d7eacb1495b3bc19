//! Bad flags: one clear line naming the value, exit 2, nothing started.

use std::process::Command;
use std::time::Duration;

use crate::util::{self, ServerSpec, bin, run};

const T: Duration = Duration::from_secs(10);

fn server_with(args: &[&str]) -> util::Outcome {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.args(["--bind", "127.0.0.1"]).args(args);
    if !args.contains(&"--firewall") {
        cmd.args(["--firewall", "userspace"]);
    }
    run(cmd, T)
}

#[track_caller]
fn refused(outcome: util::Outcome, needle: &str) {
    let outcome = outcome.expect_code(2);
    assert!(
        outcome.stderr.contains(needle),
        "stderr lacks {needle:?}\n{}",
        outcome.describe()
    );
    assert!(
        !outcome.stderr.contains("panicked"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn the_server_refuses_bad_values_with_exit_2() {
    refused(server_with(&["--protected-port", "0"]), "'0'");
    refused(server_with(&["--protected-port", "70000"]), "1 to 65535");
    refused(server_with(&["--sequence", "1234,abc"]), "'abc'");
    refused(server_with(&["--sequence", ""]), "invalid sequence");
    refused(server_with(&["--window", "0"]), "invalid duration '0'");
    refused(server_with(&["--access-duration", "-5"]), "-5");
    refused(server_with(&["--lockout", "soon"]), "'soon'");
    refused(server_with(&["--max-tracked", "0"]), "--max-tracked");
    refused(server_with(&["--firewall", "pf"]), "pf");
    refused(
        server_with(&["--iptables-position", "middle"]),
        "first, last",
    );
    refused(
        server_with(&["--sequence", "1234,2222", "--protected-port", "2222"]),
        "protected port 2222 is also in the knock sequence",
    );
    refused(server_with(&["--upstream", "nohostport"]), "HOST:PORT");
}

#[test]
fn the_seed_command_line_is_accepted() {
    let out = run(
        {
            let mut cmd = Command::new(bin("knock-server"));
            cmd.args([
                "--sequence",
                "1111,2222,3333",
                "--protected-port",
                "8080",
                "--window",
                "15",
                "--access-duration",
                "60",
                "--help",
            ]);
            cmd
        },
        T,
    )
    .expect_code(0);
    assert!(out.stdout.contains("--access-duration"));
}

#[test]
fn server_help_explains_every_flag_with_its_default() {
    let out = server_with(&["--help"]).expect_code(0);
    for needle in [
        "--sequence",
        "[default: 1234,5678,9012]",
        "--protected-port",
        "[default: 2222]",
        "--window",
        "[default: 10]",
        "--access-duration",
        "[default: 30]",
        "--lockout",
        "[default: 5]",
        "--bind",
        "--firewall",
        "--upstream",
        "--flag",
        "--max-tracked",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle}\n{}",
            out.describe()
        );
    }
}

#[test]
fn a_busy_knock_port_fails_the_start_with_a_clear_line() {
    let spec = ServerSpec::new();
    let _first = spec.start();
    let out = run(spec.command(), T).expect_code(1);
    assert!(
        out.stderr.contains("cannot listen for knocks on udp"),
        "{}",
        out.describe()
    );
}
