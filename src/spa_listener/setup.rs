//! Turning `knock-server --spa*` flags into a ready [`Verifier`] and
//! [`ReplayCache`]: every refusal is one line naming the file or value, so
//! the binary exits 2 with nothing started.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::spa::{
    AccessConfError, AccessConfOptions, ConfWarning, LooseMode, ReplayCache, ReplayError,
    ServerPolicy, Verifier, load_access_conf,
};

/// Default replay cache: fwknopd keeps its digest cache under /var/lib
/// too (`/var/lib/fwknop/digest.cache`); the directory is created (0700).
pub const DEFAULT_REPLAY_CACHE: &str = "/var/lib/portknock/spa-replay";
/// Largest `--spa-max-age` accepted, seconds (one day).
pub const MAX_MAX_AGE_SECS: u64 = 24 * 60 * 60;

/// The SPA options of the server, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaOptions {
    /// `--spa-access`: fwknop's access.conf.
    pub access: PathBuf,
    /// `--spa-allow-no-hmac`.
    pub allow_no_hmac: bool,
    /// `--spa-max-age`, seconds.
    pub max_age_secs: u64,
    /// `--spa-require-source-match`.
    pub require_source_match: bool,
    /// `--spa-replay-cache`.
    pub replay_cache: PathBuf,
}

/// Why SPA could not be set up.
#[derive(Debug, Error)]
pub enum SpaSetupError {
    /// The access file was refused.
    #[error("invalid --spa-access {path}: {cause}")]
    Access {
        /// The file.
        path: PathBuf,
        /// Why (in the message, so the line is complete on its own).
        cause: AccessConfError,
    },
    /// The replay cache cannot be opened or its directory made.
    #[error("cannot use --spa-replay-cache {path}: {cause}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Why (in the message, so the line is complete on its own).
        cause: ReplayError,
    },
}

/// What the server needs to run SPA, plus what to warn about.
#[derive(Debug)]
pub struct SpaSetup {
    /// The decoder.
    pub verifier: Verifier,
    /// The opened replay cache.
    pub replay: ReplayCache,
    /// Lines of the access file that have no effect.
    pub warnings: Vec<ConfWarning>,
    /// The access file's permissions are looser than 0600.
    pub loose_mode: Option<LooseMode>,
}

impl SpaSetup {
    /// Loads the access file and opens (creating if needed) the replay
    /// cache, pruned as of `now` (unix seconds).
    pub fn load(opts: &SpaOptions, now: u64) -> Result<Self, SpaSetupError> {
        let conf = load_access_conf(
            &opts.access,
            AccessConfOptions {
                allow_missing_hmac: opts.allow_no_hmac,
            },
        )
        .map_err(|cause| SpaSetupError::Access {
            path: opts.access.clone(),
            cause,
        })?;
        let replay_error = |op, source| SpaSetupError::Replay {
            path: opts.replay_cache.clone(),
            cause: ReplayError {
                path: opts.replay_cache.clone(),
                op,
                source,
            },
        };
        if let Some(dir) = opts
            .replay_cache
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            create_private_dir(dir).map_err(|e| replay_error("create its directory", e))?;
        }
        let replay =
            ReplayCache::open(&opts.replay_cache, opts.max_age_secs, now).map_err(|cause| {
                SpaSetupError::Replay {
                    path: opts.replay_cache.clone(),
                    cause,
                }
            })?;
        let policy = ServerPolicy {
            max_age_secs: opts.max_age_secs,
            require_source_match: opts.require_source_match,
            allow_nat: false,
        };
        Ok(SpaSetup {
            verifier: Verifier::new(conf.stanzas, policy),
            replay,
            warnings: conf.warnings,
            loose_mode: conf.loose_mode,
        })
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Parses `--spa-max-age`: whole seconds from 1 to one day.
pub fn parse_max_age(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) if (1..=MAX_MAX_AGE_SECS).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "invalid --spa-max-age '{text}': expected whole seconds from 1 to {MAX_MAX_AGE_SECS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_whole_seconds_in_range() {
        assert_eq!(parse_max_age("120"), Ok(120));
        for bad in ["0", "-1", "1.5", "x", "86401", ""] {
            let err = parse_max_age(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn the_replay_cache_directory_is_created_and_a_missing_access_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let access = dir.path().join("access.conf");
        std::fs::write(&access, "SOURCE ANY\nKEY k\nHMAC_KEY h\n").unwrap();
        let mut opts = SpaOptions {
            access: access.clone(),
            allow_no_hmac: false,
            max_age_secs: 120,
            require_source_match: false,
            replay_cache: dir.path().join("sub/dir/replay"),
        };
        let setup = SpaSetup::load(&opts, 1_700_000_000).unwrap();
        assert!(setup.replay.is_empty());
        assert!(dir.path().join("sub/dir").is_dir());
        opts.access = dir.path().join("missing.conf");
        let err = SpaSetup::load(&opts, 0).unwrap_err().to_string();
        assert!(err.contains("missing.conf"), "{err}");
    }
}
