use super::*;

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
