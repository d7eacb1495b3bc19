use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::{KnockPort, Proto};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/knockd")
        .join(name)
}

fn refused(text: &str) -> ConfError {
    parse(Path::new("/etc/k.conf"), text).expect_err("refused")
}

fn tcp(port: u16) -> KnockPort {
    KnockPort {
        port,
        proto: Proto::Tcp,
    }
}

#[test]
fn debian_default_file_parses_as_knockd_reads_it() {
    let file = load(&data("debian-knockd.conf")).unwrap();
    assert!(file.options.use_syslog);
    let names: Vec<&str> = file.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openSSH", "closeSSH", "openHTTPS"]);
    let open = &file.doors[0];
    assert_eq!(open.knocks(), [tcp(7000), tcp(8000), tcp(9000)]);
    assert_eq!(open.seq_timeout, Duration::from_secs(5));
    assert_eq!(open.cmd_timeout, Duration::from_secs(10));
    assert_eq!(open.tcp_flags.describe(), "syn");
    assert_eq!(
        open.start.as_ref().unwrap().value,
        "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"
    );
    assert_eq!(open.start.as_ref().unwrap().line, 7);
    assert_eq!(file.doors[2].knocks().len(), 4);
}

#[test]
fn man_page_examples_parse() {
    for name in [
        "man-example1.conf",
        "man-example2.conf",
        "man-example3.conf",
        "man-example4.conf",
    ] {
        let file = load(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            file.doors.len(),
            if name.ends_with("1.conf") { 2 } else { 1 }
        );
    }
    let two = load(&data("man-example2.conf")).unwrap();
    let seq = two.doors[0].knocks();
    assert_eq!(seq[0], KnockPort::udp(2222));
    assert_eq!(seq[1], tcp(3333));
    assert_eq!(two.doors[0].cmd_timeout, Duration::from_secs(5));
    let four = load(&data("man-example4.conf")).unwrap();
    let door = &four.doors[0];
    assert_eq!(door.knocks(), [tcp(1000), tcp(2000), tcp(3000)]);
    assert!(door.commands(true).0.unwrap().value.contains("ip6tables"));
    assert!(
        door.commands(false)
            .0
            .unwrap()
            .value
            .starts_with("/usr/sbin/iptables")
    );
}

#[test]
fn keys_are_case_insensitive_and_values_keep_equals_signs() {
    let file = parse(
        Path::new("k"),
        "[options]\nusesyslog\nINTERFACE = eth1\n[d]\nSeQuEnCe = 1:UDP, 2 :udp\nstart_command = /bin/echo a=b\ntimeout = 3\nCOMMAND_6 =\n",
    )
    .unwrap();
    let door = &file.doors[0];
    assert_eq!(door.knocks(), [KnockPort::udp(1), KnockPort::udp(2)]);
    assert_eq!(door.start.as_ref().unwrap().value, "/bin/echo a=b");
    assert_eq!(door.seq_timeout, Duration::from_secs(3));
    assert_eq!(door.start6.as_ref().unwrap().value, "");
    assert_eq!(file.options.interface.as_ref().unwrap().value, "eth1");
}

#[test]
fn hash_inside_a_line_is_part_of_the_value() {
    let file = parse(
        Path::new("k"),
        "# c\n[d]\n  # indented comment\nsequence = 1\ncommand = /bin/echo #x\n",
    )
    .unwrap();
    assert_eq!(file.doors[0].start.as_ref().unwrap().value, "/bin/echo #x");
}

#[test]
fn every_malformed_line_is_refused_with_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[d]\nsequence = 1\nbogus = 2\n",
            3,
            "unknown directive 'BOGUS'",
        ),
        (
            "[options]\nlogfile = /x\nsequence = 1\n",
            3,
            "unknown option 'SEQUENCE'",
        ),
        ("[d]\nsequence = 1,70000\n", 2, "bad port '70000'"),
        ("[d]\nsequence = 1,abc\n", 2, "bad port 'abc'"),
        ("[d]\nsequence = 0\n", 2, "bad port '0'"),
        ("[d]\nsequence = 1:icmp\n", 2, "unknown protocol 'icmp'"),
        (
            "[d]\nsequence = 1\ntcpflags = syn, ack\n",
            3,
            "unrecognized TCP flag ' ack'",
        ),
        (
            "[d]\nsequence = 1\ntcpflags = syn,bogus\n",
            3,
            "unrecognized TCP flag 'bogus'",
        ),
        (
            "[d]\nseq_timeout = 5\n\n[e]\nsequence = 1\n",
            1,
            "door 'd' has an empty knock sequence",
        ),
        (
            "[d]\nsequence = 1\none_time_sequences = /nonexistent/seqs\n",
            3,
            "/nonexistent/seqs",
        ),
        (
            "[options]\nUseSyslog = yes\n",
            2,
            "UseSyslog takes no value",
        ),
        ("sequence = 1\n[d]\n", 1, "before any section"),
        ("[d]\nsequence = 1\njust words\n", 3, "syntax error"),
        (
            "[d]\nsequence = 1\nseq_timeout = ten\n",
            3,
            "SEQ_TIMEOUT = 'ten'",
        ),
        (
            "[d]\nsequence = 1\ncmd_timeout = -1\n",
            3,
            "CMD_TIMEOUT = '-1'",
        ),
        (
            "[d]\nsequence = 1\nallowduplicates = maybe\n",
            3,
            "expected yes or no",
        ),
    ];
    for (text, line, needle) in cases {
        let err = refused(text);
        assert_eq!(err.line, *line, "{text:?}: {err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("/etc/k.conf:{line}: ")),
            "{shown}"
        );
        assert!(shown.contains(needle), "{text:?}: {shown}");
    }
}

#[test]
fn sequences_longer_than_knockd_allows_are_refused() {
    let ports: Vec<String> = (1..=33).map(|p| p.to_string()).collect();
    let err = refused(&format!("[d]\nsequence = {}\n", ports.join(",")));
    assert!(err.message.contains("at most 32"), "{err}");
}

#[test]
fn tcp_flags_accumulate_and_match_like_knockd() {
    let file = parse(
        Path::new("k"),
        "[d]\nsequence = 1\ntcpflags = syn\ntcpflags = !ACK,urg\n",
    )
    .unwrap();
    let flags = file.doors[0].tcp_flags;
    assert_eq!(flags.describe(), "syn,!ack,urg");
    assert!(flags.matches(0x02 | 0x20));
    assert!(!flags.matches(0x02 | 0x20 | 0x10));
    assert!(!flags.heard_as_syn());
    assert_eq!(flags.line, 4);
}

#[test]
fn later_sequence_lines_replace_earlier_ones_and_duplicate_names_are_allowed() {
    let file = parse(
        Path::new("k"),
        "[d]\nsequence = 1\nsequence = 2:udp\n[d]\nsequence = 3\n",
    )
    .unwrap();
    assert_eq!(file.doors[0].knocks(), [KnockPort::udp(2)]);
    assert_eq!(file.doors[0].sequence_line(), 3);
    assert_eq!(file.doors.len(), 2);
}

#[test]
fn an_unreadable_file_names_itself() {
    let err = load(Path::new("/nonexistent/knockd.conf")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/knockd.conf:0: cannot read"),
        "{err}"
    );
}
