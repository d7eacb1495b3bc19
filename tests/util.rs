//! The harness for the integration tests: starts the real binaries, picks
//! free ports, and on failure prints the command with its stdout and stderr.

#![allow(dead_code)]

pub mod netns;
pub mod spa;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Path of one of the workspace's binaries.
///
/// `knock-bench` is its own crate (`bench/`), so Cargo does not hand its
/// path to these tests; it is built beside the others by `cargo build` or
/// `cargo test` (both default members of the workspace).
pub fn bin(name: &str) -> PathBuf {
    match name {
        "knock-bench" => {
            let server = PathBuf::from(env!("CARGO_BIN_EXE_knock-server"));
            let path = server.with_file_name("knock-bench");
            assert!(
                path.is_file(),
                "{} is missing: build it with `cargo build -p knock-bench` \
                 (plain `cargo build` or `cargo test` at the root builds it)",
                path.display()
            );
            path
        }
        "knock-server" => PathBuf::from(env!("CARGO_BIN_EXE_knock-server")),
        "knock-client" => PathBuf::from(env!("CARGO_BIN_EXE_knock-client")),
        "protected-service" => PathBuf::from(env!("CARGO_BIN_EXE_protected-service")),
        "knockctl" => PathBuf::from(env!("CARGO_BIN_EXE_knockctl")),
        other => panic!("no binary {other}"),
    }
}

/// Ports handed out in this process, so parallel tests never share one.
fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(Mutex::default)
}

/// A port free for both UDP and TCP on loopback, never handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if taken().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// Renders a command line for messages.
pub fn render(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// A running program; killed (by its PID) when dropped.
pub struct Proc {
    pub command: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    collect_until(stream, into, None);
}

/// Collects lines into `into`; after a line containing `last`, stops and
/// closes the stream (the writer's next writes fail with EPIPE).
fn collect_until(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    last: Option<String>,
) {
    thread::spawn(move || {
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let mut buf = into.lock().unwrap();
            buf.push_str(&line);
            buf.push('\n');
            if last
                .as_ref()
                .is_some_and(|last| line.contains(last.as_str()))
            {
                buf.push_str("[harness: stderr closed here]\n");
                break;
            }
        }
    });
}

impl Proc {
    /// Starts `cmd` with its output captured and debug logs on.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.env("RUST_LOG", "debug");
        Proc::start(cmd)
    }

    /// Starts `cmd` with its output captured and `RUST_LOG` set to `level`.
    pub fn spawn_logging(mut cmd: Command, level: &str) -> Proc {
        cmd.env("RUST_LOG", level);
        Proc::start(cmd)
    }

    /// Starts `cmd` with debug logs, waits (bounded) until it printed
    /// `needle` on stderr, then closes the reading end of its stderr, as a
    /// journald restart or `2>&1 | head` would: every later log line of
    /// the program meets a broken pipe. Its later stderr is not captured.
    pub fn spawn_then_close_stderr(mut cmd: Command, needle: &str, timeout: Duration) -> Proc {
        cmd.env("RUST_LOG", "debug");
        let mut proc = Proc::start_with(cmd, Some(needle.to_string()));
        proc.wait_for(needle, timeout);
        proc
    }

    /// Starts `cmd` as it is, with its output captured.
    fn start(cmd: Command) -> Proc {
        Proc::start_with(cmd, None)
    }

    /// Starts `cmd`, capturing stdout, and stderr up to a line containing
    /// `stderr_until` (all of it if None).
    fn start_with(mut cmd: Command, stderr_until: Option<String>) -> Proc {
        let command = render(&cmd);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect_until(child.stderr.take().unwrap(), stderr.clone(), stderr_until);
        Proc {
            command,
            child,
            stdout,
            stderr,
        }
    }

    /// Everything the program printed so far.
    pub fn logs(&self) -> String {
        format!(
            "command: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command,
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits until the program's output contains `needle`; panics with the
    /// logs after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.stdout.lock().unwrap().contains(needle)
                || self.stderr.lock().unwrap().contains(needle)
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "program exited ({status}) before printing {needle:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {needle:?}\n{}", self.logs());
    }

    /// Whether the output contains `needle` now.
    pub fn printed(&self, needle: &str) -> bool {
        self.stdout.lock().unwrap().contains(needle) || self.stderr.lock().unwrap().contains(needle)
    }

    /// Counts the lines of output containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let out = self.stdout.lock().unwrap().clone() + &self.stderr.lock().unwrap();
        out.lines().filter(|l| l.contains(needle)).count()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this process (by PID).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to this process (by PID) and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        self.wait_exit(timeout)
    }

    /// Waits for the program to exit; panics with the logs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("program did not exit within {timeout:?}\n{}", self.logs());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// What a finished command did.
pub struct Outcome {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The command, its exit status and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }
}

/// Runs `cmd` to completion with a time bound.
pub fn run(mut cmd: Command, timeout: Duration) -> Outcome {
    cmd.env_remove("RUST_LOG");
    let mut proc = Proc::start(cmd);
    let status = proc.wait_exit(timeout);
    Outcome {
        command: proc.command.clone(),
        status,
        stdout: proc.stdout.lock().unwrap().clone(),
        stderr: proc.stderr.lock().unwrap().clone(),
    }
}

/// Settings for a knock server under test; unset ports are picked free.
#[derive(Clone)]
pub struct ServerSpec {
    pub sequence: Vec<u16>,
    pub protected_port: u16,
    pub window: &'static str,
    pub access: &'static str,
    pub lockout: &'static str,
    pub extra: Vec<String>,
    pub bind: Vec<&'static str>,
}

impl ServerSpec {
    /// Three free knock ports, a free protected port, loopback only, and
    /// the given durations.
    pub fn new() -> Self {
        ServerSpec {
            sequence: free_ports(3),
            protected_port: free_port(),
            window: "10",
            access: "30",
            lockout: "5",
            extra: Vec::new(),
            bind: vec!["127.0.0.1"],
        }
    }

    pub fn sequence_arg(&self) -> String {
        self.sequence
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("knock-server"));
        cmd.args(["--sequence", &self.sequence_arg()])
            .args(["--protected-port", &self.protected_port.to_string()])
            .args(["--window", self.window])
            .args(["--access-duration", self.access])
            .args(["--lockout", self.lockout])
            .args(["--firewall", "userspace"])
            // Tests that want one give their own path (later flags win).
            .args(["--control-socket", "none"]);
        for addr in &self.bind {
            cmd.args(["--bind", addr]);
        }
        cmd.args(&self.extra);
        cmd
    }

    /// Starts the server and waits until it is ready.
    pub fn start(&self) -> Proc {
        let mut proc = Proc::spawn(self.command());
        proc.wait_for("knock server ready", Duration::from_secs(10));
        proc
    }

    /// A knock-client command aimed at this server from `source`, knocking
    /// 50 ms apart.
    pub fn client(&self, source: &str) -> Command {
        self.client_with_delay(source, "0.05")
    }

    /// A knock-client command aimed at this server from `source`.
    pub fn client_with_delay(&self, source: &str, delay: &str) -> Command {
        let target = if source.contains(':') {
            "::1"
        } else {
            "127.0.0.1"
        };
        let mut cmd = Command::new(bin("knock-client"));
        cmd.args(["--target", target])
            .args(["--sequence", &self.sequence_arg()])
            .args(["--protected-port", &self.protected_port.to_string()])
            .args(["--source", source])
            .args(["--delay", delay]);
        cmd
    }
}

/// What a TCP connection to the protected port got.
#[derive(Debug, PartialEq, Eq)]
pub enum Reached {
    /// Connected and read these bytes.
    Served(String),
    /// Refused, or reset before any byte.
    Reset,
}

/// Connects from `source` to `addr` and reads what comes within 2 s.
pub fn connect_from(source: &str, addr: SocketAddr) -> Reached {
    let source: IpAddr = source.parse().unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    if socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .is_err()
    {
        return Reached::Reset;
    }
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.ends_with(b"seconds...\n") {
                    break;
                }
            }
            Err(_) if buf.is_empty() => return Reached::Reset,
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        return Reached::Reset;
    }
    let _ = stream.write_all(b"");
    Reached::Served(String::from_utf8_lossy(&buf).into_owned())
}

/// Sends one knock datagram from `source` to `port` on loopback.
pub fn knock_from(source: &str, port: u16) {
    let source: IpAddr = source.parse().unwrap();
    let target: IpAddr = if source.is_ipv6() {
        "::1".parse().unwrap()
    } else {
        "127.0.0.1".parse().unwrap()
    };
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
    socket
        .send_to(b"knock", SocketAddr::new(target, port))
        .unwrap();
}

/// The protected port's address on IPv4 loopback.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The default flag.
pub const FLAG: &str = "FLAG{port_knock1ng_m4st3r_2024}";
