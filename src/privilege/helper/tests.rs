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

mod served {
    //! A helper over a real socketpair with a recording backend: requests
    //! sent by hand, as a compromised packet process would.

    use std::net::IpAddr;
    use std::time::Duration;

    use crate::firewall::recording::{Call, CallLog, RecordingFirewall};
    use crate::firewall::{Change, FirewallKind};
    use crate::privilege::helper::{End, Helper};
    use crate::privilege::link::{Link, pair};
    use crate::privilege::wire::{Outcome, Reply, Request};

    fn ask(link: &Link, bytes: &[u8]) -> Reply {
        link.send(bytes).unwrap();
        Reply::decode(&link.recv().unwrap().unwrap()).unwrap()
    }

    fn grant(port: u16) -> Change {
        Change::Grant {
            ip: "192.0.2.2".parse::<IpAddr>().unwrap(),
            port,
            ttl: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_helper_refuses_what_the_config_does_not_protect_and_bad_messages_and_goes_on() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (ours, theirs) = pair().unwrap();
        let calls = CallLog::default();
        let helper = Helper::new(
            theirs,
            Box::new(RecordingFirewall::new(calls.clone())),
            FirewallKind::Nftables,
            super::policy(),
            || Ok((vec![2222], vec![51820])),
            runtime.handle().clone(),
        );
        let served = std::thread::spawn(move || helper.serve());
        assert_eq!(
            ask(&ours, &Request::Hello.encode()),
            Reply::Backend(FirewallKind::Nftables)
        );
        // Nothing before setup.
        assert!(matches!(
            ask(&ours, &Request::Apply(vec![grant(2222)]).encode()),
            Reply::Failed(_)
        ));
        assert_eq!(ask(&ours, &Request::Setup.encode()), Reply::Ready);
        assert_eq!(
            ask(
                &ours,
                &Request::Apply(vec![grant(22), grant(2222)]).encode()
            ),
            Reply::Results(vec![Outcome::Refused, Outcome::Applied])
        );
        // Malformed, then oversized: refused, and the helper goes on.
        assert!(matches!(ask(&ours, &[1, 0x03, 0, 5]), Reply::Failed(_)));
        let huge = vec![1u8; crate::privilege::wire::MAX_DATAGRAM + 1];
        assert!(matches!(ask(&ours, &huge), Reply::Failed(_)));
        // A reload to ports the config does not name: refused.
        assert!(matches!(
            ask(&ours, &Request::Reconfigure(vec![], vec![]).encode()),
            Reply::Failed(_)
        ));
        assert_eq!(
            ask(&ours, &Request::Apply(vec![grant(51820)]).encode()),
            Reply::Results(vec![Outcome::Applied])
        );
        // The packet process goes away without a goodbye: teardown.
        drop(ours);
        assert!(matches!(served.join().unwrap(), End::Gone));
        let calls = calls.lock().unwrap().clone();
        let ip = "192.0.2.2".parse().unwrap();
        assert_eq!(
            calls,
            vec![
                Call::Setup,
                Call::Grant(ip, 2222, Duration::from_secs(30)),
                Call::Grant(ip, 51820, Duration::from_secs(30)),
                Call::Teardown,
            ]
        );
    }
}
