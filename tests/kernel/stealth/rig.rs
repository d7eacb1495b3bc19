//! The stealth rig: a server host (192.0.2.1, 2001:db8::1) and two client
//! namespaces on its LAN (`util::netns::Lan`), the real `knock-server`
//! started from a config file with three doors (all protecting tcp/2222):
//!
//! | door | sequence |
//! |---|---|
//! | `tcp` | 2001:tcp 2002:tcp 2003:tcp (Debian `knock`'s default) |
//! | `udp` | 3001 3002 3003 (`knock -u`, `knock-client`) |
//! | `mixed` | 1234:udp 5678:tcp 9012:udp |
//!
//! and SPA on udp/62201. With a kernel backend `protected-service` serves
//! 2222; with the userspace gate the gate serves it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util::netns::{Lan, privileged};
use crate::util::spa::{HMAC, KEY};
use crate::util::{FLAG, Proc, Reached, bin, connect_from};

pub const HOST: [&str; 2] = ["192.0.2.1", "2001:db8::1"];
pub const CLIENTS: [[&str; 2]; 2] = [["192.0.2.2", "2001:db8::2"], ["192.0.2.3", "2001:db8::3"]];
pub const PROTECTED: u16 = 2222;
pub const SPA_PORT: u16 = 62201;
pub const TCP_DOOR: [u16; 3] = [2001, 2002, 2003];
pub const UDP_DOOR: [u16; 3] = [3001, 3002, 3003];
/// The mixed door, as Debian's `knock` takes it.
pub const MIXED: [&str; 3] = ["1234:udp", "5678:tcp", "9012:udp"];

/// Firewall backend and capture source of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nftables, NFLOG capture.
    Nftables,
    /// iptables, NFLOG capture.
    Iptables,
    /// The userspace gate, AF_PACKET capture.
    Packet,
    /// The userspace gate, bound sockets (UDP doors only: no TCP knocks).
    Socket,
}

impl Mode {
    pub fn flags(self) -> [&'static str; 4] {
        match self {
            Mode::Nftables => ["--firewall", "nftables", "--capture", "nflog"],
            Mode::Iptables => ["--firewall", "iptables", "--capture", "nflog"],
            Mode::Packet => ["--firewall", "userspace", "--capture", "packet"],
            Mode::Socket => ["--firewall", "userspace", "--capture", "socket"],
        }
    }

    fn kernel(self) -> bool {
        matches!(self, Mode::Nftables | Mode::Iptables)
    }
}

/// The config file of the rig (`socket`: the UDP door only;
/// `socket_or_gate`: no privilege split, the server runs as root).
pub fn config_text(dir: &std::path::Path, socket: bool, socket_or_gate: bool) -> String {
    let access = dir.join("access.conf");
    std::fs::write(
        &access,
        format!(
            "SOURCE ANY\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC}\nOPEN_PORTS tcp/{PROTECTED}\nFW_ACCESS_TIMEOUT 20\n"
        ),
    )
    .unwrap();
    // Under the privilege split (root, kernel backend) the packet process
    // runs as nobody and keeps the replay cache in a directory of its own.
    let cache = dir.join("cache");
    std::fs::create_dir(&cache).unwrap();
    if !socket_or_gate {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    }
    let mut text = format!(
        "bind = [\"{}\", \"{}\"]\nflag = \"{FLAG}\"\n\n[spa]\nport = {SPA_PORT}\naccess = \"{}\"\nreplay-cache = \"{}\"\n",
        HOST[0],
        HOST[1],
        access.display(),
        cache.join("replay").display()
    );
    let door = |name: &str, seq: String| {
        format!(
            "\n[[door]]\nname = \"{name}\"\nsequence = [{seq}]\nprotected = [\"tcp/{PROTECTED}\"]\naccess = \"20s\"\nlockout = \"1s\"\n"
        )
    };
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    text.push_str(&door(
        "udp",
        quoted(UDP_DOOR.iter().map(|p| p.to_string()).collect()),
    ));
    if !socket {
        text.push_str(&door(
            "tcp",
            quoted(TCP_DOOR.iter().map(|p| format!("{p}:tcp")).collect()),
        ));
        text.push_str(&door(
            "mixed",
            quoted(MIXED.iter().map(|k| k.to_string()).collect()),
        ));
    }
    text
}

/// One test's namespaces and programs; killed (by PID) and removed on drop.
pub struct Rig {
    pub server: Option<Proc>,
    _service: Option<Proc>,
    pub lan: Lan,
    pub mode: Mode,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether `tool` can be run; else a loud SKIPPED line (a panic under CI).
pub fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{test}: `{tool}` is not installed (see .ci/run)");
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("\n*** SKIPPED {msg} ***\n");
    }
    ok
}

impl Rig {
    /// The namespaces and the config file, nothing started; `None` without root.
    pub fn prepare(test: &str, tag: &str, mode: Mode) -> Option<Rig> {
        if !privileged(test) {
            return None;
        }
        let lan = Lan::new(tag, HOST, &CLIENTS);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portknock.toml");
        std::fs::write(
            &config,
            config_text(dir.path(), mode == Mode::Socket, !mode.kernel()),
        )
        .unwrap();
        let service = mode.kernel().then(|| {
            let mut cmd = lan.host.command(bin("protected-service"));
            cmd.args(["--port", &PROTECTED.to_string(), "--close-after", "20"]);
            let mut service = Proc::spawn(cmd);
            service.wait_for("protected-service listening", Duration::from_secs(10));
            service
        });
        Some(Rig {
            server: None,
            _service: service,
            lan,
            mode,
            config,
            _dir: dir,
        })
    }

    /// [`Rig::prepare`] and the server started.
    pub fn start(test: &str, tag: &str, mode: Mode) -> Option<Rig> {
        let mut rig = Rig::prepare(test, tag, mode)?;
        rig.start_server(&[]);
        Some(rig)
    }

    /// The server's command with `extra` flags.
    pub fn server_command(&self, extra: &[&str]) -> Command {
        let mut cmd = self.lan.host.command(bin("knock-server"));
        cmd.args(self.mode.flags())
            .arg("--config")
            .arg(&self.config)
            .args(extra);
        cmd
    }

    /// Starts the server and waits until it is ready.
    pub fn start_server(&mut self, extra: &[&str]) {
        let mut server = Proc::spawn(self.server_command(extra));
        server.wait_for("knock server ready", Duration::from_secs(10));
        server.wait_for("spa listener ready", Duration::from_secs(10));
        self.server = Some(server);
    }

    pub fn server(&mut self) -> &mut Proc {
        self.server.as_mut().expect("the server runs")
    }

    /// A command run in client `client`'s namespace.
    pub fn client(&self, client: usize, program: &str) -> Command {
        self.lan.clients[client].command(program)
    }

    /// Waits (bounded) until the server logged `needle` `n` times.
    pub fn wait_logged(&mut self, needle: &str, n: usize) {
        let server = self.server();
        for _ in 0..250 {
            if server.count(needle) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{needle:?} not logged {n} times\n{}", server.logs());
    }

    /// Whether `client` over `family` (0: v4, 1: v6) reads the flag on the
    /// protected port.
    pub fn served(&self, client: usize, family: usize) -> bool {
        let source = CLIENTS[client][family];
        let to = std::net::SocketAddr::new(HOST[family].parse().unwrap(), PROTECTED);
        matches!(self.lan.clients[client].run(|| connect_from(source, to)), Reached::Served(text) if text.contains(FLAG))
    }
}
