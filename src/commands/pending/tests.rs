use std::time::{Duration, SystemTime};

use super::*;

fn stop(ip: &str, due_ms: u64) -> PendingStop {
    PendingStop {
        door: "ssh".into(),
        ip: ip.into(),
        due_ms,
        argv: vec![
            "/sbin/iptables".into(),
            "-D".into(),
            "it's \"quoted\"".into(),
        ],
    }
}

#[test]
fn saved_stops_load_back_and_a_missing_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = PendingFile::in_dir(&dir.path().join("state"));
    assert_eq!(file.load().unwrap(), []);
    let stops = [stop("192.0.2.1", 5), stop("2001:db8::1", 7)];
    file.save(&stops).unwrap();
    assert_eq!(file.load().unwrap(), stops);
    file.save(&[]).unwrap();
    assert_eq!(file.load().unwrap(), []);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(FILE_NAME)]);
}

#[test]
fn a_corrupt_file_is_an_error_not_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = PendingFile::in_dir(dir.path());
    std::fs::write(file.path(), "stop = 3\n").unwrap();
    assert!(matches!(file.load(), Err(PendingError::Corrupt { .. })));
}

#[test]
fn remaining_time_is_zero_when_overdue() {
    let now = SystemTime::now();
    let due = unix_ms(now + Duration::from_secs(5));
    assert!(stop("x", due).remaining(now) > Duration::from_secs(4));
    assert_eq!(stop("x", 1).remaining(now), Duration::ZERO);
}
