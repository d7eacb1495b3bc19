//! The used-sequence memory: which rotating sequences (door, period) have
//! already opened their door, so a replay is refused for the rest of the
//! sequence's life, from any address, even after a restart.
//!
//! Bounded: a sequence lives while its period is one the server accepts
//! (`c-1`, `c`, `c+1`), so records of older periods are dropped whenever
//! one is added, and at most [`MAX_PER_DOOR`] are kept per door and
//! [`MAX_DOORS`] doors. The state file is a few lines of `door period`,
//! written to a temporary file in the same directory, synced, then renamed
//! over the old one: a crash leaves the old file or the new, never half.
//! A missing file is an empty memory (first start); an unreadable one is an
//! error (starting with an empty memory would re-open replays).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::SKEW_PERIODS;

/// Most periods remembered per door (3 are live at a time).
pub const MAX_PER_DOOR: usize = 8;
/// Most doors remembered.
pub const MAX_DOORS: usize = 1024;

/// The state file could not be read or written.
#[derive(Debug, Error)]
pub enum UsedError {
    /// Reading or writing failed.
    #[error("used-sequence state file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `door period`.
    #[error("used-sequence state file {}, line {line}: not 'door period'", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
}

/// Used sequences per door name, each a set of periods.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsedSequences {
    used: BTreeMap<String, Vec<u64>>,
    path: Option<PathBuf>,
}

impl UsedSequences {
    /// An empty memory that is never saved (tests, the seed's flags).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The memory kept in `path` (empty if the file does not exist yet).
    pub fn load(path: &Path) -> Result<Self, UsedError> {
        let io = |source| UsedError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut used = Self {
            used: BTreeMap::new(),
            path: Some(path.to_path_buf()),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(used),
            Err(err) => return Err(io(err)),
        };
        for (n, line) in text.lines().enumerate() {
            let corrupt = || UsedError::Corrupt {
                path: path.to_path_buf(),
                line: n + 1,
            };
            if line.trim().is_empty() {
                continue;
            }
            let (door, period) = line.trim().rsplit_once(' ').ok_or_else(corrupt)?;
            let period = period.parse().map_err(|_| corrupt())?;
            used.insert(door, period);
        }
        Ok(used)
    }

    /// Whether `door`'s sequence of `period` has been used.
    pub fn is_used(&self, door: &str, period: u64) -> bool {
        self.used.get(door).is_some_and(|p| p.contains(&period))
    }

    /// Records `door`'s sequence of `period` as used, forgetting periods
    /// no longer accepted at period `now` (before `now - 1`), and saves.
    pub fn mark(&mut self, door: &str, period: u64, now: u64) -> Result<(), UsedError> {
        let oldest = now.saturating_sub(SKEW_PERIODS);
        for periods in self.used.values_mut() {
            periods.retain(|&p| p >= oldest);
        }
        self.used.retain(|_, p| !p.is_empty());
        self.insert(door, period);
        self.save()
    }

    fn insert(&mut self, door: &str, period: u64) {
        if !self.used.contains_key(door) && self.used.len() >= MAX_DOORS {
            return;
        }
        let periods = self.used.entry(door.to_string()).or_default();
        if !periods.contains(&period) {
            periods.push(period);
            periods.sort_unstable();
            if periods.len() > MAX_PER_DOOR {
                periods.remove(0);
            }
        }
    }

    /// Writes the memory to its file atomically (no file: nothing to do).
    pub fn save(&self) -> Result<(), UsedError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| UsedError::Io {
            path: path.clone(),
            source,
        };
        let mut text = String::new();
        for (door, periods) in &self.used {
            for p in periods {
                text.push_str(&format!("{door} {p}\n"));
            }
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
