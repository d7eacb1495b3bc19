//! The engine with several doors: each door opens its own protected ports
//! for the knocker only, a port opened by two doors stays open until the
//! last grant ends, and a source outside a door's allow list never opens
//! it. Knocks go straight to the engine with a paused clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::door::parse_network;
use crate::config::{AllowList, ProtectedPort, Timing};
use crate::firewall::Change;
use crate::knock::Verdict;
use crate::server::*;

const SEC: Duration = Duration::from_secs(1);

fn door(name: &str, ports: &str, protected: &[u16], access: u32, allow: &[&str]) -> Door {
    let sequence = ports.split(',').map(|p| p.parse().unwrap()).collect();
    let allow = if allow.is_empty() {
        AllowList::everything()
    } else {
        AllowList::new(allow.iter().map(|n| parse_network(n).unwrap()).collect()).unwrap()
    };
    let timing = Timing {
        window: 10 * SEC,
        access: access * SEC,
        lockout: 5 * SEC,
    };
    let protected = protected.iter().map(|&p| ProtectedPort::tcp(p)).collect();
    Door::new(name.parse().unwrap(), sequence, timing, protected, allow).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn drain(queued: &mut tokio::sync::mpsc::Receiver<Change>) -> Vec<Change> {
    let mut applied = Vec::new();
    while let Ok(change) = queued.try_recv() {
        applied.push(change);
    }
    applied
}

fn grant(ip: IpAddr, port: u16, secs: u32) -> Change {
    Change::Grant {
        ip,
        port,
        ttl: secs * SEC,
    }
}

/// Three doors: "ssh" (1000,1001 -> tcp/22 and tcp/2222 for 30 s), "web"
/// (1000,3000 -> tcp/2222 for 10 s, sharing knock port 1000 and protected
/// port 2222), "lan" (4000 -> tcp/8080, only from 192.0.2.0/24).
fn engine() -> (Engine, tokio::sync::mpsc::Receiver<Change>, Arc<Counters>) {
    let doors = vec![
        door("ssh", "1000,1001", &[22, 2222], 30, &[]),
        door("web", "1000,3000", &[2222], 10, &[]),
        door("lan", "4000", &[8080], 30, &["192.0.2.0/24"]),
    ];
    let settings = ServerSettings {
        rules: KnockRules::default(),
        protected_port: 2222,
        max_grants: crate::grants::DEFAULT_MAX_GRANTS,
        doors,
    };
    let (changes, queued) = tokio::sync::mpsc::channel(64);
    let counters = Arc::new(Counters::new());
    (
        Engine::new(&settings, changes, counters.clone()),
        queued,
        counters,
    )
}

#[tokio::test(start_paused = true)]
async fn each_door_opens_its_own_ports_and_a_shared_port_closes_with_the_last_grant() {
    let (engine, mut queued, _) = engine();
    let me = ip("127.0.0.1");
    assert!(matches!(
        engine.handle_knock(me, 1000).await,
        Verdict::Progress { .. }
    ));
    assert!(matches!(
        engine.handle_knock(me, 1001).await,
        Verdict::Grant { .. }
    ));
    assert_eq!(drain(&mut queued), [grant(me, 22, 30), grant(me, 2222, 30)]);
    // Door "web" shares knock port 1000: its progress ran alongside.
    tokio::time::advance(2 * SEC).await;
    assert!(matches!(
        engine.handle_knock(me, 3000).await,
        Verdict::Grant { .. }
    ));
    // Its grant is its own, but the firewall keeps the later end.
    assert_eq!(drain(&mut queued), [grant(me, 2222, 28)]);
    assert_eq!(engine.open_grants(), 3);
    tokio::time::advance(10 * SEC).await;
    engine.expire_due().await;
    assert!(drain(&mut queued).is_empty(), "door ssh still holds 2222");
    assert_eq!(engine.open_grants(), 2);
    tokio::time::advance(18 * SEC).await;
    engine.expire_due().await;
    let mut revoked = drain(&mut queued);
    revoked.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        revoked,
        [
            Change::Revoke { ip: me, port: 22 },
            Change::Revoke { ip: me, port: 2222 },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_outside_a_doors_allow_list_never_opens_it_and_is_not_locked_out() {
    let (engine, mut queued, counters) = engine();
    let stranger = ip("198.51.100.7");
    for _ in 0..3 {
        assert_eq!(
            engine.handle_knock(stranger, 4000).await,
            Verdict::NotAllowed { ip: stranger }
        );
    }
    assert!(drain(&mut queued).is_empty());
    assert_eq!(counters.snapshot().lockouts, 0);
    let lan = ip("192.0.2.9");
    assert!(matches!(
        engine.handle_knock(lan, 4000).await,
        Verdict::Grant { .. }
    ));
    assert_eq!(drain(&mut queued), [grant(lan, 8080, 30)]);
    // The stranger may still use the doors open to everyone.
    engine.handle_knock(stranger, 1000).await;
    engine.handle_knock(stranger, 1001).await;
    assert_eq!(
        drain(&mut queued),
        [grant(stranger, 22, 30), grant(stranger, 2222, 30)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_wrong_knock_on_one_door_locks_the_source_out_of_all() {
    let (engine, mut queued, _) = engine();
    let me = ip("127.0.0.1");
    assert!(matches!(
        engine.handle_knock(me, 3000).await,
        Verdict::LockedOut { .. }
    ));
    assert!(matches!(
        engine.handle_knock(me, 1000).await,
        Verdict::Ignored { .. }
    ));
    assert!(matches!(
        engine.handle_knock(me, 1001).await,
        Verdict::Ignored { .. }
    ));
    assert!(drain(&mut queued).is_empty());
}

#[tokio::test(start_paused = true)]
async fn settings_from_a_config_carry_its_doors_and_bounds() {
    let doors = vec![
        door("ssh", "1000,1001", &[22, 2222], 30, &[]),
        door("lan", "4000", &[8080], 30, &["192.0.2.0/24"]),
    ];
    let globals = crate::config::Globals {
        max_grants: 7,
        ..crate::config::Globals::default()
    };
    let config = ServerConfig::new(globals, doors.clone()).unwrap();
    let settings = ServerSettings::from_config(&config);
    assert_eq!(settings.doors, doors);
    assert_eq!(settings.max_grants, 7);
    assert_eq!(settings.protected_port, 22);
    let (changes, mut queued) = tokio::sync::mpsc::channel(8);
    let engine = Engine::new(&settings, changes, Arc::new(Counters::new()));
    let lan = ip("192.0.2.1");
    assert!(matches!(
        engine.handle_knock(lan, 4000).await,
        Verdict::Grant { .. }
    ));
    assert_eq!(drain(&mut queued), [grant(lan, 8080, 30)]);
}
