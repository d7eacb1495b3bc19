//! The README's run command, end to end: `scripts/run.sh --once` with the
//! binaries this test run built.

use std::process::Command;
use std::time::Duration;

use crate::util::{FLAG, bin, run};

#[test]
fn the_readme_run_command_knocks_and_reads_the_flag() {
    let bin_dir = bin("knock-server").parent().unwrap().to_path_buf();
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run.sh"));
    cmd.arg("--once").env("PORTKNOCK_BIN_DIR", bin_dir);
    let out = run(cmd, Duration::from_secs(60)).expect_code(0);
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
