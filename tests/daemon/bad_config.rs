//! Bad configuration files: one clear message each, with where, exit 2,
//! nothing started (no listener, no firewall).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Outcome, bin, run};

const LIMIT: Duration = Duration::from_secs(20);

fn server(args: &[&str], config: &Path) -> Outcome {
    let mut cmd = Command::new(bin("knock-server"));
    cmd.arg("--config").arg(config).args(args);
    run(cmd, LIMIT)
}

/// Writes `text`, runs the server on it (and `--check-config`): exit 2,
/// every line of `expect` in the one error, nothing started.
fn refused(text: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    std::fs::write(&path, text).unwrap();
    for args in [&[][..], &["--check-config"][..]] {
        let out = server(args, &path).expect_code(2);
        for needle in expect {
            assert!(
                out.stderr.contains(needle),
                "{needle:?}\n{}",
                out.describe()
            );
        }
        assert!(
            out.stderr.contains(&path.display().to_string()),
            "no file named\n{}",
            out.describe()
        );
        assert_eq!(out.stderr.matches("error").count(), 1, "{}", out.describe());
        assert!(!out.stderr.contains("ready"), "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
}

const DOOR: &str =
    "[[door]]\nname = \"ssh\"\nsequence = [7001, 7002]\nprotected = [\"tcp/7022\"]\n";

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    refused(
        &format!("firewall = \"userspace\"\nbogus = 1\n{DOOR}"),
        &["portknock.toml:2:1", "bogus"],
    );
}

#[test]
fn a_wrong_type_is_refused_with_its_line() {
    refused(
        &format!("max-tracked = \"many\"\n{DOOR}"),
        &["portknock.toml:1:15", "invalid type"],
    );
}

#[test]
fn duplicate_door_names_are_refused() {
    let other = "[[door]]\nname = \"ssh\"\nsequence = [7101]\nprotected = [\"tcp/7122\"]\n";
    refused(&format!("{DOOR}\n{other}"), &["portknock.toml:7:", "ssh"]);
}

#[test]
fn a_knock_port_equal_to_a_protected_port_is_refused() {
    refused(
        "[[door]]\nname = \"ssh\"\nsequence = [7001, 7022]\nprotected = [\"tcp/7022\"]\n",
        &["portknock.toml:3:", "7022"],
    );
}

#[test]
fn overlapping_protected_ports_with_different_durations_are_refused() {
    let other = "[[door]]\nname = \"web\"\nsequence = [7101]\naccess = \"1m\"\nprotected = [\"tcp/7022\"]\n";
    refused(&format!("{DOOR}\n{other}"), &["portknock.toml:10:", "7022"]);
}

#[test]
fn a_bad_cidr_is_refused() {
    refused(
        &format!("{DOOR}allow = [\"192.0.2.0/33\"]\n"),
        &["portknock.toml:5:", "192.0.2.0/33"],
    );
}

#[test]
fn an_empty_sequence_is_refused() {
    refused(
        "[[door]]\nname = \"ssh\"\nsequence = []\nprotected = [\"tcp/7022\"]\n",
        &["portknock.toml:3:", "sequence"],
    );
}

#[test]
fn a_missing_or_unreadable_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let not_utf8 = dir.path().join("binary.toml");
    std::fs::write(&not_utf8, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    // Root reads files of any mode: a directory is what root cannot read.
    for path in [missing.as_path(), not_utf8.as_path(), dir.path()] {
        for args in [&[][..], &["--check-config"][..]] {
            let out = server(args, path).expect_code(2);
            assert!(
                out.stderr.contains("cannot read config file")
                    && out.stderr.contains(&path.display().to_string()),
                "{}",
                out.describe()
            );
            assert!(!out.stderr.contains("ready"), "{}", out.describe());
        }
    }
}

#[test]
fn check_config_prints_the_example_with_secrets_masked() {
    let example = Path::new("packaging/portknock.toml");
    // The example runs as is: no refusal, no note.
    let out = server(&["--check-config"], example).expect_code(0);
    assert!(out.stderr.is_empty(), "{}", out.describe());
    assert!(
        out.stdout.contains("name = \"admin\""),
        "{}",
        out.describe()
    );
    let out = server(&["--check-config", "--flag", "FLAG{secret}"], example).expect_code(0);
    assert!(out.stdout.contains("[[door]]"), "{}", out.describe());
    assert!(!out.stdout.contains("FLAG{secret}"), "{}", out.describe());
    // A flag beside --config overrides the file's global.
    let out = server(&["--check-config", "--max-tracked", "77"], example).expect_code(0);
    assert!(
        out.stdout.contains("max-tracked = 77"),
        "{}",
        out.describe()
    );
}

#[test]
fn door_flags_beside_config_are_refused() {
    let example = Path::new("packaging/portknock.toml");
    let out = server(&["--window", "3"], example).expect_code(2);
    assert!(out.stderr.contains("--window"), "{}", out.describe());
}

#[test]
fn check_config_refuses_what_the_daemon_refuses_with_the_same_message() {
    // A udp/N door with the userspace gate chosen: refused by both.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let text = "firewall = \"userspace\"\nbind = [\"127.0.0.1\"]\n[[door]]\nname = \"admin\"\nsequence = [7000, 7200]\nprotected = [\"tcp/7022\", \"udp/51820\"]\n";
    std::fs::write(&path, text).unwrap();
    let check = server(&["--check-config"], &path).expect_code(2);
    let start = server(&[], &path).expect_code(2);
    assert!(
        check.stderr.contains("protected port udp/51820"),
        "{}",
        check.describe()
    );
    assert_eq!(check.stderr, start.stderr, "{}", check.describe());
    assert!(check.stdout.is_empty(), "{}", check.describe());
    assert!(!start.stderr.contains("ready"), "{}", start.describe());
}

#[test]
fn a_tcp_knock_is_valid_and_check_config_notes_it_is_not_heard_yet() {
    // `:tcp` knocks are parsed and validated; this build hears UDP only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portknock.toml");
    let text = "firewall = \"userspace\"\nbind = [\"127.0.0.1\"]\n[[door]]\nname = \"admin\"\nsequence = [7000, \"7200:tcp\"]\nprotected = [\"tcp/7022\"]\n";
    std::fs::write(&path, text).unwrap();
    let check = server(&["--check-config"], &path).expect_code(0);
    assert!(
        check
            .stderr
            .contains("door 'admin': TCP knock 7200:tcp needs a capture source"),
        "{}",
        check.describe()
    );
    assert!(check.stdout.contains("7200:tcp"), "{}", check.describe());
}
