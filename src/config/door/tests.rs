use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::config::issue::{Issue, Key, Problem};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn knocks(ports: &[u16]) -> Vec<KnockPort> {
    ports.iter().map(|&p| KnockPort::udp(p)).collect()
}

fn door(
    sequence: Vec<KnockPort>,
    timing: Timing,
    protected: Vec<ProtectedPort>,
) -> Result<Door, Vec<Issue>> {
    Door::new(
        "ssh".parse().unwrap(),
        sequence,
        timing,
        protected,
        AllowList::everything(),
    )
}

#[test]
fn knock_ports_default_to_udp_and_take_a_protocol() {
    assert_eq!("1234".parse::<KnockPort>(), Ok(KnockPort::udp(1234)));
    assert_eq!("1234:udp".parse::<KnockPort>(), Ok(KnockPort::udp(1234)));
    let tcp = KnockPort {
        port: 5678,
        proto: Proto::Tcp,
    };
    assert_eq!("5678:tcp".parse::<KnockPort>(), Ok(tcp));
    assert_eq!("5678:TCP".parse::<KnockPort>(), Ok(tcp));
    assert_eq!(tcp.to_string(), "5678:tcp");
    assert_eq!(KnockPort::udp(1).to_string(), "1");
    for bad in [
        "0", "65536", "-1", "", "12:sctp", "12:", ":tcp", "tcp/12", "1.5",
    ] {
        let err = bad.parse::<KnockPort>().unwrap_err();
        assert_eq!(err, Problem::KnockPort(bad.to_string()));
        assert!(err.to_string().contains("PORT:tcp"), "{err}");
    }
}

#[test]
fn protected_ports_take_proto_slash_port_and_bare_means_tcp() {
    assert_eq!(
        "tcp/22".parse::<ProtectedPort>(),
        Ok(ProtectedPort::tcp(22))
    );
    assert_eq!("22".parse::<ProtectedPort>(), Ok(ProtectedPort::tcp(22)));
    let wg = ProtectedPort {
        proto: Proto::Udp,
        port: 51820,
    };
    assert_eq!("udp/51820".parse::<ProtectedPort>(), Ok(wg));
    assert_eq!(wg.to_string(), "udp/51820");
    for bad in ["tcp/0", "tcp/", "icmp/1", "22/tcp", "tcp:22", "x"] {
        assert_eq!(
            bad.parse::<ProtectedPort>(),
            Err(Problem::ProtectedPort(bad.to_string()))
        );
    }
}

#[test]
fn door_names_are_short_identifiers() {
    for good in ["a", "ssh", "web-1", "Wire_Guard", &"x".repeat(MAX_NAME_LEN)] {
        assert_eq!(good.parse::<DoorName>().unwrap().as_str(), good);
    }
    for bad in [
        "",
        "1ssh",
        "-a",
        "my door",
        "tür",
        "a.b",
        &"x".repeat(MAX_NAME_LEN + 1),
    ] {
        let err = bad.parse::<DoorName>().unwrap_err();
        assert_eq!(err, Problem::DoorName(bad.to_string()));
    }
}

#[test]
fn networks_parse_cidrs_and_addresses_and_refuse_host_bits() {
    assert_eq!(
        parse_network("192.0.2.0/24").unwrap().to_string(),
        "192.0.2.0/24"
    );
    assert_eq!(
        parse_network("2001:db8::/32").unwrap().to_string(),
        "2001:db8::/32"
    );
    assert_eq!(
        parse_network("192.0.2.7").unwrap().to_string(),
        "192.0.2.7/32"
    );
    assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
    for bad in [
        "192.0.2.0/33",
        "192.0.2/24",
        "2001:db8::/129",
        "host",
        "",
        "192.0.2.0/-1",
    ] {
        assert_eq!(
            parse_network(bad),
            Err(Problem::Network(bad.to_string())),
            "{bad}"
        );
    }
    let err = parse_network("192.0.2.7/24").unwrap_err();
    assert!(
        err.to_string().contains("did you mean 192.0.2.0/24"),
        "{err}"
    );
}

#[test]
fn allow_lists_contain_their_networks_only() {
    let nets = vec![
        parse_network("192.0.2.0/24").unwrap(),
        parse_network("2001:db8::/32").unwrap(),
    ];
    let allow = AllowList::new(nets).unwrap();
    assert!(allow.contains(ip("192.0.2.1")));
    assert!(allow.contains(ip("192.0.2.255")));
    assert!(!allow.contains(ip("192.0.3.0")));
    assert!(!allow.contains(ip("198.51.100.1")));
    assert!(allow.contains(ip("2001:db8::7")));
    assert!(!allow.contains(ip("2001:db9::7")));
    // A dual-stack socket reports IPv4 sources as mapped IPv6 addresses.
    assert!(allow.contains(ip("::ffff:192.0.2.9")));
    assert!(!allow.contains(ip("::ffff:198.51.100.9")));
    let all = AllowList::everything();
    for addr in [
        "0.0.0.0",
        "203.0.113.5",
        "::",
        "2001:db8::1",
        "::ffff:1.2.3.4",
    ] {
        assert!(all.contains(ip(addr)), "{addr}");
    }
    assert_eq!(AllowList::new(Vec::new()), Err(Problem::EmptyAllow));
}

#[test]
fn the_seed_door_has_todays_defaults() {
    let door = Door::seed_default();
    assert_eq!(door.name().as_str(), "default");
    assert_eq!(door.sequence(), knocks(&[1234, 5678, 9012]).as_slice());
    assert_eq!(door.protected(), &[ProtectedPort::tcp(2222)]);
    let timing = door.timing();
    assert_eq!(timing.window, Duration::from_secs(10));
    assert_eq!(timing.access, Duration::from_secs(30));
    assert_eq!(timing.lockout, Duration::from_secs(5));
    assert!(door.contains(ip("203.0.113.9")));
    let rules = door.knock_rules(7);
    assert_eq!(rules.sequence.ports(), &[1234, 5678, 9012]);
    assert_eq!(
        (rules.access, rules.max_tracked),
        (Duration::from_secs(30), 7)
    );
}

#[test]
fn a_door_refuses_an_empty_or_too_long_sequence() {
    let issues = door(Vec::new(), Timing::default(), vec![ProtectedPort::tcp(22)]).unwrap_err();
    assert_eq!(
        issues,
        vec![Issue::at(Key::Sequence, None, Problem::SequenceLength(0))]
    );
    let long = knocks(&[1000; crate::config::MAX_SEQUENCE_LEN + 1]);
    let issues = door(long, Timing::default(), vec![ProtectedPort::tcp(22)]).unwrap_err();
    assert!(
        issues[0]
            .to_string()
            .contains("has 65 knocks: expected 1 to 64"),
        "{}",
        issues[0]
    );
}

#[test]
fn a_door_needs_distinct_protected_ports() {
    let issues = door(knocks(&[1]), Timing::default(), Vec::new()).unwrap_err();
    assert_eq!(issues[0].problem, Problem::NoProtectedPort);
    let twice = vec![
        ProtectedPort::tcp(22),
        ProtectedPort::tcp(80),
        ProtectedPort::tcp(22),
    ];
    let issues = door(knocks(&[1]), Timing::default(), twice).unwrap_err();
    assert_eq!(
        issues,
        vec![Issue::at(
            Key::Protected,
            Some(2),
            Problem::DuplicateProtected(ProtectedPort::tcp(22))
        )]
    );
    // A grant is (address, port number): tcp/53 beside udp/53 is refused.
    let udp53: ProtectedPort = "udp/53".parse().unwrap();
    let dns = vec![ProtectedPort::tcp(53), udp53];
    let issues = door(knocks(&[1]), Timing::default(), dns).unwrap_err();
    let conflict = Problem::ProtocolConflict {
        port: udp53,
        other: ProtectedPort::tcp(53),
        door: "ssh".parse().unwrap(),
    };
    assert_eq!(issues, vec![Issue::at(Key::Protected, Some(1), conflict)]);
    let wg = vec![ProtectedPort::tcp(22), "udp/51820".parse().unwrap()];
    assert!(door(knocks(&[1]), Timing::default(), wg).is_ok());
}

#[test]
fn a_knock_port_may_not_be_a_protected_port_of_any_protocol() {
    let seq = vec![KnockPort::udp(1), "22:tcp".parse().unwrap()];
    let issues = door(seq, Timing::default(), vec!["udp/22".parse().unwrap()]).unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!((issues[0].key, issues[0].item), (Key::Sequence, Some(1)));
    let text = issues[0].to_string();
    assert!(
        text.contains("knock port 22:tcp is also protected port udp/22 of door 'ssh'"),
        "{text}"
    );
}

#[test]
fn durations_have_bounds_with_reasons() {
    let ok = |timing| door(knocks(&[1]), timing, vec![ProtectedPort::tcp(22)]);
    let base = Timing::default();
    let edges = [
        Timing {
            window: WINDOW_BOUNDS.min,
            ..base
        },
        Timing {
            window: WINDOW_BOUNDS.max,
            ..base
        },
        Timing {
            access: ACCESS_BOUNDS.min,
            ..base
        },
        Timing {
            access: ACCESS_BOUNDS.max,
            ..base
        },
        Timing {
            lockout: LOCKOUT_BOUNDS.min,
            ..base
        },
        Timing {
            lockout: LOCKOUT_BOUNDS.max,
            ..base
        },
    ];
    for timing in edges {
        assert!(ok(timing).is_ok(), "{timing:?}");
    }
    let tiny = Timing {
        window: Duration::from_micros(100),
        ..base
    };
    let issues = ok(tiny).unwrap_err();
    assert_eq!(issues[0].key, Key::Window);
    let text = issues[0].to_string();
    assert!(
        text.contains(
            "invalid window 0.0001s: expected 100ms to 3600s (no knock sequence could complete"
        ),
        "{text}"
    );
    let all_bad = Timing {
        window: Duration::from_secs(3601),
        access: Duration::from_millis(999),
        lockout: Duration::ZERO,
    };
    let keys: Vec<Key> = ok(all_bad).unwrap_err().iter().map(|i| i.key).collect();
    assert_eq!(keys, vec![Key::Window, Key::Access, Key::Lockout]);
    let long = ok(Timing {
        access: Duration::from_secs(86_401),
        ..base
    })
    .unwrap_err();
    assert!(
        long[0].to_string().ends_with("expected 1s to 86400s"),
        "{}",
        long[0]
    );
}
