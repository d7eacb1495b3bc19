//! A rotating door's key file: the secret the server and its clients
//! derive the ports from.
//!
//! Format: the key as hex on one line (`knock-client --keygen FILE` writes
//! 32 random bytes). The file is checked on the opened descriptor (the SPA
//! key files' reader, `spa/key_file.rs`): not a regular file, larger than a
//! key file can be, or writable by others is refused there; here, beyond
//! fwknop's warning, a file group or others may **read** is refused too
//! (whoever reads the key knows every future sequence), and so is a key
//! shorter than [`MIN_KEY_LEN`] bytes.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::spa::key_file::{self, KeyFileError, ReadFailure};

/// Bytes of key `--keygen` writes (the HMAC-SHA256 block's natural size).
pub const KEY_LEN: usize = 32;
/// Shortest key accepted: 128 bits, so the key is never the weak part
/// (a sequence carries at most `16 * 16` bits, usually about 61).
pub const MIN_KEY_LEN: usize = 16;

/// A door's secret key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DoorKey(Vec<u8>);

impl fmt::Debug for DoorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DoorKey({} bytes)", self.0.len())
    }
}

/// A key file that cannot be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file cannot be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Refused by the shared key-file checks (writable by others, not a
    /// regular file, too large).
    #[error(transparent)]
    Refused(#[from] KeyFileError),
    /// Group or others may read it.
    #[error(
        "key file {} has mode {mode:04o}: group/others may read the door's key; refusing it (run chmod 600 {})",
        path.display(), path.display()
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not hex.
    #[error("key file {} does not hold a hex key on one line (write one with knock-client --keygen FILE)", path.display())]
    NotHex {
        /// The file.
        path: PathBuf,
    },
    /// Too short.
    #[error("key file {} holds a {len}-byte key; at least {MIN_KEY_LEN} bytes are required (knock-client --keygen writes {KEY_LEN})", path.display())]
    Short {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        len: usize,
    },
    /// `--keygen` could not write the file (it exists, or no randomness).
    #[error("cannot write key file {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl DoorKey {
    /// A key from bytes (at least [`MIN_KEY_LEN`]; for tests and tools).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_KEY_LEN).then(|| Self(bytes.to_vec()))
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Loads and checks the key file at `path` (see the module doc).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file = key_file::read(path).map_err(|failure| match failure {
            ReadFailure::Io(source) => KeyError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadFailure::Refused(refused) => KeyError::Refused(refused),
        })?;
        if let Some(loose) = file.loose.filter(|l| l.mode & 0o077 != 0) {
            return Err(KeyError::Readable {
                path: path.to_path_buf(),
                mode: loose.mode,
            });
        }
        let bytes = parse_hex(file.text.trim()).ok_or_else(|| KeyError::NotHex {
            path: path.to_path_buf(),
        })?;
        Self::from_bytes(&bytes).ok_or(KeyError::Short {
            path: path.to_path_buf(),
            len: bytes.len(),
        })
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes a new random key of [`KEY_LEN`] bytes to `path`, mode 0600,
/// refusing to overwrite an existing file.
pub fn write_new_key(path: &Path) -> Result<(), KeyError> {
    let fail = |reason: String| KeyError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| fail(format!("no randomness: {e}")))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(e.to_string()))
}
