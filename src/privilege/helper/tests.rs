use std::net::IpAddr;
use std::time::Duration;

use super::*;

fn policy() -> Policy {
    Policy {
        tcp: vec![2222],
        udp: vec![51820],
        max_grants: 2,
    }
}

fn grant(port: u16, secs: u64) -> Change {
    Change::Grant {
        ip: "192.0.2.2".parse::<IpAddr>().unwrap(),
        port,
        ttl: Duration::from_secs(secs),
    }
}

#[test]
fn a_grant_of_a_protected_port_passes() {
    assert_eq!(policy().allows(&grant(2222, 30), 0, false), Ok(()));
    assert_eq!(policy().allows(&grant(51820, 30), 0, false), Ok(()));
}

#[test]
fn a_port_the_config_does_not_protect_is_refused() {
    let err = policy().allows(&grant(22, 30), 0, false).unwrap_err();
    assert_eq!(err, "port 22 is not protected by the configuration");
    let revoke = Change::Revoke {
        ip: "2001:db8::2".parse().unwrap(),
        port: 22,
    };
    assert!(policy().allows(&revoke, 0, false).is_err());
}

#[test]
fn a_grant_longer_than_a_day_or_of_nothing_is_refused() {
    assert!(policy().allows(&grant(2222, 86_401), 0, false).is_err());
    assert!(policy().allows(&grant(2222, 0), 0, false).is_err());
    assert_eq!(policy().allows(&grant(2222, 86_400), 0, false), Ok(()));
}

#[test]
fn new_grants_stop_at_the_bound_but_renewals_pass() {
    // 2 grants per port, 2 ports: 4.
    assert!(policy().allows(&grant(2222, 30), 4, false).is_err());
    assert_eq!(policy().allows(&grant(2222, 30), 4, true), Ok(()));
    assert_eq!(policy().allows(&grant(2222, 30), 3, false), Ok(()));
}
