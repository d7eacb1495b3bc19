//! Reading a file that holds keys (`access.conf`, `~/.fwknoprc`) the way
//! fwknop does: its permissions are checked on the opened file (no race
//! between check and read).
//!
//! Why: a key file anyone can read gives its keys away; one anyone can
//! write lets them add their own stanza. fwknop warns when such a file is
//! not mode 0600 or not owned by the user (`verify_file_perms_ownership`);
//! we warn likewise and, beyond fwknop, refuse a world-writable file
//! outright (issue 9 item 13). Only regular files up to [`MAX_KEY_FILE_LEN`]
//! are read, so `/dev/zero` or a FIFO given as a path is an error, not a hang.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest key file read, bytes: far above any real access.conf.
pub const MAX_KEY_FILE_LEN: u64 = 1024 * 1024;

/// A key file readable or writable by others, or owned by someone else:
/// worth a warning, as fwknop gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseMode {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner is not the user running us.
    pub foreign_owner: bool,
}

impl fmt::Display for LooseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        if self.mode & 0o077 != 0 {
            write!(
                f,
                "{path} has mode {:04o}: group/others may read its keys (fwknop expects 0600; run chmod 600 {path})",
                self.mode
            )?;
            if self.foreign_owner {
                f.write_str("; ")?;
            }
        }
        if self.foreign_owner {
            write!(f, "{path} is not owned by the user running this program")?;
        }
        Ok(())
    }
}

/// A key file that is refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Anyone on the host may change the keys.
    #[error(
        "{} is writable by others (mode {mode:04o}): anyone on this host could change its keys; refusing it (run chmod 600 {})",
        path.display(), path.display()
    )]
    WorldWritable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory, device, FIFO or socket.
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// Larger than [`MAX_KEY_FILE_LEN`].
    #[error("{} is larger than {MAX_KEY_FILE_LEN} bytes: not a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// What [`read`] found: the text, and a warning if the mode is loose.
pub(crate) struct KeyFileText {
    pub(crate) text: String,
    pub(crate) loose: Option<LooseMode>,
}

/// Why [`read`] failed: the OS, or the file itself.
pub(crate) enum ReadFailure {
    Io(io::Error),
    Refused(KeyFileError),
}

/// Opens `path`, checks the opened file, reads it as UTF-8.
pub(crate) fn read(path: &Path) -> Result<KeyFileText, ReadFailure> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadFailure::Io)?;
    let meta = file.metadata().map_err(ReadFailure::Io)?;
    let loose = check(path, &meta, effective_uid()).map_err(ReadFailure::Refused)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(ReadFailure::Io)?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(ReadFailure::Refused(KeyFileError::TooLarge {
            path: path.to_path_buf(),
        }));
    }
    Ok(KeyFileText { text, loose })
}

/// The verdict on a key file's metadata, for a process running as `uid`.
fn check(
    path: &Path,
    meta: &std::fs::Metadata,
    uid: u32,
) -> Result<Option<LooseMode>, KeyFileError> {
    let path_buf = || path.to_path_buf();
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular { path: path_buf() });
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::TooLarge { path: path_buf() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(KeyFileError::WorldWritable {
            path: path_buf(),
            mode,
        });
    }
    let foreign_owner = meta.uid() != uid;
    Ok((mode & 0o077 != 0 || foreign_owner).then(|| LooseMode {
        path: path_buf(),
        mode,
        foreign_owner,
    }))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("f{mode:o}"));
        std::fs::write(&path, "SOURCE ANY\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn outcome(path: &Path) -> Result<Option<LooseMode>, String> {
        match read(path) {
            Ok(t) => Ok(t.loose),
            Err(ReadFailure::Refused(e)) => Err(e.to_string()),
            Err(ReadFailure::Io(e)) => Err(format!("io: {e}")),
        }
    }

    #[test]
    fn private_files_pass_loose_ones_warn_world_writable_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            assert_eq!(outcome(&with_mode(dir.path(), mode)), Ok(None));
        }
        for mode in [0o640, 0o644, 0o660, 0o604] {
            let path = with_mode(dir.path(), mode);
            let loose = outcome(&path).unwrap().expect("a warning");
            assert_eq!(loose.mode, mode);
            let text = loose.to_string();
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        for mode in [0o666, 0o602, 0o777] {
            let path = with_mode(dir.path(), mode);
            let err = outcome(&path).unwrap_err();
            assert!(err.contains("writable by others"), "{err}");
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn another_owner_warns() {
        let dir = tempfile::tempdir().unwrap();
        let path = with_mode(dir.path(), 0o600);
        let meta = std::fs::metadata(&path).unwrap();
        let loose = check(&path, &meta, meta.uid() + 1).unwrap().unwrap();
        assert!(loose.foreign_owner);
        assert!(loose.to_string().contains("not owned"), "{loose}");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for path in [Path::new("/dev/zero"), dir.path()] {
            let err = outcome(path).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
    }
}
