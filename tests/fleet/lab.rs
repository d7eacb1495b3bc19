//! The fleet lab: a hub namespace (bridge, `nats-server` on 192.0.2.1)
//! and five namespaces on its LAN: nodes A, B and C (each a
//! `knock-server` with nftables and a `protected-service`), a knocker and
//! a stranger. Everything is killed by PID and the namespaces deleted
//! when the lab is dropped.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::netns::{Lan, privileged};
use crate::util::{FLAG, Proc, Reached, bin, connect_from};

/// The hub (NATS) addresses.
pub const HUB: [&str; 2] = ["192.0.2.1", "2001:db8::1"];
/// Node A, B, C, the knocker and the stranger, in the LAN's client order.
pub const MEMBERS: [[&str; 2]; 5] = [
    ["192.0.2.11", "2001:db8::11"],
    ["192.0.2.12", "2001:db8::12"],
    ["192.0.2.13", "2001:db8::13"],
    ["192.0.2.21", "2001:db8::21"],
    ["192.0.2.22", "2001:db8::22"],
];
/// Index of the knocker in [`MEMBERS`].
pub const KNOCKER: usize = 3;
/// Index of the stranger in [`MEMBERS`].
pub const STRANGER: usize = 4;
/// NATS client port on the hub.
pub const NATS_PORT: u16 = 4222;
/// The protected port on every node.
pub const PORT: u16 = 2222;
/// The fleet door's sequence.
pub const SEQUENCE: [u16; 3] = [1234, 5678, 9012];
/// The group key every node shares.
pub const GROUP_KEY: &str = "lab-group-key-0123456789abcdef";
/// The group.
pub const GROUP: &str = "lab";

/// One test's fleet.
pub struct FleetLab {
    /// The running nodes (A, B, C).
    pub nodes: [Option<Proc>; 3],
    /// The NATS server, when running.
    pub nats: Option<Proc>,
    _services: Vec<Proc>,
    /// The namespaces.
    pub lan: Lan,
    /// Configs, keys, NATS's store.
    pub dir: tempfile::TempDir,
    /// The fleet door's access, seconds.
    pub access: u64,
    /// `RUST_LOG` of the nodes.
    pub log_level: &'static str,
}

impl FleetLab {
    /// Builds the namespaces and starts the services (not NATS, not the
    /// nodes); None after a loud SKIPPED line without root.
    pub fn new(test: &str, tag: &str, access: u64) -> Option<FleetLab> {
        if !privileged(test) {
            return None;
        }
        let lan = Lan::new(tag, HUB, &MEMBERS);
        let mut services = Vec::new();
        for node in &lan.clients[..3] {
            let mut cmd = node.command(bin("protected-service"));
            cmd.args(["--port", &PORT.to_string(), "--close-after", "1"]);
            let mut service = Proc::spawn(cmd);
            service.wait_for("protected-service listening", Duration::from_secs(10));
            services.push(service);
        }
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("group.key");
        std::fs::write(&key, GROUP_KEY).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Some(FleetLab {
            nodes: [None, None, None],
            nats: None,
            _services: services,
            lan,
            dir,
            access,
            log_level: "debug",
        })
    }

    /// Starts `nats-server` with JetStream in the hub (its store survives
    /// a restart).
    pub fn start_nats(&mut self) {
        assert!(self.nats.is_none());
        let store = self.dir.path().join("js");
        let mut cmd = self.lan.host.command("nats-server");
        cmd.args(["-a", HUB[0], "-p", &NATS_PORT.to_string(), "-js", "-sd"])
            .arg(&store);
        let mut nats = Proc::spawn(cmd);
        nats.wait_for("Server is ready", Duration::from_secs(10));
        self.nats = Some(nats);
    }

    /// SIGKILLs the NATS server.
    pub fn kill_nats(&mut self) {
        let mut nats = self.nats.take().expect("nats runs");
        nats.signal_and_wait("KILL", Duration::from_secs(5));
    }

    /// The URL of the hub's NATS server.
    pub fn url() -> String {
        format!("nats://{}:{NATS_PORT}", HUB[0])
    }

    /// Writes node `i`'s config (with `fleet_extra` lines in `[fleet]`
    /// and `top_extra` before it) and returns its path.
    pub fn config(&self, i: usize, top_extra: &str, fleet_extra: &str) -> PathBuf {
        let text = format!(
            r#"bind = ["{addr}"]
firewall = "nftables"
{top_extra}
[fleet]
url = "{url}"
group = "{GROUP}"
node = "node{i}"
key-file = "{key}"
{fleet_extra}

[[door]]
name = "ssh"
sequence = [{s0}, {s1}, {s2}]
access = "{access}s"
lockout = "2s"
protected = ["tcp/{PORT}"]
fleet = true
"#,
            addr = MEMBERS[i][0],
            url = Self::url(),
            key = self.dir.path().join("group.key").display(),
            s0 = SEQUENCE[0],
            s1 = SEQUENCE[1],
            s2 = SEQUENCE[2],
            access = self.access,
        );
        let path = self.dir.path().join(format!("node{i}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The command of node `i` with `config`.
    pub fn node_command(&self, i: usize, config: &PathBuf) -> Command {
        let mut cmd = self.lan.clients[i].command(bin("knock-server"));
        cmd.arg("--config").arg(config);
        cmd
    }

    /// Starts node `i` with the default config and waits until it watches
    /// the fleet's grants.
    pub fn start_node(&mut self, i: usize) {
        let config = self.config(i, "", "");
        self.start_node_with(i, &config, "fleet: watching grants");
    }

    /// Starts node `i` with `config`, waiting for `ready` in its log.
    pub fn start_node_with(&mut self, i: usize, config: &PathBuf, ready: &str) {
        assert!(self.nodes[i].is_none(), "node {i} runs");
        let mut node = Proc::spawn_logging(self.node_command(i, config), self.log_level);
        node.wait_for(ready, Duration::from_secs(15));
        self.nodes[i] = Some(node);
    }

    /// SIGTERMs node `i` (it removes its rules).
    pub fn stop_node(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("node runs");
        let status = node.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(status.success(), "exit {status}\n{}", node.logs());
    }

    /// Node `i`'s process.
    pub fn node(&mut self, i: usize) -> &mut Proc {
        self.nodes[i].as_mut().expect("node runs")
    }

    /// Knocks the fleet door's sequence on node `i` from `who`.
    pub fn knock(&self, who: usize, i: usize) {
        let source: IpAddr = MEMBERS[who][0].parse().unwrap();
        let target: IpAddr = MEMBERS[i][0].parse().unwrap();
        self.lan.clients[who].run(|| {
            let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
            for port in SEQUENCE {
                socket
                    .send_to(b"knock", SocketAddr::new(target, port))
                    .unwrap();
                thread::sleep(Duration::from_millis(30));
            }
        });
    }

    /// Whether `who` is served the flag by node `i`'s protected port.
    pub fn served(&self, who: usize, i: usize) -> bool {
        let to = SocketAddr::new(MEMBERS[i][0].parse().unwrap(), PORT);
        let reached = self.lan.clients[who].run(|| connect_from(MEMBERS[who][0], to));
        matches!(reached, Reached::Served(text) if text.contains(FLAG))
    }

    /// Waits (bounded by `limit`) until `who` is served by node `i`.
    pub fn wait_served(&self, who: usize, i: usize, limit: Duration) {
        let start = Instant::now();
        while !self.served(who, i) {
            assert!(
                start.elapsed() < limit,
                "member {who} not served by node {i} within {limit:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded by `limit`) until `who` is no longer served by node `i`.
    pub fn wait_closed(&self, who: usize, i: usize, limit: Duration) {
        let start = Instant::now();
        while self.served(who, i) {
            assert!(
                start.elapsed() < limit,
                "member {who} still served by node {i} after {limit:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}
