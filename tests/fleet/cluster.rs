//! The three-server JetStream cluster variant (issue 15): three
//! `nats-server`s clustered in the hub namespace, buckets with three
//! replicas, three nodes given all three URLs. A knock on A opens B and
//! C; one NATS server is killed mid-test; a knock on B still opens A and
//! C (clients reconnect to the survivors, the R3 buckets keep quorum).

use std::time::Duration;

use super::lab::{FleetLab, HUB, KNOCKER, STRANGER};
use crate::util::Proc;

fn server(lab: &FleetLab, i: u16) -> Proc {
    let routes: Vec<String> = (0..3)
        .filter(|&j| j != i)
        .map(|j| format!("nats://{}:{}", HUB[0], 6221 + j))
        .collect();
    let mut cmd = lab.lan.host.command("nats-server");
    cmd.args(["-a", HUB[0], "-p", &(4221 + i).to_string()])
        .args(["-n", &format!("s{i}"), "-js", "-sd"])
        .arg(lab.dir.path().join(format!("js{i}")))
        .args(["--cluster_name", "pk"])
        .args(["--cluster", &format!("nats://{}:{}", HUB[0], 6221 + i)])
        .args(["--routes", &routes.join(",")]);
    let mut proc = Proc::spawn_logging(cmd, "info");
    proc.wait_for("Server is ready", Duration::from_secs(10));
    proc
}

#[test]
fn a_three_server_cluster_keeps_the_fleet_working_when_one_server_dies() {
    let Some(mut lab) = FleetLab::new("fleet::cluster", "flc", 120) else {
        return;
    };
    let mut servers: Vec<Option<Proc>> = (0..3).map(|i| Some(server(&lab, i))).collect();
    // The cluster has formed when one server leads its metadata.
    for s in servers.iter_mut().flatten() {
        s.wait_for("metadata leader", Duration::from_secs(20));
    }
    let urls: Vec<String> = (0..3)
        .map(|i| format!("\"nats://{}:{}\"", HUB[0], 4221 + i))
        .collect();
    for node in 0..3 {
        let config = lab.config(node, "", "replicas = 3");
        let text = std::fs::read_to_string(&config).unwrap().replace(
            &format!("\"{}\"", FleetLab::url()),
            &format!("[{}]", urls.join(", ")),
        );
        std::fs::write(&config, text).unwrap();
        lab.start_node_with(node, &config, "fleet: watching grants");
    }
    lab.knock(KNOCKER, 0);
    for node in 0..3 {
        lab.wait_served(KNOCKER, node, Duration::from_secs(5));
    }
    // Kill the first server (every node's first URL) mid-test.
    let mut first = servers[0].take().unwrap();
    first.signal_and_wait("KILL", Duration::from_secs(5));
    lab.knock(STRANGER, 1);
    // Bounded generously: NATS 2.9 re-elects its metadata leader and
    // re-creates the watchers' consumers on the survivors; a watcher's
    // re-creation was seen to time out for ~30 s (placed on the dead
    // peer), so the grant lasts 120 s: a grant that ended meanwhile is
    // rightly not applied.
    for node in [1, 2, 0] {
        lab.wait_served(STRANGER, node, Duration::from_secs(60));
    }
    drop(servers);
}
