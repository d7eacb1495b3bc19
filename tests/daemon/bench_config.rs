//! The three-door file the benchmarks run (`bench/three-doors.toml`, used
//! by `CONFIG=... bench/compare.sh`) stays a valid configuration whose
//! first door is the one knock-bench knocks: the figures in
//! BENCHMARKS.md would otherwise measure a server that never started.

use std::process::Command;
use std::time::Duration;

use crate::util::{bin, run};

#[test]
fn the_benchmarks_three_door_file_is_valid_with_its_port_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/three-doors.toml");
    let text = std::fs::read_to_string(template).unwrap();
    assert!(text.contains("@PORT@"), "compare.sh fills in @PORT@");
    let path = dir.path().join("doors.toml");
    std::fs::write(&path, text.replace("@PORT@", "7100")).unwrap();
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1", "--firewall", "userspace"])
        .args(["--stats-listen", "127.0.0.1:7199", "--check-config"]);
    let out = run(cmd, Duration::from_secs(10)).expect_code(0);
    let doors = out.stdout.matches("[[door]]").count();
    assert_eq!(doors, 3, "{}", out.describe());
    let first = out.stdout.split("[[door]]").nth(1).unwrap();
    assert!(
        first.contains("7001") && first.contains("7002") && first.contains("7003"),
        "the first door is knock-bench's default sequence\n{}",
        out.describe()
    );
    assert!(first.contains("7100"), "{}", out.describe());
}
