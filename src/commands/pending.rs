//! Pending stop commands, on disk.
//!
//! knockd keeps a door's stop command in a child that sleeps
//! `Cmd_Timeout` seconds; kill that child (Debian's unit restarts with
//! `KillMode=mixed`, a crash, an OOM kill) and the door stays open for
//! good. Here the daemon's timer owns each stop, and every pending stop is
//! also written to a small state file, so a daemon that starts again runs
//! the stops that fell due while it was down and schedules the rest.
//!
//! The file is replaced atomically (write a temporary file beside it,
//! fsync, rename over, fsync the directory): after a crash it holds either
//! the old or the new list, never a torn one. It is written before a start
//! command runs, so a crash while the door opens still closes it later.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Name of the state file inside the state directory.
pub const FILE_NAME: &str = "knockd-pending-stops.toml";

/// One stop command that must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStop {
    /// The door's name (for the log).
    pub door: String,
    /// The knocker's address (for the log and to find the entry again).
    pub ip: String,
    /// When it falls due, milliseconds since the Unix epoch.
    pub due_ms: u64,
    /// The program and arguments, `%IP%` already replaced.
    pub argv: Vec<String>,
}

impl PendingStop {
    /// How long from `now` until it falls due (zero if overdue).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.due_ms.saturating_sub(unix_ms(now)))
    }
}

/// Milliseconds since the Unix epoch of `at` (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    #[serde(default)]
    stop: Vec<PendingStop>,
}

/// The state file could not be read or written.
#[derive(Debug, Error)]
pub enum PendingError {
    /// Reading, writing, syncing or renaming failed.
    #[error("pending stops file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not what this program writes.
    #[error("pending stops file {}: not readable as pending stops: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
}

/// The state file of pending stops in a state directory.
#[derive(Debug, Clone)]
pub struct PendingFile {
    path: PathBuf,
}

impl PendingFile {
    /// The file in `dir` (created on first save if missing).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE_NAME),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> PendingError + '_ {
        |source| PendingError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The stops recorded (none if the file does not exist).
    pub fn load(&self) -> Result<Vec<PendingStop>, PendingError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(self.io()(err)),
        };
        let contents: Contents = toml::from_str(&text).map_err(|err| PendingError::Corrupt {
            path: self.path.clone(),
            message: err.message().to_string(),
        })?;
        Ok(contents.stop)
    }

    /// Replaces the file's list with `stops`, atomically and durably.
    pub fn save(&self, stops: &[PendingStop]) -> Result<(), PendingError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(self.io())?;
        let text = toml::to_string(&Contents {
            stop: stops.to_vec(),
        })
        .expect("pending stops serialize");
        let tmp = self.path.with_extension("toml.tmp");
        let mut file = File::create(&tmp).map_err(self.io())?;
        file.write_all(text.as_bytes()).map_err(self.io())?;
        file.sync_all().map_err(self.io())?;
        fs::rename(&tmp, &self.path).map_err(self.io())?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
