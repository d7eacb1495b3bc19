//! Running one command: no shell (unless the template is a shell line), a
//! time limit, and bounded output.
//!
//! knockd `fork()`s and `system()`s, never waits, and a command that hangs
//! stays forever. Here each run is its own process group, so on timeout the
//! whole group (the command and anything it started) gets SIGKILL. stdin
//! is `/dev/null`; stdout and stderr are drained as they come (a command
//! that prints a lot never blocks on a full pipe) and their first
//! [`OUTPUT_CAP`] bytes are kept for the log, the rest only counted.
//! Blocking: call it from a blocking thread (`spawn_blocking`).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of a command's output kept for the log.
pub const OUTPUT_CAP: usize = 2048;
/// How often a running command's status is polled.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for the output readers after the process ended (a
/// descendant that escaped the group may hold the pipe open).
const DRAIN: Duration = Duration::from_millis(500);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this status code.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
    /// Still running at the time limit: its process group was killed.
    TimedOut,
    /// Could not be started (no such program, not executable...).
    NotStarted(String),
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How it ended.
    pub ending: Ending,
    /// The first [`OUTPUT_CAP`] bytes of stderr, lossily decoded.
    pub stderr: String,
    /// Bytes of stdout and stderr beyond what was kept (and all of stdout,
    /// which is counted, not kept).
    pub dropped: u64,
    /// How long it ran.
    pub took: Duration,
}

impl Report {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.ending == Ending::Exited(0)
    }
}

/// Drains `pipe`, keeping the first `keep` bytes; sends (kept, dropped).
fn drain(mut pipe: impl Read + Send + 'static, keep: usize, done: mpsc::Sender<(Vec<u8>, u64)>) {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = keep.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                    dropped += (n - room) as u64;
                }
            }
        }
        let _ = done.send((kept, dropped));
    });
}

fn ending(status: ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(signal)) => Ending::Signalled(signal),
        (None, None) => Ending::Exited(-1),
    }
}

/// Runs `argv` (program and arguments) for at most `limit`.
pub fn run(argv: &[String], limit: Duration) -> Report {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return Report {
            ending: Ending::NotStarted("empty command".into()),
            stderr: String::new(),
            dropped: 0,
            took: Duration::ZERO,
        };
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            return Report {
                ending: Ending::NotStarted(format!("{program}: {err}")),
                stderr: String::new(),
                dropped: 0,
                took: started.elapsed(),
            };
        }
    };
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        drain(stdout, 0, out_tx);
    }
    if let Some(stderr) = child.stderr.take() {
        drain(stderr, OUTPUT_CAP, err_tx);
    }
    let deadline = started + limit;
    let ending = loop {
        match child.try_wait() {
            Ok(Some(status)) => break ending(status),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: plain syscall; the group is the child's own
                // (process_group(0) made its pid the group id).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                break Ending::TimedOut;
            }
            Ok(None) => thread::sleep(POLL),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                break Ending::NotStarted(format!("waiting for {program}: {err}"));
            }
        }
    };
    let (_, out_dropped) = out_rx.recv_timeout(DRAIN).unwrap_or_default();
    let (kept, err_dropped) = err_rx.recv_timeout(DRAIN).unwrap_or_default();
    Report {
        ending,
        stderr: String::from_utf8_lossy(&kept).into_owned(),
        dropped: out_dropped + err_dropped,
        took: started.elapsed(),
    }
}

#[cfg(test)]
mod tests;
