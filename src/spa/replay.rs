//! The replay cache: every packet that authenticated and decoded, keyed by
//! SHA-256 of its text, so the same packet never opens the firewall twice.
//!
//! fwknopd keeps such a cache in `digest.cache`; ours is an append-only file
//! of `<b64 digest> <packet timestamp>` lines, fsync'd before
//! [`ReplayStore::insert`] returns, so a grant is never reported for a packet
//! the cache could forget in a crash (SIGKILL included). Entries whose packet
//! timestamp is older than the age window are pruned: the timestamp check
//! rejects those packets anyway. Pruning rewrites the file atomically
//! (temp file, fsync, rename, fsync of the directory).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::b64;

/// A replay-cache key: SHA-256 of the packet text exactly as received.
pub type ReplayDigest = [u8; 32];

/// First line of a cache file.
const HEADER: &str =
    "# portknock SPA replay cache v1: <base64 sha256 of packet> <packet unix time>";
/// File lines (live + dead) below which an insert never triggers compaction.
const MIN_COMPACT_LINES: usize = 1024;

/// Where the decoder records and looks up packets it has seen.
pub trait ReplayStore {
    /// Whether `digest` was recorded.
    fn contains(&self, digest: &ReplayDigest) -> bool;
    /// Records `digest` for a packet stamped `packet_time`, durably, before
    /// returning. An error makes the decoder refuse the packet (fail closed).
    fn insert(
        &mut self,
        digest: ReplayDigest,
        packet_time: u64,
        now: u64,
    ) -> Result<(), ReplayError>;
}

/// A replay-cache file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("replay cache {path}: cannot {op}: {source}")]
pub struct ReplayError {
    /// The file.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// A bounded replay cache, in memory or backed by a file.
#[derive(Debug)]
pub struct ReplayCache {
    entries: HashMap<ReplayDigest, u64>,
    max_age_secs: u64,
    file: Option<CacheFile>,
    /// Size (file lines, or entries in memory) at which the next insert prunes.
    compact_at: usize,
}

#[derive(Debug)]
struct CacheFile {
    path: PathBuf,
    handle: File,
    lines: usize,
}

impl ReplayCache {
    /// A cache that lives only as long as the process (tests, `--no-persist`).
    pub fn in_memory(max_age_secs: u64) -> Self {
        ReplayCache {
            entries: HashMap::new(),
            max_age_secs,
            file: None,
            compact_at: MIN_COMPACT_LINES,
        }
    }

    /// Opens (or creates) the cache file at `path`, loads its live entries,
    /// and rewrites it without the expired ones. Unparsable lines (a line
    /// torn by a crash) are skipped.
    pub fn open(path: &Path, max_age_secs: u64, now: u64) -> Result<Self, ReplayError> {
        let mut entries = HashMap::new();
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(|e| err(path, "read", e))?;
                    if let Some((d, t)) = parse_line(&line) {
                        entries.insert(d, t);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(path, "open", e)),
        }
        let mut cache = ReplayCache {
            entries,
            max_age_secs,
            file: None,
            compact_at: MIN_COMPACT_LINES,
        };
        cache.file = Some(CacheFile {
            path: path.to_path_buf(),
            handle: placeholder(path)?,
            lines: 0,
        });
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
    /// a file-backed cache, rewrites the file atomically. Returns how many
    /// entries were dropped.
    pub fn prune(&mut self, now: u64) -> Result<usize, ReplayError> {
        let before = self.entries.len();
        let max_age = self.max_age_secs;
        self.entries.retain(|_, t| t.saturating_add(max_age) >= now);
        if let Some(file) = &mut self.file {
            file.handle = rewrite(&file.path, &self.entries)?;
            file.lines = self.entries.len();
        }
        self.compact_at = MIN_COMPACT_LINES.max(2 * self.entries.len());
        Ok(before - self.entries.len())
    }
}

impl ReplayStore for ReplayCache {
    fn contains(&self, digest: &ReplayDigest) -> bool {
        self.entries.contains_key(digest)
    }

    fn insert(
        &mut self,
        digest: ReplayDigest,
        packet_time: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        if let Some(file) = &mut self.file {
            let line = format!("{} {packet_time}\n", b64::encode(&digest));
            file.handle
                .write_all(line.as_bytes())
                .map_err(|e| err(&file.path, "append to", e))?;
            file.handle
                .sync_data()
                .map_err(|e| err(&file.path, "fsync", e))?;
            file.lines += 1;
        }
        self.entries.insert(digest, packet_time);
        let lines = self.file.as_ref().map_or(self.entries.len(), |f| f.lines);
        if lines >= self.compact_at {
            self.prune(now)?;
        }
        Ok(())
    }
}

fn err(path: &Path, op: &'static str, source: io::Error) -> ReplayError {
    ReplayError {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn parse_line(line: &str) -> Option<(ReplayDigest, u64)> {
    let (d, t) = line.split_once(' ')?;
    let digest: ReplayDigest = b64::decode(d.as_bytes())?.try_into().ok()?;
    Some((digest, t.trim().parse().ok()?))
}

/// A handle replaced by the first rewrite; opening it checks the directory.
fn placeholder(path: &Path) -> Result<File, ReplayError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| err(path, "create", e))
}

/// Writes `entries` to a temp file, fsyncs, renames over `path`, fsyncs the
/// directory, and returns an append handle on the new file.
fn rewrite(path: &Path, entries: &HashMap<ReplayDigest, u64>) -> Result<File, ReplayError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut text = String::with_capacity(HEADER.len() + 1 + entries.len() * 56);
    text.push_str(HEADER);
    text.push('\n');
    for (d, t) in entries {
        text.push_str(&format!("{} {t}\n", b64::encode(d)));
    }
    let mut f = File::create(&tmp).map_err(|e| err(&tmp, "create", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| err(&tmp, "write", e))?;
    f.sync_all().map_err(|e| err(&tmp, "fsync", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| err(path, "rename temp file onto", e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, "fsync directory", e))?;
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| err(path, "reopen", e))
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
