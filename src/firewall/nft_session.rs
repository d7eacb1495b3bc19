//! One long-lived `nft -i` process fed through its stdin, so a grant costs a
//! line written to a pipe instead of a process.
//!
//! `nft -i` runs each input line as one transaction (several commands joined
//! by `;` commit or fail together) and prints nothing on success. To know
//! when a line is done and whether it failed, each command line is followed
//! by a marker line that is not valid nft syntax: nft reports it on stderr,
//! echoing the marker. Everything on stderr before the marker's report is
//! the command's error. If nft dies or stops answering, the session is
//! dropped and the next command starts a fresh one.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::FirewallError;

/// How long one command may take before the session is declared stuck.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most stderr lines kept for one command (a runaway error stays bounded).
const MAX_ERROR_LINES: usize = 64;

/// A running `nft -i`.
#[derive(Debug)]
struct Process {
    child: Child,
    stdin: ChildStdin,
    stderr: Receiver<String>,
}

/// The session: a process started on first use and restarted after failure.
#[derive(Debug)]
pub(crate) struct NftSession {
    program: String,
    process: Option<Process>,
    sequence: u64,
}

impl NftSession {
    /// A session running `program -i` (not started until the first command).
    pub(crate) fn new(program: &str) -> Self {
        Self {
            program: program.to_string(),
            process: None,
            sequence: 0,
        }
    }

    fn start(&self) -> Result<Process, FirewallError> {
        let mut child = Command::new(&self.program)
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FirewallError::Io {
                context: format!("cannot start `{} -i`", self.program),
                source,
            })?;
        let (stdin, stderr) = match (child.stdin.take(), child.stderr.take()) {
            (Some(stdin), Some(stderr)) => (stdin, stderr),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FirewallError::Io {
                    context: format!("`{} -i` has no pipes", self.program),
                    source: std::io::Error::other("missing pipe"),
                });
            }
        };
        let (tx, rx) = mpsc::channel();
        // Ends when nft closes stderr (it exited) or the session is dropped.
        std::thread::Builder::new()
            .name("nft-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| FirewallError::Io {
                context: "cannot start the nft stderr reader".into(),
                source,
            })?;
        Ok(Process {
            child,
            stdin,
            stderr: rx,
        })
    }

    /// Runs one line (one transaction); `Command` error with nft's stderr if
    /// it failed. `line` must not contain a newline.
    pub(crate) fn run(&mut self, line: &str) -> Result<(), FirewallError> {
        let command = format!("nft -i <<< '{line}'");
        if line.contains('\n') {
            return Err(FirewallError::Command {
                command,
                status: "not sent".into(),
                stderr: "a session command must be one line".into(),
            });
        }
        let mut process = match self.process.take() {
            Some(process) => process,
            None => self.start()?,
        };
        self.sequence += 1;
        let marker = format!("portknock-sync-{}", self.sequence);
        match exchange(&mut process, line, &marker) {
            Ok(errors) => {
                self.process = Some(process);
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(FirewallError::Command {
                        command,
                        status: "error".into(),
                        stderr: errors.join("\n"),
                    })
                }
            }
            Err(reason) => {
                close(process);
                Err(FirewallError::Command {
                    command,
                    status: reason,
                    stderr: String::new(),
                })
            }
        }
    }
}

/// Sends `line` and the marker; returns the command's stderr lines, or why
/// the session is broken.
fn exchange(process: &mut Process, line: &str, marker: &str) -> Result<Vec<String>, String> {
    writeln!(process.stdin, "{line}\n{marker}")
        .and_then(|()| process.stdin.flush())
        .map_err(|e| format!("nft session closed: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match process.stderr.recv_timeout(left) {
            Ok(text) if text.trim() == marker => break,
            Ok(text) => {
                if lines.len() < MAX_ERROR_LINES {
                    lines.push(text);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no answer within {COMMAND_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => return Err("nft session exited".into()),
        }
    }
    // The marker's own report: an "Error:" line before it, a caret line after.
    if lines.last().is_some_and(|l| l.starts_with("Error:")) {
        lines.pop();
    }
    match process.stderr.recv_timeout(COMMAND_TIMEOUT) {
        Ok(caret) if caret.trim().chars().all(|c| c == '^') => Ok(lines),
        Ok(other) => Err(format!("unexpected nft output: {other}")),
        Err(_) => Err("nft session stopped answering".into()),
    }
}

/// Waits briefly for our child to exit, kills it by its handle if it
/// lingers, and reaps it.
fn stop(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Ends a session: nft exits at the end of its input.
fn close(process: Process) {
    let Process {
        mut child, stdin, ..
    } = process;
    drop(stdin);
    stop(&mut child);
}

impl Drop for NftSession {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            close(process);
        }
    }
}
