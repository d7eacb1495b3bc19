use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::door::Proto;
use crate::config::globals::{Deny, LogFormat};

const DOOR: &str = "[[door]]\nname = \"ssh\"\nsequence = [1, 2]\nprotected = [\"tcp/22\"]\n";

fn config(text: &str) -> ServerConfig {
    parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

/// The refusals of `text` as (line, column, message).
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse(Path::new("t.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(LoadError::Invalid { errors, .. }) => errors
            .into_iter()
            .map(|e| (e.line, e.column, e.message))
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

/// The one refusal of `text`, checked to be at `line`:`column` and to say `needle`.
fn one_error(text: &str, line: usize, column: usize, needle: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:?}");
    let (l, c, message) = &found[0];
    assert!(message.contains(needle), "{message}");
    assert_eq!((*l, *c), (line, column), "{message}");
}

#[test]
fn the_example_in_packaging_parses_and_validates() {
    let text = include_str!("../../../packaging/portknock.toml");
    let config = config(text);
    let names: Vec<&str> = config.doors().iter().map(|d| d.name().as_str()).collect();
    assert_eq!(names, ["default", "admin", "console"]);
    let admin = config.door("admin").unwrap();
    assert_eq!(admin.protected().len(), 2);
    // Runnable as is: UDP knocks and TCP protected ports only.
    assert!(
        config
            .doors()
            .iter()
            .all(|d| d.sequence().iter().all(|k| k.proto == Proto::Udp))
    );
    assert!(
        config
            .doors()
            .iter()
            .all(|d| d.protected().iter().all(|p| p.proto == Proto::Tcp))
    );
    assert!(admin.contains("192.0.2.9".parse().unwrap()));
    assert!(!admin.contains("198.51.100.9".parse().unwrap()));
    assert_eq!(admin.timing().access, Duration::from_secs(60));
    // The seed's door of the example is exactly the seed's flags' door.
    assert_eq!(
        config.door("default").unwrap(),
        &crate::config::Door::seed_default()
    );
}

#[test]
fn a_small_file_gets_the_defaults() {
    let config = config(DOOR);
    let g = config.globals();
    assert_eq!(g, &crate::config::Globals::default());
    let door = &config.doors()[0];
    assert_eq!(door.timing(), crate::config::Timing::default());
    assert_eq!(door.allow(), &crate::config::AllowList::everything());
}

#[test]
fn globals_are_read() {
    let text = format!(
        "bind = [\"127.0.0.1\", \"::1\"]\nfirewall = \"NFTABLES\"\ndeny = \"drop\"\nkeep-established = false\n\
         max-tracked = 20000\nmax-grants = 5\ninstance = \"lab-2\"\niptables-position = \"last\"\nlog-level = \"debug\"\nlog-format = \"json\"\n\
         stats-listen = \"127.0.0.1:9920\"\nmetrics-listen = \"[::1]:9921\"\nupstream = \"127.0.0.1:22\"\n\
         flag = \"FLAG{{x}}\"\nclose-after = 0.5\nmax-connections = 10\n\
         [spa]\nport = 40000\naccess = \"/etc/a.conf\"\nmax-age = 30\nallow-no-hmac = true\n{DOOR}"
    );
    let config = config(&text);
    let g = config.globals();
    assert_eq!(g.bind.len(), 2);
    assert_eq!(g.firewall, crate::firewall::FirewallKind::Nftables);
    assert_eq!(
        (g.deny, g.log_format, g.keep_established),
        (Deny::Drop, LogFormat::Json, false)
    );
    assert_eq!(
        (g.max_tracked, g.max_grants, g.max_connections),
        (20000, 5, 10)
    );
    assert_eq!(g.instance.to_string(), "lab-2");
    assert_eq!(g.iptables_position, crate::firewall::Position::Last);
    assert_eq!(g.close_after, Duration::from_millis(500));
    let spa = g.spa.as_ref().unwrap();
    assert_eq!(
        (spa.port, spa.max_age_secs, spa.allow_no_hmac),
        (40000, 30, true)
    );
}

#[test]
fn an_unknown_key_points_at_it() {
    one_error("max-trackd = 5\n", 1, 1, "unknown field `max-trackd`");
    one_error(&format!("{DOOR}windw = 3\n"), 5, 1, "unknown field `windw`");
}

#[test]
fn a_wrong_type_points_at_the_value() {
    one_error(
        &format!("max-tracked = \"many\"\n{DOOR}"),
        1,
        15,
        "invalid type",
    );
    one_error(
        "[[door]]\nname = 5\nsequence = [1]\nprotected = [\"tcp/22\"]\n",
        2,
        8,
        "invalid type",
    );
}

#[test]
fn a_syntax_error_points_at_it() {
    let found = errors("[[door]\nname = \"x\"\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, 1, "{found:?}");
}

#[test]
fn a_missing_key_names_it() {
    let found = errors("[[door]]\nname = \"x\"\nprotected = [\"tcp/22\"]\n");
    assert!(found[0].2.contains("missing field `sequence`"), "{found:?}");
}

#[test]
fn duplicate_door_names_point_at_the_second() {
    one_error(
        &format!("{DOOR}{}", DOOR.replace("[1, 2]", "[3]")),
        6,
        8,
        "door name 'ssh' is used twice",
    );
}

#[test]
fn a_protected_port_in_two_doors_needs_one_access() {
    let second = "[[door]]\nname = \"b\"\nsequence = [3]\naccess = \"1m\"\nprotected = [\"tcp/80\", \"tcp/22\"]\n";
    one_error(
        &format!("{DOOR}{second}"),
        9,
        24,
        "protected port tcp/22 is opened by door 'b' for 60s and by door 'ssh' for 30s",
    );
    // With the same access it is fine.
    config(&format!("{DOOR}{}", second.replace("\"1m\"", "30")));
}

#[test]
fn a_knock_port_equal_to_a_protected_port_points_at_the_knock() {
    one_error(
        "[[door]]\nname = \"a\"\nsequence = [1, 22]\nprotected = [\"tcp/22\"]\n",
        3,
        16,
        "knock port 22 is also protected port tcp/22 of door 'a'",
    );
    let other = "[[door]]\nname = \"b\"\nsequence = [2, \"22:tcp\"]\nprotected = [\"tcp/80\"]\n";
    one_error(
        &format!("{DOOR}{other}"),
        7,
        16,
        "door 'b': knock port 22:tcp is also protected port tcp/22 of door 'ssh'",
    );
}

#[test]
fn bad_values_inside_a_door_point_at_each() {
    let text = "[[door]]\nname = \"9x\"\nsequence = [1, \"2:icmp\"]\nwindow = -5\nprotected = [\"tcp/70000\"]\nallow = [\"192.0.2.0/24\", \"10.0.0.1/8\", \"nope\"]\n";
    let found = errors(text);
    let at: Vec<(usize, usize)> = found.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        at,
        [(2, 8), (3, 16), (4, 10), (5, 14), (6, 26), (6, 40)],
        "{found:?}"
    );
    assert!(found[0].2.contains("invalid door name '9x'"));
    assert!(found[1].2.contains("invalid knock port '2:icmp'"));
    assert!(
        found[2]
            .2
            .contains("invalid window '-5': a duration cannot be negative"),
        "{}",
        found[2].2
    );
    assert!(found[3].2.contains("invalid protected port 'tcp/70000'"));
    assert!(found[4].2.contains("did you mean 10.0.0.0/8"));
    assert!(found[5].2.contains("invalid network 'nope'"));
}

#[test]
fn durations_out_of_bounds_point_at_the_value() {
    one_error(
        &DOOR.replace("sequence", "window = 0.0001\nsequence"),
        3,
        10,
        "invalid window 0.0001s: expected 100ms to 3600s (no knock sequence could complete in less)",
    );
    one_error(
        &DOOR.replace("sequence", "lockout = \"2d\"\nsequence"),
        3,
        11,
        "invalid lockout '2d'",
    );
    one_error(
        &DOOR.replace("sequence", "access = \"25h\"\nsequence"),
        3,
        10,
        "expected 1s to 86400s",
    );
}

#[test]
fn an_empty_sequence_points_at_it() {
    one_error(
        &DOOR.replace("[1, 2]", "[]"),
        3,
        12,
        "the sequence has 0 knocks",
    );
}

#[test]
fn an_empty_allow_or_protected_list_points_at_it() {
    one_error(&format!("{DOOR}allow = []\n"), 5, 9, "allow is empty");
    one_error(
        &DOOR.replace("[\"tcp/22\"]", "[]"),
        4,
        13,
        "no protected port",
    );
}

#[test]
fn the_spa_port_must_not_be_a_knock_port() {
    one_error(
        &format!("[spa]\nport = 2\naccess = \"/a\"\n{DOOR}"),
        2,
        8,
        "SPA port 2 is also knock port 2 of door 'ssh'",
    );
    one_error(
        "[spa]\nport = 0\naccess = \"/a\"\n",
        2,
        8,
        "invalid spa.port 0",
    );
    // SPA alone (no door) is a valid daemon.
    assert!(config("[spa]\naccess = \"/a\"\n").doors().is_empty());
}

#[test]
fn nothing_to_listen_for_is_refused() {
    one_error("deny = \"drop\"\n", 1, 1, "nothing to listen for");
}

#[test]
fn deny_says_reset_or_drop_and_takes_reject_as_an_alias_of_reset() {
    for (word, want) in [
        ("reset", Deny::Reset),
        ("RESET", Deny::Reset),
        ("reject", Deny::Reset),
        ("drop", Deny::Drop),
    ] {
        let config = config(&format!("deny = \"{word}\"\n{DOOR}"));
        assert_eq!(config.globals().deny, want, "{word}");
    }
    assert_eq!(config(DOOR).globals().deny, Deny::Reset, "the default");
    assert_eq!(Deny::Reset.to_string(), "reset");
}

#[test]
fn global_values_point_at_themselves() {
    one_error(
        &format!("deny = \"maybe\"\n{DOOR}"),
        1,
        8,
        "invalid deny 'maybe': expected one of reset, drop (reject: alias of reset)",
    );
    one_error(
        &format!("max-tracked = 0\n{DOOR}"),
        1,
        15,
        "invalid max-tracked 0: expected a whole number from 1",
    );
    one_error(
        &format!("max-grants = -1\n{DOOR}"),
        1,
        14,
        "invalid max-grants -1",
    );
    one_error(
        &format!("stats-listen = \"0.0.0.0:9920\"\n{DOOR}"),
        1,
        16,
        "expected a loopback IP:PORT",
    );
    one_error(
        &format!("bind = [\"::\", \"1.2.3\"]\n{DOOR}"),
        1,
        15,
        "invalid bind '1.2.3'",
    );
    one_error(
        &format!("bind = [\"::\", \"::\"]\n{DOOR}"),
        1,
        15,
        "bind address :: is listed twice",
    );
    one_error(
        &format!("instance = \"a b\"\n{DOOR}"),
        1,
        12,
        "invalid instance 'a b'",
    );
    one_error(
        &format!("close-after = \"1ms\"\n{DOOR}"),
        1,
        15,
        "invalid close-after 1ms",
    );
}

#[test]
fn all_problems_of_a_file_are_listed_in_order() {
    let text = format!(
        "deny = \"x\"\nlog-format = \"xml\"\n{}",
        DOOR.replace("[1, 2]", "[1, 0]")
    );
    let found = errors(&text);
    let lines: Vec<usize> = found.iter().map(|e| e.0).collect();
    assert_eq!(lines, [1, 2, 5], "{found:?}");
}

#[test]
fn a_missing_or_unreadable_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read config file {}", missing.display())),
        "{err}"
    );
    // A directory cannot be read as a file, even by root.
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("cannot read config file"), "{err}");
    let bytes = dir.path().join("bin.toml");
    std::fs::write(&bytes, [0xff, 0xfe]).unwrap();
    assert!(matches!(load(&bytes), Err(LoadError::Read { .. })));
}

#[test]
fn errors_print_as_file_line_column() {
    let err = parse(Path::new("/etc/pk.toml"), "deny = 1\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/etc/pk.toml:1:8: invalid type"), "{text}");
}
