use std::time::Duration;

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn exit_status_and_stderr_are_reported() {
    let report = run(
        &argv(&["/bin/sh", "-c", "echo oops >&2; exit 3"]),
        Duration::from_secs(10),
    );
    assert_eq!(report.ending, Ending::Exited(3));
    assert_eq!(report.stderr.trim(), "oops");
    assert!(!report.success());
    assert!(run(&argv(&["/bin/true"]), Duration::from_secs(10)).success());
}

#[test]
fn a_hanging_command_and_its_children_are_killed_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child-lived");
    // The child outlives its parent's kill unless the group is killed.
    let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
    let report = run(
        &argv(&["/bin/sh", "-c", &script]),
        Duration::from_millis(300),
    );
    assert_eq!(report.ending, Ending::TimedOut);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !marker.exists(),
        "a child of the timed-out command survived"
    );
}

#[test]
fn a_flood_of_output_is_drained_and_bounded() {
    let report = run(
        &argv(&[
            "/bin/sh",
            "-c",
            "head -c 1000000 /dev/zero; head -c 100000 /dev/zero | tr '\\0' e >&2",
        ]),
        Duration::from_secs(20),
    );
    assert!(report.success(), "{report:?}");
    assert_eq!(report.stderr.len(), OUTPUT_CAP);
    assert_eq!(report.dropped, 1_000_000 + 100_000 - OUTPUT_CAP as u64);
}

#[test]
fn a_missing_program_is_not_started() {
    let report = run(&argv(&["/nonexistent/prog"]), Duration::from_secs(1));
    assert!(
        matches!(report.ending, Ending::NotStarted(ref why) if why.contains("/nonexistent/prog"))
    );
    assert!(matches!(
        run(&[], Duration::from_secs(1)).ending,
        Ending::NotStarted(_)
    ));
}
