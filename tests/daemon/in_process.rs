//! `daemon::run` called in-process, as the binary calls it.

use std::path::Path;
use std::time::{Duration, Instant};

use portknock::config::{ServerConfig, file};
use portknock::server::daemon::{self, ConfigSource, GateTuning, Reloads};
use portknock::shutdown::{Shutdown, Stopper};
use tokio::sync::mpsc;

use crate::util::{FLAG, Reached, connect_from, free_port, free_ports, knock_from, loopback};

/// A one-door configuration file on loopback with the userspace gate.
pub fn door_file(sequence: &[u16], protected: u16, access: &str) -> String {
    let seq: Vec<String> = sequence.iter().map(u16::to_string).collect();
    format!(
        "bind = [\"127.0.0.1\"]\nfirewall = \"userspace\"\ncapture = \"socket\"\n\n[[door]]\nname = \"ssh\"\nsequence = [{}]\nwindow = \"10s\"\naccess = \"{access}\"\nlockout = \"1s\"\nprotected = [\"tcp/{protected}\"]\n",
        seq.join(", ")
    )
}

/// A daemon running on its own thread and runtime, with a reload trigger.
pub struct Running {
    pub reload: mpsc::Sender<()>,
    stop: Option<Stopper>,
    thread: Option<std::thread::JoinHandle<Result<(), daemon::DaemonError>>>,
}

impl Running {
    pub fn start(config: ServerConfig, path: Option<&Path>) -> Running {
        let (reload, triggers) = mpsc::channel(1);
        let (stop, shutdown) = Shutdown::new();
        let source = path.map(|p| ConfigSource {
            path: p.to_path_buf(),
            overrides: Default::default(),
        });
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let reloads = Reloads { source, triggers };
            runtime.block_on(daemon::run_with(
                config,
                GateTuning::default(),
                Some(reloads),
                shutdown,
            ))
        });
        Running {
            reload,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Waits for the daemon to end on its own (a refused start).
    pub fn thread_result(mut self) -> Result<(), daemon::DaemonError> {
        self.thread.take().unwrap().join().unwrap()
    }

    pub fn stop(mut self) -> Result<(), daemon::DaemonError> {
        self.stop.take().unwrap().stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.stop();
        }
    }
}

/// Knocks `sequence` from `source`, 20 ms apart.
pub fn knock(source: &str, sequence: &[u16]) {
    for &port in sequence {
        knock_from(source, port);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `source` is served on `port` within `limit`, knocking `sequence`
/// again every try (bounded).
pub fn opens_within(source: &str, sequence: &[u16], port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        knock(source, sequence);
        std::thread::sleep(Duration::from_millis(100));
        if served(&connect_from(source, loopback(port))) {
            return true;
        }
    }
    false
}

pub fn served(reached: &Reached) -> bool {
    matches!(reached, Reached::Served(text) if text.contains(FLAG))
}

#[test]
fn run_in_process_opens_the_door_for_the_knocker_only() {
    let dir = tempfile::tempdir().unwrap();
    let sequence = free_ports(3);
    let protected = free_port();
    let path = dir.path().join("portknock.toml");
    std::fs::write(&path, door_file(&sequence, protected, "30s")).unwrap();
    let config = file::load(&path).unwrap();
    let running = Running::start(config, None);
    if !opens_within("127.0.0.2", &sequence, protected, Duration::from_secs(20)) {
        panic!(
            "the knocker was never served; the daemon ended with {:?}",
            running.stop()
        );
    }
    assert_eq!(
        connect_from("127.0.0.3", loopback(protected)),
        Reached::Reset
    );
    running.stop().unwrap();
}

#[test]
fn a_tcp_knock_with_the_socket_source_refuses_the_start() {
    // Bound sockets cannot hear `:tcp` knocks (issue 11): rather than run
    // a door that can never open, the daemon refuses before it starts.
    let dir = tempfile::tempdir().unwrap();
    let sequence = free_ports(3);
    let protected = free_port();
    let admin = free_ports(3);
    let path = dir.path().join("portknock.toml");
    let text = format!(
        "{}\n[[door]]\nname = \"admin\"\nsequence = [{}, \"{}:tcp\"]\nprotected = [\"tcp/{}\"]\n",
        door_file(&sequence, protected, "30s"),
        admin[0],
        admin[1],
        admin[2]
    );
    std::fs::write(&path, text).unwrap();
    let config = file::load(&path).unwrap();
    assert_eq!(daemon::unheard_knocks(&config).len(), 1);
    let running = Running::start(config, None);
    let ended = running.thread_result();
    let err = ended.expect_err("a TCP knock with bound sockets must refuse the start");
    assert!(
        err.to_string().contains("admin") && err.exit_code() == daemon::EXIT_USAGE,
        "{err}"
    );
}
