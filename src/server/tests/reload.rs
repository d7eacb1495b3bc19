//! Reload per door in the engine: an unchanged door keeps a half-done
//! source's progress, a changed door answers only its new sequence, a new
//! door works, a removed door's grants are revoked at once, and a kept
//! door's grant stays (and still ends) though the doors were renumbered.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AllowList, ProtectedPort, Timing};
use crate::firewall::Change;
use crate::server::*;

const SEC: Duration = Duration::from_secs(1);

fn door(name: &str, ports: &str, protected: u16) -> Door {
    let sequence = ports.split(',').map(|p| p.parse().unwrap()).collect();
    let timing = Timing {
        window: 10 * SEC,
        access: 30 * SEC,
        lockout: 5 * SEC,
    };
    let protected = vec![ProtectedPort::tcp(protected)];
    Door::new(
        name.parse().unwrap(),
        sequence,
        timing,
        protected,
        AllowList::everything(),
    )
    .unwrap()
}

fn settings(doors: Vec<Door>) -> ServerSettings {
    ServerSettings {
        rules: KnockRules::default(),
        protected_port: 22,
        max_grants: 100,
        doors,
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

async fn knock(engine: &Engine, source: IpAddr, ports: &[u16]) {
    for &port in ports {
        engine.handle_knock(source, port).await;
    }
}

fn drain(queued: &mut tokio::sync::mpsc::Receiver<Change>) -> Vec<(IpAddr, u16, bool)> {
    let mut applied = Vec::new();
    while let Ok(change) = queued.try_recv() {
        applied.push(match change {
            Change::Grant { ip, port, .. } => (ip, port, true),
            Change::Revoke { ip, port } => (ip, port, false),
        });
    }
    applied
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_doors_resets_changed_ones_and_revokes_removed_ones() {
    let old = settings(vec![
        door("ssh", "1000,1001", 22),
        door("web", "3000,3001", 80),
        door("old", "5000", 8080),
    ]);
    let (changes, mut queued) = tokio::sync::mpsc::channel(64);
    let engine = Engine::new(&old, changes, Arc::new(Counters::new()));
    knock(&engine, ip(1), &[1000]).await; // halfway through ssh
    knock(&engine, ip(2), &[3000, 3001]).await; // web open
    knock(&engine, ip(3), &[5000]).await; // old open
    assert_eq!(
        drain(&mut queued),
        vec![(ip(2), 80, true), (ip(3), 8080, true)]
    );

    // "mail" first renumbers every door; "web" changes; "old" goes.
    let new = settings(vec![
        door("mail", "6000", 25),
        door("ssh", "1000,1001", 22),
        door("web", "3000,3002", 80),
    ]);
    tokio::time::advance(SEC).await;
    assert!(
        !engine.reconfigure(&new).await,
        "a door changed: not all kept"
    );
    assert_eq!(drain(&mut queued), vec![(ip(3), 8080, false)]);
    assert_eq!(engine.open_grants(), 1, "web's grant stays");

    knock(&engine, ip(1), &[1001]).await; // completes ssh
    knock(&engine, ip(4), &[3000, 3001]).await; // web's old sequence
    knock(&engine, ip(5), &[3000, 3002]).await; // web's new one
    knock(&engine, ip(6), &[6000]).await; // the new door
    assert_eq!(
        drain(&mut queued),
        vec![(ip(1), 22, true), (ip(5), 80, true), (ip(6), 25, true)]
    );

    // The kept grant, renumbered, still ends at its own time.
    let (_stop, stop) = crate::shutdown::Shutdown::new();
    let engine = Arc::new(engine);
    let (_failed_tx, failed) = tokio::sync::mpsc::unbounded_channel();
    let expiry = tokio::spawn(async move { engine.run_expiry(stop, failed).await });
    tokio::time::sleep(30 * SEC).await;
    let revoked: Vec<_> = drain(&mut queued);
    assert!(revoked.contains(&(ip(2), 80, false)), "{revoked:?}");
    expiry.abort();
}

#[tokio::test(start_paused = true)]
async fn a_reload_with_the_same_doors_keeps_everything() {
    let doors = vec![door("ssh", "1000,1001", 22), door("web", "3000,3001", 80)];
    let (changes, mut queued) = tokio::sync::mpsc::channel(64);
    let engine = Engine::new(&settings(doors.clone()), changes, Arc::new(Counters::new()));
    knock(&engine, ip(1), &[3000]).await;
    // Reordered only: still every door unchanged.
    let reordered = vec![doors[1].clone(), doors[0].clone()];
    assert!(engine.reconfigure(&settings(reordered)).await);
    knock(&engine, ip(1), &[3001]).await;
    assert_eq!(drain(&mut queued), vec![(ip(1), 80, true)]);
}
