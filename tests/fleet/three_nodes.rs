//! Issue 15's "must show" with three nodes in three namespaces and one
//! NATS server: a knock on A opens A, B and C for the knocker only and
//! closes everywhere on time; a restarted node and a late joiner get the
//! live grant with its remaining time; a forged record opens nothing; the
//! engine down and back: nodes work alone, then converge without
//! reopening what ended meanwhile.

use std::thread;
use std::time::{Duration, Instant};

use super::lab::{FleetLab, GROUP, GROUP_KEY, HUB, KNOCKER, MEMBERS, NATS_PORT, STRANGER};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// The remaining time a node logged when it applied a fleet grant.
fn remaining_ms(logs: &str) -> Vec<u64> {
    logs.lines()
        .filter(|l| l.contains("fleet: access granted"))
        .filter_map(|l| {
            let at = l.find("remaining_ms=")? + "remaining_ms=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_knock_on_one_node_opens_the_fleet_for_the_knocker_only_and_closes_on_time() {
    let access = 8;
    let Some(mut lab) = FleetLab::new("fleet::three_nodes::open", "fl3", access) else {
        return;
    };
    lab.start_nats();
    lab.start_node(A);
    lab.start_node(B);
    let knocked = Instant::now();
    lab.knock(KNOCKER, A);
    lab.wait_served(KNOCKER, A, Duration::from_secs(3));
    lab.wait_served(KNOCKER, B, Duration::from_secs(3));
    assert!(!lab.served(STRANGER, B), "the stranger is served by B");
    assert!(!lab.served(STRANGER, A), "the stranger is served by A");
    // A late joiner gets the live grant, with the time that remains.
    lab.start_node(C);
    lab.wait_served(KNOCKER, C, Duration::from_secs(3));
    let left = remaining_ms(&lab.node(C).logs());
    // At most what was left when C started, plus a second of slack.
    let elapsed = knocked.elapsed().as_millis() as u64;
    let bound = (access * 1000 + 1000).saturating_sub(elapsed);
    assert!(
        left.len() == 1 && left[0] <= bound && left[0] > 0,
        "C applied {left:?} (bound {bound})\n{}",
        lab.node(C).logs()
    );
    // A node restarted mid-grant comes back with it.
    // (Stopped, B removes its rules: nothing guards its port meanwhile.)
    let before_stop = knocked.elapsed().as_millis() as u64;
    lab.stop_node(B);
    lab.start_node(B);
    lab.wait_served(KNOCKER, B, Duration::from_secs(3));
    assert!(
        !lab.served(STRANGER, B),
        "the stranger is served by B after its restart"
    );
    let left = remaining_ms(&lab.node(B).logs());
    // The time left, not a fresh access: at most what was left at the stop.
    let bound = (access * 1000 + 500).saturating_sub(before_stop);
    assert!(
        left.len() == 1 && left[0] <= bound,
        "B applied {left:?} (bound {bound})"
    );
    // Closes everywhere on time (each node's kernel timeout).
    let end = knocked + Duration::from_secs(access);
    for node in [A, B, C] {
        let limit = end.saturating_duration_since(Instant::now()) + Duration::from_secs(4);
        lab.wait_closed(KNOCKER, node, limit);
    }
    assert!(
        Instant::now() >= end - Duration::from_millis(500),
        "closed early"
    );
    // A's own record was not applied twice on A.
    assert_eq!(remaining_ms(&lab.node(A).logs()), Vec::<u64>::new());
}

/// Writes `value` under `key` in the lab group's grants bucket, as an
/// attacker with NATS write access would.
fn write_raw(lab: &FleetLab, key: &str, value: Vec<u8>) {
    let key = key.to_string();
    lab.lan.host.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let url = format!("nats://{}:{NATS_PORT}", HUB[0]);
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let kv = js
                .get_key_value(format!("portknock-grants-{GROUP}"))
                .await
                .unwrap();
            kv.put(key, value.into()).await.unwrap();
        });
    });
}

#[test]
fn a_forged_record_opens_nothing_and_a_revocation_or_delete_closes() {
    use portknock::fleet::{GrantRecord, GroupKey, RecordKind, SignedRecord, key_of, unix_ms};
    let Some(mut lab) = FleetLab::new("fleet::three_nodes::forged", "flf", 20) else {
        return;
    };
    lab.start_nats();
    lab.start_node(A);
    let ip = MEMBERS[STRANGER][0].parse().unwrap();
    let record = GrantRecord {
        kind: RecordKind::Grant,
        ip,
        door: "ssh".into(),
        ports: vec![super::lab::PORT],
        expires_at: unix_ms() + 20_000,
        origin: "node9".into(),
        id: "node9.1.0".into(),
    };
    let wrong_key = GroupKey::new(b"not-the-group-key-at-all".to_vec());
    let forged = serde_json::to_vec(&wrong_key.sign(GROUP, record.clone())).unwrap();
    let unsigned = serde_json::to_vec(&SignedRecord {
        record: record.clone(),
        hmac: None,
    })
    .unwrap();
    // The right key, but another group's record (copied across buckets).
    let right_key = GroupKey::new(GROUP_KEY.as_bytes().to_vec());
    let other_group = serde_json::to_vec(&right_key.sign("other", record.clone())).unwrap();
    for value in [forged, unsigned, other_group] {
        write_raw(&lab, &key_of("ssh", ip), value);
    }
    let start = Instant::now();
    while lab.node(A).count("record ignored") < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            lab.node(A).logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!lab.served(STRANGER, A), "a forged record opened A");
    assert!(!lab.node(A).printed("fleet: access granted"));
    // The same record signed with the group key does open (the control).
    let good = serde_json::to_vec(&right_key.sign(GROUP, record.clone())).unwrap();
    write_raw(&lab, &key_of("ssh", ip), good.clone());
    lab.wait_served(STRANGER, A, Duration::from_secs(3));
    // A signed revocation closes it early, everywhere.
    let revoke = GrantRecord {
        kind: RecordKind::Revoke,
        expires_at: unix_ms(),
        id: "node9.1.1".into(),
        ..record
    };
    let revoke = serde_json::to_vec(&right_key.sign(GROUP, revoke)).unwrap();
    write_raw(&lab, &key_of("ssh", ip), revoke);
    lab.wait_closed(STRANGER, A, Duration::from_secs(3));
    // So does an operator's delete of the key (it can close, never open).
    write_raw(&lab, &key_of("ssh", ip), good);
    lab.wait_served(STRANGER, A, Duration::from_secs(3));
    delete_raw(&lab, &key_of("ssh", ip));
    lab.wait_closed(STRANGER, A, Duration::from_secs(3));
}

/// Deletes `key` from the lab group's grants bucket (`nats kv del`).
fn delete_raw(lab: &FleetLab, key: &str) {
    let key = key.to_string();
    lab.lan.host.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let url = format!("nats://{}:{NATS_PORT}", HUB[0]);
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let kv = js
                .get_key_value(format!("portknock-grants-{GROUP}"))
                .await
                .unwrap();
            kv.delete(key).await.unwrap();
        });
    });
}

#[test]
fn engine_down_nodes_work_alone_then_converge_without_reopening_what_ended() {
    let access = 8;
    let Some(mut lab) = FleetLab::new("fleet::three_nodes::down", "fld", access) else {
        return;
    };
    lab.start_nats();
    lab.start_node(A);
    lab.start_node(B);
    lab.kill_nats();
    lab.node(A)
        .wait_for("disconnected from NATS", Duration::from_secs(5));
    // Alone: A grants locally (grant-locally, the default); B knows nothing.
    lab.knock(STRANGER, A);
    lab.wait_served(STRANGER, A, Duration::from_secs(3));
    assert!(!lab.served(STRANGER, B));
    // The stranger's grant ends while the engine is down ...
    thread::sleep(Duration::from_secs(access + 1));
    assert!(!lab.served(STRANGER, A));
    // ... the knocker's is live when it comes back.
    lab.knock(KNOCKER, A);
    lab.wait_served(KNOCKER, A, Duration::from_secs(3));
    lab.start_nats();
    lab.wait_served(KNOCKER, B, Duration::from_secs(access - 2));
    assert!(!lab.served(STRANGER, B), "an ended grant was reopened on B");
    let b_logs = lab.node(B).logs();
    let stranger = format!("ip={}", MEMBERS[STRANGER][0]);
    assert!(
        !b_logs
            .lines()
            .any(|l| l.contains("fleet: access granted") && l.contains(&stranger)),
        "B applied the ended grant\n{b_logs}"
    );
}
