//! The lab: a "server host" namespace (192.0.2.1, 2001:db8::1) running the
//! real `protected-service` and `knock-server --firewall <backend>`, and
//! two client namespaces on its LAN, A (192.0.2.2, 2001:db8::2) and B
//! (192.0.2.3, 2001:db8::3), where the real `knock-client` runs. The host
//! namespace starts with a few rules that are not ours in INPUT, so every
//! test can check that the server leaves them alone.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::netns::{Lan, privileged};
use crate::util::{FLAG, Outcome, Proc, Reached, bin, connect_from, run};

/// The server host's addresses, IPv4 and IPv6.
pub const HOST: [&str; 2] = ["192.0.2.1", "2001:db8::1"];
/// The clients' addresses: client A, then client B.
pub const CLIENTS: [[&str; 2]; 2] = [["192.0.2.2", "2001:db8::2"], ["192.0.2.3", "2001:db8::3"]];
/// Client A.
pub const A: usize = 0;
/// Client B.
pub const B: usize = 1;
/// The protected port and the knock sequence: the defaults.
pub const PORT: u16 = 2222;
pub const SEQUENCE: &str = "1234,5678,9012";
/// How long a client's check waits before calling the port filtered.
const CHECK_TIMEOUT: &str = "1";
/// How long the service keeps a connection: longer than any test's grant,
/// so a connection opened during a grant is still there after it ends.
const CLOSE_AFTER: &str = "20";

/// The kernel firewall the server runs with.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    /// The value of `--firewall`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// An address family: an index into [`HOST`] and [`CLIENTS`] entries.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    V4 = 0,
    V6 = 1,
}

pub use Family::{V4, V6};

/// One client over one family.
pub type Who = (usize, Family);

/// The server's access duration and lockout, in seconds.
#[derive(Clone, Copy)]
pub struct Timing {
    pub access: u64,
    pub lockout: u64,
}

/// The lab of one test; the processes are killed (by PID) and the
/// namespaces deleted when it is dropped, even when the test fails.
pub struct Lab {
    /// The running knock server, if any.
    pub server: Option<Proc>,
    /// The protected service, killed with the lab.
    _service: Proc,
    pub lan: Lan,
    pub backend: Backend,
    pub timing: Timing,
    /// The host's rules before the server first started.
    pub rules_before: String,
    /// The last server was started with `--deny drop` (strangers' SYNs
    /// dropped: the port looks filtered); else the default `reset` (a
    /// RST: the port looks closed).
    pub deny_drop: bool,
}

impl Lab {
    /// Builds the namespaces, starts the service and the server; `None`
    /// (after a loud SKIPPED line) without root or the tools.
    pub fn start(test: &str, tag: &str, backend: Backend, timing: Timing) -> Option<Lab> {
        let mut lab = Lab::prepare(test, tag, backend, timing)?;
        lab.start_server();
        Some(lab)
    }

    /// [`Lab::start`] without starting the server.
    pub fn prepare(test: &str, tag: &str, backend: Backend, timing: Timing) -> Option<Lab> {
        if !privileged(test) {
            return None;
        }
        let lan = Lan::new(tag, HOST, &CLIENTS);
        lan.host.add_foreign_rules();
        let rules_before = lan.host.rules();
        let mut cmd = lan.host.command(bin("protected-service"));
        cmd.args(["--port", &PORT.to_string(), "--close-after", CLOSE_AFTER]);
        let mut service = Proc::spawn(cmd);
        service.wait_for("protected-service listening", Duration::from_secs(10));
        Some(Lab {
            server: None,
            _service: service,
            lan,
            backend,
            timing,
            rules_before,
            deny_drop: false,
        })
    }

    /// Starts `knock-server` in the host namespace and waits until it is ready.
    pub fn start_server(&mut self) {
        self.start_server_with(&[]);
    }

    /// [`Lab::start_server`] with `extra` flags.
    pub fn start_server_with(&mut self, extra: &[&str]) {
        assert!(self.server.is_none(), "a server is already running");
        self.deny_drop = extra.windows(2).any(|w| w == ["--deny", "drop"]);
        let mut server = Proc::spawn(self.server_command(extra));
        server.wait_for("knock server ready", Duration::from_secs(10));
        self.server = Some(server);
    }

    /// The `knock-server` command of this lab, with `extra` flags.
    pub fn server_command(&self, extra: &[&str]) -> Command {
        let mut cmd = self.lan.host.command(bin("knock-server"));
        cmd.args(["--firewall", self.backend.name()])
            .args(["--bind", HOST[0], "--bind", HOST[1]])
            .args([
                "--sequence",
                SEQUENCE,
                "--protected-port",
                &PORT.to_string(),
            ])
            .args(["--window", "10"])
            .args(["--access-duration", &self.timing.access.to_string()])
            .args(["--lockout", &self.timing.lockout.to_string()])
            .args(extra);
        cmd
    }

    /// The running server.
    pub fn server(&mut self) -> &mut Proc {
        self.server.as_mut().expect("the server is running")
    }

    /// SIGKILLs the server: it removes nothing.
    pub fn kill_server(&mut self) {
        let mut server = self.server.take().expect("the server is running");
        let status = server.signal_and_wait("KILL", Duration::from_secs(5));
        assert!(!status.success(), "{}", server.logs());
    }

    /// SIGTERMs the server and checks that it stopped cleanly and left the
    /// host's rules exactly as they were before it first started.
    pub fn stop_server(&mut self) {
        let mut server = self.server.take().expect("the server is running");
        let status = server.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(status.success(), "exit {status}\n{}", server.logs());
        assert!(server.printed("knock server stopped"), "{}", server.logs());
        assert_eq!(
            self.lan.host.rules(),
            self.rules_before,
            "rules after SIGTERM differ from those before the start"
        );
    }

    /// Waits until the server has logged `needle` at least `n` times.
    pub fn wait_logged(&mut self, needle: &str, n: usize, timeout: Duration) {
        let server = self.server();
        let start = Instant::now();
        while server.count(needle) < n {
            assert!(
                start.elapsed() < timeout,
                "{needle:?} logged {} times, not {n}, within {timeout:?}\n{}",
                server.count(needle),
                server.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `knock-client` command run by `who`, aimed at the host.
    pub fn client(&self, (client, family): Who) -> Command {
        let mut cmd = self.lan.clients[client].command(bin("knock-client"));
        cmd.args(["--target", HOST[family as usize]])
            .args([
                "--sequence",
                SEQUENCE,
                "--protected-port",
                &PORT.to_string(),
            ])
            .args(["--delay", "0.05"]);
        cmd
    }

    /// How a stranger's check sees the protected port: `closed` (our
    /// reject answers a RST, `--deny reset`, the default) or `filtered`
    /// (`--deny drop`).
    pub fn denied_word(&self) -> &'static str {
        if self.deny_drop { "filtered" } else { "closed" }
    }

    /// `knock-client --check-only` from each of `who`, side by side: each
    /// reports the port denied ([`Lab::denied_word`]) and exits 1.
    pub fn expect_filtered(&self, who: &[Who]) {
        let word = self.denied_word();
        let outcomes = run_all(who.iter().map(|&w| {
            let mut cmd = self.client(w);
            cmd.args(["--check-only", "--timeout", CHECK_TIMEOUT]);
            cmd
        }));
        for outcome in outcomes {
            let outcome = outcome.expect_code(1);
            assert!(
                outcome
                    .stdout
                    .contains(&format!("[-] Port {PORT} is {word}")),
                "{}",
                outcome.describe()
            );
        }
    }

    /// `knock-client --check` from each of `who`, side by side: each knocks
    /// the right sequence and finds the port open.
    pub fn knock(&self, who: &[Who]) {
        let outcomes = run_all(who.iter().map(|&w| {
            let mut cmd = self.client(w);
            cmd.args(["--check", "--wait", "0.2", "--timeout", CHECK_TIMEOUT]);
            cmd
        }));
        for outcome in outcomes {
            let outcome = outcome.expect_code(0);
            assert!(
                outcome
                    .stdout
                    .contains(&format!("[+] SUCCESS! Port {PORT} is now accessible")),
                "{}",
                outcome.describe()
            );
        }
    }

    /// Connects from `who` to the protected port and returns what the
    /// service sent, which must include the flag.
    pub fn read_flag(&self, (client, family): Who) -> String {
        let source = CLIENTS[client][family as usize];
        let to = host_addr(family);
        match self.lan.clients[client].run(|| connect_from(source, to)) {
            Reached::Served(text) if text.contains(FLAG) => text,
            other => panic!("{source} -> {to}: no flag, got {other:?}"),
        }
    }

    /// Opens a connection from `who` and reads the greeting; the service
    /// keeps it open for `CLOSE_AFTER` unless the client closes first.
    pub fn open_connection(&self, (client, family): Who) -> TcpStream {
        let to = host_addr(family);
        let mut stream = self.lan.clients[client]
            .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut greeting = Vec::new();
        let mut chunk = [0u8; 512];
        while !greeting.ends_with(b"seconds...\n") {
            let n = stream
                .read(&mut chunk)
                .unwrap_or_else(|e| panic!("reading the greeting from {to}: {e}"));
            assert!(n > 0, "{to} closed before the end of the greeting");
            greeting.extend_from_slice(&chunk[..n]);
        }
        stream
    }

    /// Waits (bounded) until no rule of the host mentions `ip`: the server
    /// (or the kernel) has applied the end of its grant.
    pub fn wait_rules_without(&self, ip: &str) {
        for _ in 0..100 {
            if !self.lan.host.rules().contains(ip) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("{ip} still in the rules:\n{}", self.lan.host.rules());
    }
}

/// The host's protected port over `family`.
pub fn host_addr(family: Family) -> SocketAddr {
    SocketAddr::new(HOST[family as usize].parse::<IpAddr>().unwrap(), PORT)
}

/// Proves that a connection opened during a grant still carries the
/// client's packets: the client half-closes, and the service, which reads
/// until the peer closes, answers by closing at once. Were the client's FIN
/// dropped, the service would hold on until `CLOSE_AFTER`.
pub fn assert_alive(stream: &mut TcpStream) {
    let peer = stream.peer_addr().unwrap();
    stream.write_all(b"still here\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => panic!(
            "{peer}: the service did not see the client close within 3 s ({e}): \
             the connection opened during the grant was cut"
        ),
    }
}

/// Runs `commands` side by side (each bounded to 30 s), in order of the input.
pub fn run_all(commands: impl Iterator<Item = Command>) -> Vec<Outcome> {
    let commands: Vec<Command> = commands.collect();
    thread::scope(|scope| {
        let handles: Vec<_> = commands
            .into_iter()
            .map(|cmd| scope.spawn(move || run(cmd, Duration::from_secs(30))))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
}

/// Sleeps until `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) {
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
}
