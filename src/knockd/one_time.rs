//! One-time sequence files (knockd's `One_Time_Sequences`): one sequence a
//! line, in the `Sequence` format; lines whose first non-blank character is
//! `#` are used or comments. A success consumes the current line by
//! overwriting its first byte with `#`, as knockd does (its man page
//! advises a leading space on each line so no digit is lost), and the next
//! unused line becomes the sequence; none left disables the door.
//!
//! Crash safety: the mark is one byte written in place and `fsync`ed
//! *before* the door's command runs, so after a crash at any point a line
//! that opened the door is marked, and a line is never lost unused (the
//! file is never rewritten, so no other line can be damaged). knockd finds
//! the line again by comparing half of the sequence's bytes (research
//! note §2.6 item 3); here the file is scanned again for the first unused
//! line, and consuming checks it is still the one the door used.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::parse::parse_sequence;
use crate::config::KnockPort;

/// A one-time sequence file that cannot be used.
#[derive(Debug, Error)]
pub enum OneTimeError {
    /// The file cannot be read or written.
    #[error("one-time sequence file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the file is not a sequence.
    #[error("one-time sequence file {}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file changed under the daemon: its first unused line is not the
    /// sequence that was knocked.
    #[error("one-time sequence file {}: its first unused line is no longer the sequence in use (edited while running?)", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// An unused line: its byte offset, 1-based number and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unused {
    offset: u64,
    line: usize,
    sequence: Vec<KnockPort>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OneTimeError + '_ {
    move |source| OneTimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every unused line of the file, checked (a line that is not a sequence
/// is refused with its number).
fn unused_lines(path: &Path) -> Result<Vec<Unused>, OneTimeError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut offset = 0u64;
    let mut found = Vec::new();
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += raw.len() as u64;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let sequence = parse_sequence(trimmed).map_err(|message| OneTimeError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            message,
        })?;
        if sequence.is_empty() {
            continue;
        }
        found.push(Unused {
            offset: start,
            line: index + 1,
            sequence,
        });
    }
    Ok(found)
}

/// The first unused sequence of the file (None: all used), after checking
/// every unused line.
pub fn first_unused(path: &Path) -> Result<Option<Vec<KnockPort>>, OneTimeError> {
    Ok(unused_lines(path)?.into_iter().next().map(|u| u.sequence))
}

/// Every unused sequence of the file, in order (the knock sockets must
/// hear all of them: each becomes the sequence in turn).
pub fn all_unused(path: &Path) -> Result<Vec<Vec<KnockPort>>, OneTimeError> {
    Ok(unused_lines(path)?
        .into_iter()
        .map(|u| u.sequence)
        .collect())
}

/// Marks the first unused line, which must be `used`, with `#` and makes
/// the mark durable (fsync) before returning the next unused sequence
/// (None: the file is exhausted).
pub fn consume(path: &Path, used: &[KnockPort]) -> Result<Option<Vec<KnockPort>>, OneTimeError> {
    let lines = unused_lines(path)?;
    let Some(first) = lines.first() else {
        return Err(OneTimeError::Changed {
            path: path.to_path_buf(),
        });
    };
    if first.sequence != used {
        return Err(OneTimeError::Changed {
            path: path.to_path_buf(),
        });
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.seek(SeekFrom::Start(first.offset)).map_err(io(path))?;
    file.write_all(b"#").map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(lines.into_iter().nth(1).map(|u| u.sequence))
}

#[cfg(test)]
mod tests;
