use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn key() -> DoorKey {
    DoorKey::from_bytes(&[7u8; 32]).unwrap()
}

fn rotation() -> Rotation {
    Rotation::new(Duration::from_secs(30), 4, "20000-60000", MIN_ENTROPY_BITS).unwrap()
}

#[test]
fn periods_follow_the_clock_with_boundaries_exact() {
    let r = rotation();
    assert_eq!(r.period_at(Duration::from_secs(0)), 0);
    assert_eq!(r.period_at(Duration::from_millis(29_999)), 0);
    assert_eq!(r.period_at(Duration::from_secs(30)), 1);
    assert_eq!(r.start_of(5), Duration::from_secs(150));
}

#[test]
fn a_sequence_is_a_function_of_key_door_and_period() {
    let r = rotation();
    let a = r.sequence(&key(), "web", 100);
    assert_eq!(a, r.sequence(&key(), "web", 100), "deterministic");
    assert_ne!(a, r.sequence(&key(), "web", 101));
    assert_ne!(a, r.sequence(&key(), "ssh", 100));
    let other = DoorKey::from_bytes(&[8u8; 32]).unwrap();
    assert_ne!(a, r.sequence(&other, "web", 100));
    // A golden value, computed independently (Python's hmac module): the
    // derivation is a protocol between client and server builds.
    assert_eq!(r.sequence(&key(), "web", 0), [55068, 22584, 53389, 41890]);
}

#[test]
fn bad_rotations_are_refused_with_the_figure() {
    let err = Rotation::new(Duration::ZERO, 4, "20000-60000", MIN_ENTROPY_BITS).unwrap_err();
    assert!(err.to_string().contains("at least 1s"), "{err}");
    let err =
        Rotation::new(Duration::from_secs(30), 3, "20000-21000", MIN_ENTROPY_BITS).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("29.9 bits"), "{text}");
    assert!(text.contains("56"), "{text}");
    for ports in ["60000-20000", "0-100", "x-y", "20000"] {
        assert!(
            Rotation::new(Duration::from_secs(30), 4, ports, 1.0).is_err(),
            "{ports}"
        );
    }
    assert!(Rotation::new(Duration::from_secs(30), 0, "20000-60000", 1.0).is_err());
}

proptest! {
    #[test]
    fn derived_ports_are_in_range_and_apart(c in any::<u64>(), lo in 1u16..30000, width in 2000u16..30000, len in 1usize..8) {
        let hi = lo.saturating_add(width);
        let r = Rotation::new(Duration::from_secs(30), len, &format!("{lo}-{hi}"), 1.0).unwrap();
        let seq = r.sequence(&key(), "door", c);
        prop_assert_eq!(seq.len(), len);
        for (i, &p) in seq.iter().enumerate() {
            prop_assert!(p >= lo && p <= hi);
            for &q in &seq[..i] {
                prop_assert!(p.abs_diff(q) >= MIN_GAP);
            }
        }
    }

    #[test]
    fn distinct_periods_give_distinct_sequences(c in 0u64..u64::MAX) {
        let r = rotation();
        prop_assert_ne!(r.sequence(&key(), "door", c), r.sequence(&key(), "door", c + 1));
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn key_files_missing_short_readable_or_not_hex_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = DoorKey::load(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("cannot read key file"), "{err}");
    let short = write(dir.path(), "short", "00112233\n", 0o600);
    let err = DoorKey::load(&short).unwrap_err().to_string();
    assert!(
        err.contains("4-byte key") && err.contains("at least 16"),
        "{err}"
    );
    let hex = "00".repeat(32);
    for mode in [0o644, 0o640, 0o604] {
        let path = write(dir.path(), &format!("m{mode:o}"), &hex, mode);
        let err = DoorKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{mode:04o}")) && err.contains("may read"),
            "{err}"
        );
    }
    let junk = write(dir.path(), "junk", "not a key at all!", 0o600);
    assert!(
        DoorKey::load(&junk)
            .unwrap_err()
            .to_string()
            .contains("hex")
    );
    let good = write(dir.path(), "good", &format!("{hex}\n"), 0o600);
    assert_eq!(DoorKey::load(&good).unwrap().bytes(), &[0u8; 32]);
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("door.key");
    write_new_key(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(DoorKey::load(&path).unwrap().bytes().len(), KEY_LEN);
    assert!(write_new_key(&path).is_err(), "exists");
}

#[test]
fn the_used_memory_survives_a_restart_and_forgets_dead_periods() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("used");
    let mut used = UsedSequences::load(&path).unwrap();
    used.mark("web", 10, 10).unwrap();
    used.mark("ssh", 11, 10).unwrap();
    let again = UsedSequences::load(&path).unwrap();
    assert!(again.is_used("web", 10) && again.is_used("ssh", 11));
    assert!(!again.is_used("web", 11));
    let mut later = again;
    later.mark("web", 20, 20).unwrap();
    assert!(!later.is_used("web", 10), "period 10 is dead at 20");
    let reloaded = UsedSequences::load(&path).unwrap();
    assert!(reloaded.is_used("web", 20) && !reloaded.is_used("ssh", 11));
    std::fs::write(&path, "web x\n").unwrap();
    assert!(UsedSequences::load(&path).is_err());
}
