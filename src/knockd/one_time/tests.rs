use super::*;
use crate::config::KnockPort;

fn udp(ports: &[u16]) -> Vec<KnockPort> {
    ports.iter().map(|&p| KnockPort::udp(p)).collect()
}

#[test]
fn each_line_is_used_once_in_order_and_marked_as_knockd_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seqs");
    std::fs::write(&path, "# mine\n 1:udp,2:udp\n\n 3:udp,4:udp\n5:udp,6:udp\n").unwrap();
    assert_eq!(first_unused(&path).unwrap(), Some(udp(&[1, 2])));
    assert_eq!(consume(&path, &udp(&[1, 2])).unwrap(), Some(udp(&[3, 4])));
    assert_eq!(consume(&path, &udp(&[3, 4])).unwrap(), Some(udp(&[5, 6])));
    // No leading space: the first digit is overwritten, as in knockd.
    assert_eq!(consume(&path, &udp(&[5, 6])).unwrap(), None);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "# mine\n#1:udp,2:udp\n\n#3:udp,4:udp\n#:udp,6:udp\n");
    // A fresh reader (a restart) sees the file exhausted.
    assert_eq!(first_unused(&path).unwrap(), None);
}

#[test]
fn consuming_a_line_that_is_not_the_first_unused_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seqs");
    std::fs::write(&path, " 1:udp\n 2:udp\n").unwrap();
    assert!(matches!(
        consume(&path, &udp(&[2])),
        Err(OneTimeError::Changed { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), " 1:udp\n 2:udp\n");
}

#[test]
fn a_bad_line_is_refused_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seqs");
    std::fs::write(&path, " 1:udp\n 2:sctp\n").unwrap();
    let err = first_unused(&path).unwrap_err().to_string();
    assert!(err.contains("seqs:2: unknown protocol 'sctp'"), "{err}");
    assert!(first_unused(&dir.path().join("missing")).is_err());
}
