//! The README's run command, end to end: `scripts/run.sh --once` with the
//! binaries this test run built. The script uses the fixed ports of the
//! README (2222, 2223, 1234...), so its tests take turns.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::util::{FLAG, Outcome, bin, free_port, run};

/// One run.sh at a time: they all want port 2222.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// `scripts/run.sh --once` with this build's binaries and `env`.
fn run_sh(env: &[(&str, String)]) -> Outcome {
    let bin_dir: PathBuf = bin("knock-server").parent().unwrap().to_path_buf();
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run.sh"));
    cmd.arg("--once").env("PORTKNOCK_BIN_DIR", bin_dir);
    for (key, value) in env {
        cmd.env(key, value);
    }
    run(cmd, Duration::from_secs(60))
}

#[test]
fn the_readme_run_command_knocks_and_reads_the_flag() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_sh(&[]).expect_code(0);
    assert!(
        out.stdout
            .contains("[+] SUCCESS! Port 2222 is now accessible"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains(FLAG), "{}", out.describe());
    assert!(
        out.stderr.contains("knock server stopped"),
        "{}",
        out.describe()
    );
}

#[test]
fn run_sh_fails_clearly_when_port_2222_is_taken() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let _taken = TcpListener::bind("127.0.0.1:2222").expect("hold port 2222");
    let out = run_sh(&[]).expect_code(1);
    assert!(
        out.stderr.contains("error: knock-server did not start"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("SUCCESS"), "{}", out.describe());
    assert!(!out.stdout.contains("knock-client"), "{}", out.describe());
}

#[test]
fn run_sh_fails_clearly_when_the_service_port_is_taken() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let _taken = TcpListener::bind(("127.0.0.1", port)).expect("hold the service port");
    let out = run_sh(&[("SERVICE_PORT", port.to_string())]).expect_code(1);
    assert!(
        out.stderr
            .contains("error: protected-service did not start"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("knock-server:"), "{}", out.describe());
}
