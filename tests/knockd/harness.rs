//! A knockd.conf in a temporary directory, the server on it, and knocks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Proc, bin, free_ports};

/// How long a test waits for something the server does.
pub const WAIT: Duration = Duration::from_secs(10);

/// A test's directory: the conf, the state dir, the files commands touch.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
}

impl Setup {
    /// A directory and `n` free UDP knock ports.
    pub fn new(n: usize) -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            ports: free_ports(n),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `P0:udp,P1:udp,...` of the ports at `idx`.
    pub fn seq(&self, idx: &[usize]) -> String {
        let items: Vec<String> = idx
            .iter()
            .map(|&i| format!("{}:udp", self.ports[i]))
            .collect();
        items.join(",")
    }

    /// Writes the conf (`{dir}` replaced by the directory).
    pub fn conf(&self, text: &str) -> PathBuf {
        let path = self.path("knockd.conf");
        let text = text.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the server on the conf, loopback only, and waits until ready.
    pub fn start(&self, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(bin("knock-server"));
        cmd.arg("--knockd-config")
            .arg(self.path("knockd.conf"))
            .args(["--bind", "127.0.0.1", "--state-dir"])
            .arg(self.path("state"))
            .args(extra);
        let mut proc = Proc::spawn_logging(cmd, "info");
        proc.wait_for("knockd doors ready", WAIT);
        proc
    }

    /// Knocks the ports at `idx` from 127.0.0.1 with Debian's `knock -u`.
    pub fn knock(&self, idx: &[usize]) {
        let mut cmd = Command::new("knock");
        cmd.args(["-u", "-d", "100", "127.0.0.1"]);
        cmd.args(idx.iter().map(|&i| self.ports[i].to_string()));
        let status = cmd.status().expect("knock (Debian's knockd package) runs");
        assert!(status.success());
    }
}

/// Whether Debian's `knock` client is installed (package `knockd`, in
/// `.ci/run`): a loud SKIPPED line without it, a panic in CI.
pub fn have_knock(test: &str) -> bool {
    if portknock::firewall::system::find_tool("knock").is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: Debian's knock client is missing in CI");
    }
    eprintln!("\n*** SKIPPED {test}: needs Debian's knock client (apt-get install knockd) ***\n");
    false
}

/// Waits (bounded) until `path` exists.
pub fn wait_file(path: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Lines in `path` (0 if missing).
pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}
