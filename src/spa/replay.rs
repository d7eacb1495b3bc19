//! The replay cache: every packet that authenticated and decoded, keyed by
//! SHA-256 of its text, so the same packet never opens the firewall twice.
//! (The outer base64 is decoded canonically only, so one packet has one
//! text: see `b64.rs`.)
//!
//! fwknopd keeps such a cache in `digest.cache`; ours is an append-only file
//! of `<b64 digest> <packet timestamp>` lines. Records are made in memory
//! ([`ReplayStore::record`]) and made durable in groups
//! ([`ReplayStore::commit`]: one write, one fsync): the listener commits a
//! batch before any grant of that batch is carried out, so a grant is never
//! made for a packet the cache could forget in a crash (SIGKILL included).
//! Entries whose packet timestamp is older than the age window are pruned:
//! the timestamp check rejects those packets anyway. Pruning rewrites the
//! file atomically (see `replay_file.rs` for how the file is protected).
//!
//! A failed commit (a full disk, an I/O error) refuses its batch and may
//! leave a torn line at the end of the file, which would swallow the next
//! line appended (that packet would open again after a restart): so the
//! next commit rewrites the whole file from memory instead of appending,
//! and refuses its batch too until that succeeds (`tests/knock/faults.rs`).
//!
//! If the file is deleted or replaced under us, the next commit (or
//! [`ReplayCache::check_file`], which the listener calls every second) logs
//! at error level and rewrites it from memory, which holds every live
//! entry: a restart after that still refuses used packets. The cache holds
//! at most [`MAX_ENTRIES`] live entries; beyond, recording fails and the
//! packet is refused (fail closed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::replay_file::{self, CacheFile};
pub use super::replay_file::{MAX_ENTRIES, MAX_FILE_LEN};

/// A replay-cache key: SHA-256 of the packet text exactly as received.
pub type ReplayDigest = [u8; 32];

/// File lines (live + dead) below which an insert never triggers compaction.
pub(super) const MIN_COMPACT_LINES: usize = 1024;

/// Where the decoder records and looks up packets it has seen.
pub trait ReplayStore {
    /// Whether `digest` was recorded (committed or not).
    fn contains(&self, digest: &ReplayDigest) -> bool;
    /// Records `digest` for a packet stamped `packet_time`; durable only
    /// after the next [`ReplayStore::commit`]. An error makes the decoder
    /// refuse the packet (fail closed).
    fn record(&mut self, digest: ReplayDigest, packet_time: u64) -> Result<(), ReplayError>;
    /// Makes every record since the last commit durable. An error means
    /// those packets must not open anything.
    fn commit(&mut self, now: u64) -> Result<(), ReplayError>;
    /// [`ReplayStore::record`] then [`ReplayStore::commit`].
    fn insert(
        &mut self,
        digest: ReplayDigest,
        packet_time: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        self.record(digest, packet_time)?;
        self.commit(now)
    }
}

/// A replay-cache file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("replay cache {path}: cannot {op}: {source}")]
pub struct ReplayError {
    /// The file.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The OS error, or why the file is refused.
    #[source]
    pub source: std::io::Error,
}

/// A bounded replay cache, in memory or backed by a file.
#[derive(Debug)]
pub struct ReplayCache {
    entries: HashMap<ReplayDigest, u64>,
    max_age_secs: u64,
    file: Option<CacheFile>,
    /// Lines recorded but not yet committed, and how many.
    pending: (String, usize),
    /// Size (file lines, or entries in memory) at which the next commit prunes.
    compact_at: usize,
}

impl ReplayCache {
    /// A cache that lives only as long as the process (tests, `--no-persist`).
    pub fn in_memory(max_age_secs: u64) -> Self {
        ReplayCache {
            entries: HashMap::new(),
            max_age_secs,
            file: None,
            pending: (String::new(), 0),
            compact_at: MIN_COMPACT_LINES,
        }
    }

    /// Opens (or creates) the cache file at `path`, loads its live entries,
    /// and rewrites it without the expired ones. Unparsable lines (a line
    /// torn by a crash) are skipped. Refused: a directory others may write,
    /// a link, a non-regular file, a file larger than [`MAX_FILE_LEN`].
    pub fn open(path: &Path, max_age_secs: u64, now: u64) -> Result<Self, ReplayError> {
        replay_file::check_dir(path)?;
        let entries = replay_file::load(path)?;
        let mut cache = ReplayCache {
            entries,
            ..ReplayCache::in_memory(max_age_secs)
        };
        cache.file = Some(replay_file::rewrite(path, &HashMap::new())?);
        cache.prune(now)?;
        Ok(cache)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries whose packets are past the age window at `now` and, for
    /// a file-backed cache, rewrites the file atomically (pending records
    /// included). Returns how many entries were dropped.
    pub fn prune(&mut self, now: u64) -> Result<usize, ReplayError> {
        let before = self.entries.len();
        let max_age = self.max_age_secs;
        self.entries.retain(|_, t| t.saturating_add(max_age) >= now);
        if let Some(file) = &mut self.file {
            *file = replay_file::rewrite(&file.path, &self.entries)?;
        }
        self.pending = (String::new(), 0);
        self.compact_at = MIN_COMPACT_LINES.max(2 * self.entries.len());
        Ok(before - self.entries.len())
    }

    /// Whether the file is still the one we write; if it was deleted or
    /// replaced, logs at error level and rewrites it from memory. Returns
    /// whether it had to be rewritten. A no-op in memory.
    pub fn check_file(&mut self) -> Result<bool, ReplayError> {
        let Some(file) = &mut self.file else {
            return Ok(false);
        };
        if file.is_ours() {
            return Ok(false);
        }
        tracing::error!(
            path = %file.path.display(),
            entries = self.entries.len(),
            "spa replay cache file was deleted or replaced: rewriting it from memory"
        );
        *file = replay_file::rewrite(&file.path, &self.entries)?;
        self.pending = (String::new(), 0);
        Ok(true)
    }
}

impl ReplayStore for ReplayCache {
    fn contains(&self, digest: &ReplayDigest) -> bool {
        self.entries.contains_key(digest)
    }

    fn record(&mut self, digest: ReplayDigest, packet_time: u64) -> Result<(), ReplayError> {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&digest) {
            let path = self
                .file
                .as_ref()
                .map(|f| f.path.clone())
                .unwrap_or_default();
            return Err(ReplayError {
                path,
                op: "record a packet in",
                source: std::io::Error::other(format!(
                    "it holds {MAX_ENTRIES} live entries, its cap: refusing packets until old ones expire"
                )),
            });
        }
        if self.file.is_some() {
            self.pending
                .0
                .push_str(&replay_file::line(&digest, packet_time));
            self.pending.1 += 1;
        }
        self.entries.insert(digest, packet_time);
        Ok(())
    }

    fn commit(&mut self, now: u64) -> Result<(), ReplayError> {
        if let Some(file) = &mut self.file {
            if self.pending.1 == 0 {
                return Ok(());
            }
            if !file.is_ours() {
                // Rewrites every entry, the pending ones included.
                self.check_file()?;
            } else if file.torn {
                // A failed append may have left a torn line that would
                // swallow this batch's first record: rewrite every entry
                // (the pending ones and a refused batch's included).
                *file = replay_file::rewrite(&file.path, &self.entries)?;
                self.pending = (String::new(), 0);
                tracing::info!(
                    path = %file.path.display(),
                    entries = self.entries.len(),
                    "spa replay cache rewritten after a failed write"
                );
            } else {
                let (text, lines) = std::mem::take(&mut self.pending);
                file.append(&text, lines)?;
            }
        }
        let lines = self.file.as_ref().map_or(self.entries.len(), |f| f.lines);
        if lines >= self.compact_at {
            self.prune(now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
