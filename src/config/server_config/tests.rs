use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::door::{Proto, parse_network};
use crate::config::file;
use crate::config::globals::{Deny, SpaSettings};
use crate::config::render::{MASK, Reveal};

fn door(name: &str, seq: &[u16], protected: &[u16], access: u64) -> Door {
    Door::new(
        name.parse().unwrap(),
        seq.iter().map(|&p| KnockPort::udp(p)).collect(),
        Timing {
            access: Duration::from_secs(access),
            ..Timing::default()
        },
        protected.iter().map(|&p| ProtectedPort::tcp(p)).collect(),
        AllowList::everything(),
    )
    .unwrap()
}

fn problems(result: Result<ServerConfig, Issues>) -> Vec<Problem> {
    result
        .unwrap_err()
        .0
        .into_iter()
        .map(|i| i.problem)
        .collect()
}

#[test]
fn the_seed_flags_make_one_default_door() {
    let config = ServerConfig::from_flags(SeedFlags::default(), Globals::default()).unwrap();
    assert_eq!(config.doors(), &[Door::seed_default()]);
    assert_eq!(config.protected_ports(), vec![ProtectedPort::tcp(2222)]);
    assert_eq!(config.globals(), &Globals::default());
}

#[test]
fn seed_flags_get_the_door_bounds() {
    // `--window 0.0001` was accepted by the seed though nothing could complete.
    let flags = SeedFlags {
        window: Duration::from_micros(100),
        ..SeedFlags::default()
    };
    let issues = ServerConfig::from_flags(flags, Globals::default()).unwrap_err();
    assert_eq!(issues.0[0].key, Key::Window);
    assert!(
        issues
            .to_string()
            .starts_with("door 'default': invalid window 0.0001s"),
        "{issues}"
    );
    let flags = SeedFlags {
        protected_port: 5678,
        ..SeedFlags::default()
    };
    let err = ServerConfig::from_flags(flags, Globals::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("knock port 5678 is also protected port tcp/5678"),
        "{err}"
    );
}

#[test]
fn no_sequence_needs_spa() {
    let flags = SeedFlags {
        no_sequence: true,
        ..SeedFlags::default()
    };
    let err = problems(ServerConfig::from_flags(flags.clone(), Globals::default()));
    assert_eq!(err, vec![Problem::NothingToListen]);
    let globals = Globals {
        spa: Some(SpaSettings::with_access("/a".into())),
        ..Globals::default()
    };
    assert!(
        ServerConfig::from_flags(flags, globals)
            .unwrap()
            .doors()
            .is_empty()
    );
}

#[test]
fn doors_may_share_knock_ports_but_not_names() {
    let ok = ServerConfig::new(
        Globals::default(),
        vec![door("a", &[1, 2], &[22], 30), door("b", &[1, 3], &[80], 30)],
    );
    assert!(ok.is_ok());
    let twice = vec![door("a", &[1], &[22], 30), door("a", &[2], &[80], 30)];
    let issues = ServerConfig::new(Globals::default(), twice).unwrap_err();
    assert_eq!(issues.0[0].door, Some(1));
    assert_eq!(issues.0[0].key, Key::Name);
}

#[test]
fn a_knock_port_may_not_be_another_doors_protected_port() {
    let doors = vec![door("a", &[1], &[22], 30), door("b", &[2, 22], &[80], 30)];
    let issues = ServerConfig::new(Globals::default(), doors).unwrap_err();
    assert_eq!((issues.0[0].door, issues.0[0].item), (Some(1), Some(1)));
}

#[test]
fn shared_protected_ports_need_one_access() {
    let same = vec![door("a", &[1], &[22], 30), door("b", &[2], &[22], 30)];
    assert!(ServerConfig::new(Globals::default(), same).is_ok());
    let differ = vec![door("a", &[1], &[22], 30), door("b", &[2], &[22], 60)];
    assert!(matches!(
        problems(ServerConfig::new(Globals::default(), differ))[0],
        Problem::AccessConflict { .. }
    ));
}

#[test]
fn a_port_number_is_protected_under_one_protocol_only() {
    let udp = |name: &str, knock: u16, port: u16| {
        let protected = vec![ProtectedPort {
            proto: Proto::Udp,
            port,
        }];
        let timing = Timing {
            access: Duration::from_secs(30),
            ..Timing::default()
        };
        let seq = vec![KnockPort::udp(knock)];
        Door::new(
            name.parse().unwrap(),
            seq,
            timing,
            protected,
            AllowList::everything(),
        )
        .unwrap()
    };
    let apart = vec![door("a", &[1], &[22], 30), udp("b", 2, 51820)];
    assert!(ServerConfig::new(Globals::default(), apart).is_ok());
    let shared = vec![udp("a", 1, 51820), udp("b", 2, 51820)];
    assert!(ServerConfig::new(Globals::default(), shared).is_ok());
    let clash = vec![door("ssh", &[1], &[22], 30), udp("wg", 2, 22)];
    let issues = ServerConfig::new(Globals::default(), clash).unwrap_err();
    assert_eq!(issues.0.len(), 1, "{issues:?}");
    assert_eq!(
        (issues.0[0].door, issues.0[0].key),
        (Some(1), Key::Protected)
    );
    assert_eq!(
        issues.0[0].problem.to_string(),
        "protected port udp/22 is also protected port tcp/22 of door 'ssh': a port number is protected under one protocol only"
    );
}

#[test]
fn flags_beside_a_file_override_its_globals_and_are_checked_again() {
    let config =
        ServerConfig::new(Globals::default(), vec![door("a", &[1, 62201], &[22], 30)]).unwrap();
    let overrides = GlobalOverrides {
        deny: Some(Deny::Drop),
        max_tracked: Some(9),
        ..Default::default()
    };
    let changed = config.clone().with_overrides(overrides).unwrap();
    assert_eq!(
        (changed.globals().deny, changed.globals().max_tracked),
        (Deny::Drop, 9)
    );
    assert_eq!(changed.doors(), config.doors());
    // An overriding SPA listener on a knock port is refused.
    let spa = GlobalOverrides {
        spa: Some(SpaSettings::with_access("/a".into())),
        ..Default::default()
    };
    let err = config.with_overrides(spa).unwrap_err();
    assert!(
        err.to_string()
            .contains("SPA port 62201 is also knock port 62201 of door 'a'"),
        "{err}"
    );
}

#[test]
fn globals_ranges_are_checked() {
    let globals = Globals {
        max_tracked: 0,
        max_grants: 20_000_000,
        max_connections: 0,
        stats_listen: Some("192.0.2.1:9".parse().unwrap()),
        metrics_listen: Some("[::1]:9".parse().unwrap()),
        flag: String::new(),
        ..Globals::default()
    };
    let keys: Vec<Key> = ServerConfig::new(globals, vec![Door::seed_default()])
        .unwrap_err()
        .0
        .iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(
        keys,
        [
            Key::MaxTracked,
            Key::MaxGrants,
            Key::MaxConnections,
            Key::StatsListen,
            Key::Flag
        ]
    );
    let same = Globals {
        stats_listen: Some("127.0.0.1:9".parse().unwrap()),
        metrics_listen: Some("127.0.0.1:9".parse().unwrap()),
        ..Globals::default()
    };
    assert!(ServerConfig::new(same, vec![Door::seed_default()]).is_err());
}

#[test]
fn the_check_config_rendering_masks_the_flag() {
    let globals = Globals {
        flag: "FLAG{secret}".into(),
        ..Globals::default()
    };
    let config = ServerConfig::new(globals, vec![Door::seed_default()]).unwrap();
    let shown = config.render(Reveal::Masked);
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains(&format!("flag = \"{MASK}\"")), "{shown}");
    assert!(
        shown.contains("sequence = [\"1234\", \"5678\", \"9012\"]"),
        "{shown}"
    );
    assert!(shown.contains("protected = [\"tcp/2222\"]"), "{shown}");
    let back = file::parse(Path::new("r"), &config.render(Reveal::Secrets)).unwrap();
    assert_eq!(back, config);
}

fn arb_door(index: usize) -> impl Strategy<Value = Door> {
    // Knock ports 1000..2000 and protected ports 3000..4000 never clash.
    let knock = (1000u16..2000, any::<bool>()).prop_map(|(port, tcp)| KnockPort {
        port,
        proto: if tcp { Proto::Tcp } else { Proto::Udp },
    });
    // A port number has one protocol across doors: odd ones are UDP.
    let protected = (3000u16..3004).prop_map(|port| ProtectedPort {
        proto: if port % 2 == 1 {
            Proto::Udp
        } else {
            Proto::Tcp
        },
        port,
    });
    let net = prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, len)| format!("{}/{len}", std::net::Ipv4Addr::from(a))),
        (any::<[u16; 8]>(), 0u8..=128)
            .prop_map(|(a, len)| format!("{}/{len}", std::net::Ipv6Addr::from(a))),
    ]
    .prop_map(|text| {
        parse_network(&text).unwrap_or_else(|_| text.parse::<ipnet::IpNet>().unwrap().trunc())
    });
    (
        prop::collection::vec(knock, 1..6),
        100u64..3_600_000,
        prop::collection::btree_set(protected, 1..3),
        100u64..86_400_000,
        prop::option::of(prop::collection::vec(net, 1..3)),
    )
        .prop_map(move |(sequence, window, protected, lockout, allow)| {
            Door::new(
                format!("door-{index}").parse().unwrap(),
                sequence,
                Timing {
                    window: Duration::from_millis(window),
                    access: Duration::from_secs(30),
                    lockout: Duration::from_millis(lockout),
                },
                protected.into_iter().collect(),
                allow.map_or_else(AllowList::everything, |nets| AllowList::new(nets).unwrap()),
            )
            .unwrap()
        })
}

proptest! {
    /// Whatever a valid configuration is, its rendering reads back to it.
    #[test]
    fn render_then_parse_is_the_same_config(
        doors in (0usize..4).prop_flat_map(|n| (0..n).map(arb_door).collect::<Vec<_>>()),
        spa in any::<bool>(),
        deny_drop in any::<bool>(),
        max_tracked in 1usize..1_000_000,
        flag in "[ -~]{1,20}",
    ) {
        let globals = Globals {
            spa: (spa || doors.is_empty()).then(|| SpaSettings::with_access("/etc/a b\"c.conf".into())),
            deny: if deny_drop { Deny::Drop } else { Deny::Reset },
            max_tracked,
            flag,
            bind: vec!["127.0.0.1".parse().unwrap(), "::".parse().unwrap()],
            ..Globals::default()
        };
        let config = ServerConfig::new(globals, doors).unwrap();
        let text = config.render(Reveal::Secrets);
        let back = file::parse(Path::new("r"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(back, config);
    }

    /// A file's text never makes the reader panic, whatever it holds.
    #[test]
    fn any_text_is_refused_or_accepted_without_panic(text in "[\\[\\]a-z=\"0-9,./:\n -]{0,200}") {
        let _ = file::parse(Path::new("r"), &text);
    }
}
