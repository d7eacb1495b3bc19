//! The replay cache's file, handled as hostile ground (issue 9 item 12).
//!
//! Why each rule:
//! - the directory must be ours and writable by nobody else: whoever can
//!   write it can delete or swap the cache (and so replay packets), or plant
//!   links; a group/world-writable directory is refused with a clear error;
//! - the temporary file of a rewrite is created `O_CREAT|O_EXCL|O_NOFOLLOW`
//!   with a random suffix and mode 0600: a planted `replay.tmp` link can no
//!   longer make root overwrite another file;
//! - the cache itself is opened `O_NOFOLLOW` and must be a regular file of
//!   at most [`MAX_FILE_LEN`] bytes: a FIFO, a device (`/dev/zero`) or a
//!   file grown by hand is refused at start-up instead of hanging or
//!   allocating without bound. Refusing (rather than truncating) is the
//!   fail-closed choice: a truncated cache forgets used packets;
//! - the file's identity (device, inode) is remembered, so the cache notices
//!   when the file was deleted or replaced under it ([`CacheFile::is_ours`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::b64;
use super::replay::{ReplayDigest, ReplayError};

/// First line of a cache file.
pub(super) const HEADER: &str =
    "# portknock SPA replay cache v1: <base64 sha256 of packet> <packet unix time>";
/// Live entries the cache holds at most; beyond, new packets are refused
/// (fail closed). 500 000 is over 4 000 accepted packets/s for the default
/// 120 s window.
pub const MAX_ENTRIES: usize = 500_000;
/// Longest line written: 43 base64 chars, a space, a u64, a newline.
const MAX_LINE_LEN: u64 = 43 + 1 + 20 + 1;
/// Largest cache file read at start-up: a compaction keeps the file under
/// two lines per live entry, so a larger file was not written by us.
pub const MAX_FILE_LEN: u64 = HEADER.len() as u64 + 1 + (2 * MAX_ENTRIES as u64 + 1) * MAX_LINE_LEN;

/// The open cache file: an append handle and what it was when we made it.
#[derive(Debug)]
pub(super) struct CacheFile {
    pub(super) path: PathBuf,
    handle: File,
    identity: (u64, u64),
    /// Lines (entries) in the file, for the compaction trigger.
    pub(super) lines: usize,
    /// A write or fsync failed (a full disk, an I/O error): the file may
    /// end in a torn line, which would swallow the next line appended
    /// after it, and after a failed fsync the kernel's copy cannot be
    /// trusted. The next commit rewrites the file from memory instead.
    pub(super) torn: bool,
}

pub(super) fn err(path: &Path, op: &'static str, source: io::Error) -> ReplayError {
    ReplayError {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn refused(path: &Path, op: &'static str, why: String) -> ReplayError {
    err(path, op, io::Error::other(why))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses a cache directory that is not ours or that others may write.
pub(super) fn check_dir(path: &Path) -> Result<(), ReplayError> {
    let dir = parent(path);
    let op = "use its directory";
    let meta = fs::metadata(dir).map_err(|e| {
        let why = format!("{}: {e}", dir.display());
        err(path, op, io::Error::new(e.kind(), why))
    })?;
    let shown = dir.display();
    if !meta.is_dir() {
        return Err(refused(path, op, format!("{shown} is not a directory")));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refused(
            path,
            op,
            format!(
                "{shown} is writable by group or others (mode {mode:04o}): they could delete or swap the cache and replay packets; use a private directory (chmod 700 {shown})"
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(refused(
            path,
            op,
            format!(
                "{shown} is owned by uid {}, not by us (uid {uid}): its owner could swap the cache",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Reads the live-or-not entries of the cache at `path` (none if it does
/// not exist), refusing links, non-regular files and oversize files.
pub(super) fn load(path: &Path) -> Result<HashMap<ReplayDigest, u64>, ReplayError> {
    let mut entries = HashMap::new();
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(entries),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(path, "open", "it is a symbolic link".into()));
        }
        Err(e) => return Err(err(path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| err(path, "stat", e))?;
    if !meta.is_file() {
        return Err(refused(path, "open", "not a regular file".into()));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(refused(
            path,
            "load",
            format!(
                "it is {} bytes, more than a cache of {MAX_ENTRIES} entries can be ({MAX_FILE_LEN}): it was not written by portknock; move it away to start with an empty cache",
                meta.len()
            ),
        ));
    }
    // The size was checked on this very file; `take` also bounds a file
    // that grows while we read it.
    for line in BufReader::new(file.take(MAX_FILE_LEN)).lines() {
        let line = line.map_err(|e| err(path, "read", e))?;
        if let Some((d, t)) = parse_line(&line) {
            entries.insert(d, t);
        }
    }
    Ok(entries)
}

/// One cache line.
pub(super) fn line(digest: &ReplayDigest, packet_time: u64) -> String {
    format!("{} {packet_time}\n", b64::encode(digest))
}

fn parse_line(line: &str) -> Option<(ReplayDigest, u64)> {
    let (d, t) = line.split_once(' ')?;
    let digest: ReplayDigest = b64::decode(d.as_bytes())?.try_into().ok()?;
    Some((digest, t.trim().parse().ok()?))
}

/// Writes `entries` to a fresh private temporary file, fsyncs it, renames
/// it over `path`, fsyncs the directory, and returns the new file.
pub(super) fn rewrite(
    path: &Path,
    entries: &HashMap<ReplayDigest, u64>,
) -> Result<CacheFile, ReplayError> {
    let mut text = String::with_capacity(HEADER.len() + 1 + entries.len() * 56);
    text.push_str(HEADER);
    text.push('\n');
    for (d, t) in entries {
        text.push_str(&line(d, *t));
    }
    let (tmp, mut f) = create_temp(path)?;
    let written = f
        .write_all(text.as_bytes())
        .map_err(|e| err(&tmp, "write", e))
        .and_then(|()| f.sync_all().map_err(|e| err(&tmp, "fsync", e)))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| err(path, "rename temp file onto", e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    drop(f);
    let dir = parent(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, "fsync directory", e))?;
    let handle = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| err(path, "reopen", e))?;
    let meta = handle.metadata().map_err(|e| err(path, "stat", e))?;
    Ok(CacheFile {
        path: path.to_path_buf(),
        handle,
        identity: (meta.dev(), meta.ino()),
        lines: entries.len(),
        torn: false,
    })
}

/// `<path>.tmp.<16 random hex>`, created exclusively, never through a link.
fn create_temp(path: &Path) -> Result<(PathBuf, File), ReplayError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| {
        err(
            path,
            "draw a temp name for",
            io::Error::other(e.to_string()),
        )
    })?;
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp.");
    name.push(
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    let tmp = PathBuf::from(name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| err(&tmp, "create", e))?;
    Ok((tmp, file))
}

impl CacheFile {
    /// Appends `text` and fsyncs: one write and one fsync per call. On
    /// failure the file is marked [`CacheFile::torn`].
    pub(super) fn append(&mut self, text: &str, lines: usize) -> Result<(), ReplayError> {
        let written = match self.handle.write_all(text.as_bytes()) {
            Ok(()) => self.handle.sync_data().map_err(|e| (e, "fsync")),
            Err(e) => Err((e, "append to")),
        };
        if let Err((e, op)) = written {
            self.torn = true;
            return Err(err(&self.path, op, e));
        }
        self.lines += lines;
        Ok(())
    }

    /// Whether `path` still names the file we write (not deleted, not
    /// replaced, not turned into a link).
    pub(super) fn is_ours(&self) -> bool {
        let linked = self.handle.metadata().is_ok_and(|m| m.nlink() > 0);
        let same = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == self.identity);
        linked && same
    }
}
