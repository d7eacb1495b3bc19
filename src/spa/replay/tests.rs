use super::*;
use crate::spa::b64;
use crate::spa::replay_file::HEADER;
use std::fs;
use std::io::Write;

fn d(n: u8) -> ReplayDigest {
    [n; 32]
}

#[test]
fn memory_cache_records_and_prunes_by_packet_time() {
    let mut c = ReplayCache::in_memory(120);
    c.insert(d(1), 1000, 1000).unwrap();
    c.insert(d(2), 1500, 1000).unwrap(); // a future-stamped packet
    assert!(c.contains(&d(1)) && c.contains(&d(2)) && !c.contains(&d(3)));
    assert_eq!(
        c.prune(1120).unwrap(),
        0,
        "exactly at the window edge stays"
    );
    assert_eq!(c.prune(1121).unwrap(), 1);
    assert!(!c.contains(&d(1)));
    // The future packet stays until its own timestamp is past the window.
    assert_eq!(c.prune(1620).unwrap(), 0);
    assert!(c.contains(&d(2)));
    assert_eq!(c.prune(1621).unwrap(), 1);
    assert!(c.is_empty());
}

#[test]
fn file_cache_survives_reopen_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.cache");
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    c.insert(d(1), 1000, 1000).unwrap();
    c.insert(d(2), 1100, 1100).unwrap();
    drop(c);
    let c = ReplayCache::open(&path, 120, 1110).unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.contains(&d(1)) && c.contains(&d(2)));
    drop(c);
    // Reopening later prunes the first entry and rewrites the file.
    let c = ReplayCache::open(&path, 120, 1200).unwrap();
    assert!(!c.contains(&d(1)) && c.contains(&d(2)));
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "header + one entry: {text}");
    assert!(!dir.path().join("replay.cache.tmp").exists());
}

#[test]
fn torn_and_garbage_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.cache");
    let good = format!("{} 1000\n", b64::encode(&d(7)));
    fs::write(
        &path,
        format!("{HEADER}\ngarbage line\n{good}AAAA 12\n{}", &good[..20]),
    )
    .unwrap();
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    assert_eq!(c.len(), 1);
    assert!(c.contains(&d(7)));
    c.insert(d(8), 1000, 1000).unwrap();
    drop(c);
    let c = ReplayCache::open(&path, 120, 1000).unwrap();
    assert!(c.contains(&d(7)) && c.contains(&d(8)));
}

#[test]
fn many_inserts_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.cache");
    let mut c = ReplayCache::open(&path, 10, 0).unwrap();
    for i in 0..5000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        let now = u64::from(i);
        c.insert(key, now, now).unwrap();
    }
    assert!(c.len() <= MIN_COMPACT_LINES + 11, "{}", c.len());
    let lines = fs::read_to_string(&path).unwrap().lines().count();
    assert!(lines <= 2 * MIN_COMPACT_LINES + 1, "{lines}");
}

#[test]
fn unwritable_path_is_a_typed_error() {
    let e = ReplayCache::open(Path::new("/nonexistent-dir/x/replay"), 120, 0).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/x/replay"), "{e}");
}

/// A packet recorded before a SIGKILL is still known after it: the child
/// process (this same test binary) inserts, then kills itself with SIGKILL.
#[test]
fn survives_sigkill() {
    const CHILD: &str = "PORTKNOCK_REPLAY_SIGKILL_CHILD";
    if let Ok(path) = std::env::var(CHILD) {
        let mut c = ReplayCache::open(Path::new(&path), 120, 1000).unwrap();
        c.insert(d(9), 1000, 1000).unwrap();
        let me = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &me])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(10));
        unreachable!("SIGKILL did not arrive");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.cache");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spa::replay::tests::survives_sigkill",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "child should die by SIGKILL: {status:?}"
    );
    let c = ReplayCache::open(&path, 120, 1000).unwrap();
    assert!(c.contains(&d(9)), "entry written before SIGKILL was lost");
}

fn private_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 9 item 12: a planted `replay.tmp` link made root overwrite its target.
#[test]
fn a_planted_temp_link_is_never_followed() {
    let dir = private_dir();
    let path = dir.path().join("replay");
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("replay.tmp")).unwrap();
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    c.insert(d(1), 1000, 1000).unwrap();
    c.prune(1000).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    // No temporary file is left behind either.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn a_link_or_a_non_regular_file_as_the_cache_is_refused() {
    let dir = private_dir();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let link = dir.path().join("replay");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let e = ReplayCache::open(&link, 120, 0).unwrap_err().to_string();
    assert!(e.contains("symbolic link") && e.contains("replay"), "{e}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");

    let fifo = dir.path().join("fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string and mode.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let e = ReplayCache::open(&fifo, 120, 0).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let e = ReplayCache::open(Path::new("/dev/zero"), 120, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn a_directory_others_may_write_is_refused() {
    let dir = private_dir();
    let path = dir.path().join("replay");
    for mode in [0o770, 0o777, 0o1777, 0o702] {
        chmod(dir.path(), mode);
        let e = ReplayCache::open(&path, 120, 0).unwrap_err().to_string();
        assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(!path.exists());
    }
    for mode in [0o700, 0o750, 0o755] {
        chmod(dir.path(), mode);
        ReplayCache::open(&path, 120, 0).unwrap();
    }
}

#[test]
fn an_oversize_cache_is_refused_at_start() {
    let dir = private_dir();
    let path = dir.path().join("replay");
    let f = fs::File::create(&path).unwrap();
    f.set_len(MAX_FILE_LEN + 1).unwrap();
    drop(f);
    let e = ReplayCache::open(&path, 120, 0).unwrap_err().to_string();
    assert!(e.contains(&format!("{} bytes", MAX_FILE_LEN + 1)), "{e}");
    assert!(e.contains("move it away"), "{e}");
}

/// Today a deleted cache let a used packet in after a restart.
#[test]
fn a_deleted_or_replaced_cache_file_is_rewritten_from_memory() {
    let dir = private_dir();
    let path = dir.path().join("replay");
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    c.insert(d(1), 1000, 1000).unwrap();

    // Deleted, then checked (the listener does so every second).
    fs::remove_file(&path).unwrap();
    assert!(c.check_file().unwrap());
    assert!(!c.check_file().unwrap(), "once rewritten it is ours again");
    assert!(ReplayCache::open(&path, 120, 1000).unwrap().contains(&d(1)));
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();

    // Deleted, then a commit: the new record and the old ones are kept.
    fs::remove_file(&path).unwrap();
    c.insert(d(2), 1000, 1000).unwrap();
    let reopened = ReplayCache::open(&path, 120, 1000).unwrap();
    assert!(reopened.contains(&d(1)) && reopened.contains(&d(2)));
    let mut c = reopened;

    // Replaced by another (empty) file.
    let other = dir.path().join("other");
    fs::write(&other, format!("{HEADER}\n")).unwrap();
    fs::rename(&other, &path).unwrap();
    c.insert(d(3), 1000, 1000).unwrap();
    drop(c);
    let reopened = ReplayCache::open(&path, 120, 1000).unwrap();
    assert!([1, 2, 3].iter().all(|&n| reopened.contains(&d(n))));
}

#[test]
fn records_are_durable_at_the_commit_as_one_group() {
    let dir = private_dir();
    let path = dir.path().join("replay");
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    for n in 1..=3 {
        c.record(d(n), 1000).unwrap();
        assert!(c.contains(&d(n)), "a record is seen at once");
    }
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
    c.commit(1000).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 4);
    c.commit(1000).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 4);
}

#[test]
fn a_full_cache_refuses_new_packets() {
    let mut c = ReplayCache::in_memory(u64::MAX / 2);
    for i in 0..MAX_ENTRIES as u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        c.record(key, 1).unwrap();
    }
    let e = c.record(d(255), 1).unwrap_err().to_string();
    assert!(e.contains("cap"), "{e}");
    assert!(!c.contains(&d(255)));
}

#[test]
fn after_a_failed_write_the_next_commit_rewrites_the_file_whole() {
    // What a full disk leaves (tests/knock/faults.rs has it for real): a commit
    // failed part-way, the file ends in a torn line and is marked torn.
    let dir = private_dir();
    let path = dir.path().join("replay.cache");
    let mut c = ReplayCache::open(&path, 120, 1000).unwrap();
    c.insert(d(1), 1000, 1000).unwrap();
    c.record(d(2), 1000).unwrap();
    let torn = &b64::encode(&d(2))[..3];
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(torn.as_bytes())
        .unwrap();
    c.pending = (String::new(), 0);
    c.file.as_mut().unwrap().torn = true;

    // Appended after the torn line, this record would be lost at reopen.
    c.insert(d(3), 1001, 1001).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let c = ReplayCache::open(&path, 120, 1002).unwrap();
    for n in 1..=3 {
        assert!(c.contains(&d(n)), "entry {n} lost:\n{text}");
    }
}
