//! fwknopd's `access.conf`: stanzas that each start at a `SOURCE` line and
//! hold the keys and policy for the senders they match.
//!
//! An existing fwknop user can point the server at their file as it is.
//! Keys portknock does not know are errors (a typo such as `OPEN_PROTS` must
//! not silently widen access); fwknop keys for features portknock refuses
//! anyway (GnuPG, command execution, NAT tuning) are warnings; fwknop keys
//! that would narrow access but are not implemented are errors. A stanza
//! without an HMAC key is refused unless [`AccessConfOptions::allow_missing_hmac`].

use std::path::{Path, PathBuf};

use super::b64;
use super::digest::DigestType;
use super::key_file::{self, KeyFileError, LooseMode, ReadFailure};
use super::keys::{EncryptionMode, KeyError, SpaKeys};
use super::message::PortSpec;
use super::source::SourceSpec;

/// fwknopd's default `FW_ACCESS_TIMEOUT`, seconds.
pub const DEFAULT_FW_ACCESS_TIMEOUT: u32 = 30;
/// fwknopd's default `MAX_FW_TIMEOUT`, seconds.
pub const DEFAULT_MAX_FW_TIMEOUT: u32 = 300;

/// fwknop keys accepted with a warning: they configure features portknock
/// never enables, so ignoring them cannot widen access.
const WARN_KEYS: &[&str] = &[
    "ENABLE_CMD_EXEC",
    "ENABLE_CMD_SUDO_EXEC",
    "CMD_EXEC_USER",
    "CMD_EXEC_GROUP",
    "CMD_SUDO_EXEC_USER",
    "CMD_SUDO_EXEC_GROUP",
    "CMD_CYCLE_OPEN",
    "CMD_CYCLE_CLOSE",
    "CMD_CYCLE_TIMER",
    "GPG_HOME_DIR",
    "GPG_EXE",
    "GPG_DECRYPT_ID",
    "GPG_DECRYPT_PW",
    "GPG_ALLOW_NO_PW",
    "GPG_REQUIRE_SIG",
    "GPG_IGNORE_SIG_VERIFY_ERROR",
    "GPG_REMOTE_ID",
    "GPG_FINGERPRINT_ID",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "FORWARD_ALL",
    "KEY_BASE64_GPG",
];
/// fwknop keys that would narrow access and are not implemented: refused.
const REFUSED_KEYS: &[&str] = &[
    "DESTINATION",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "RESTRICT_PORTS",
];

/// How strict the parser is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessConfOptions {
    /// Accept stanzas without an HMAC key (fwknop's legacy, unauthenticated
    /// mode). Off by default: such packets can be tampered with.
    pub allow_missing_hmac: bool,
}

/// One stanza, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessStanza {
    /// Line of its `SOURCE`.
    pub line: usize,
    /// Which senders it applies to.
    pub source: SourceSpec,
    /// Its keys.
    pub keys: SpaKeys,
    /// Ports a packet may request; `None`: any (fwknop's default).
    pub open_ports: Option<Vec<PortSpec>>,
    /// Grant length when the packet has no client timeout.
    pub fw_access_timeout: u32,
    /// Cap on a client timeout.
    pub max_fw_timeout: u32,
    /// Refuse `0.0.0.0` ("use my source address") requests.
    pub require_source_address: bool,
    /// Only this username is accepted.
    pub require_username: Option<String>,
}

/// A parsed file: its stanzas in file order, and what was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConf {
    /// The stanzas, tried in this order.
    pub stanzas: Vec<AccessStanza>,
    /// Lines that were accepted but have no effect.
    pub warnings: Vec<ConfWarning>,
    /// The file's permissions are looser than 0600 (set by [`load_access_conf`]).
    pub loose_mode: Option<LooseMode>,
}

/// A line that was accepted but ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {key} is ignored: {why}")]
pub struct ConfWarning {
    /// 1-based line.
    pub line: usize,
    /// The key.
    pub key: String,
    /// Why it has no effect.
    pub why: &'static str,
}

/// Why an access.conf was refused. Values of key lines are never echoed.
#[derive(Debug, thiserror::Error)]
pub enum AccessConfError {
    /// The file cannot be read.
    #[error("cannot read access file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file's type, size or permissions are refused.
    #[error("refusing access file: {0}")]
    Unsafe(#[source] KeyFileError),
    /// A key before the first `SOURCE`.
    #[error("line {line}: {key} appears before the first SOURCE line (stanzas start at SOURCE)")]
    BeforeSource {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A key that is not an access.conf key.
    #[error("line {line}: unknown key '{key}'")]
    UnknownKey {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
    /// An fwknop key portknock does not implement and cannot safely ignore.
    #[error("line {line}: {key} is not supported by portknock (ignoring it would widen access)")]
    Unsupported {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse. Key values are not shown.
    #[error("line {line}: invalid {key}: {expected}")]
    BadValue {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// What is allowed (includes the value for non-secret keys).
        expected: String,
    },
    /// A stanza that is incomplete or inconsistent.
    #[error("stanza starting at line {line}: {problem}")]
    Stanza {
        /// Line of its SOURCE.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The stanza's keys are refused.
    #[error("stanza starting at line {line}: {source}")]
    Keys {
        /// Line of its SOURCE.
        line: usize,
        /// The key problem.
        #[source]
        source: KeyError,
    },
    /// No stanza at all.
    #[error("no stanza found: an access file needs at least one SOURCE line")]
    Empty,
}

/// Stanza fields as read, before validation.
#[derive(Default)]
struct Raw {
    line: usize,
    source: Option<SourceSpec>,
    key: Option<(usize, Vec<u8>)>,
    hmac_key: Option<(usize, Vec<u8>)>,
    hmac_digest: Option<DigestType>,
    mode: Option<EncryptionMode>,
    open_ports: Option<Vec<PortSpec>>,
    fw_access_timeout: Option<u32>,
    max_fw_timeout: Option<u32>,
    require_source_address: bool,
    require_username: Option<String>,
}

/// Reads and parses an access.conf file.
pub fn load_access_conf(
    path: &Path,
    opts: AccessConfOptions,
) -> Result<AccessConf, AccessConfError> {
    let file = key_file::read(path).map_err(|failure| match failure {
        ReadFailure::Io(source) => AccessConfError::Read {
            path: path.to_path_buf(),
            source,
        },
        ReadFailure::Refused(e) => AccessConfError::Unsafe(e),
    })?;
    let mut conf = parse_access_conf(&file.text, opts)?;
    conf.loose_mode = file.loose;
    Ok(conf)
}

/// Parses access.conf text.
pub fn parse_access_conf(
    text: &str,
    opts: AccessConfOptions,
) -> Result<AccessConf, AccessConfError> {
    let mut raws: Vec<Raw> = Vec::new();
    let mut warnings = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, value) = match trimmed.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((k, v)) => (k.to_ascii_uppercase(), v.trim()),
            None => (trimmed.to_ascii_uppercase(), ""),
        };
        let bad = |expected: String| AccessConfError::BadValue {
            line: line_no,
            key: key.clone(),
            expected,
        };
        if value.is_empty() {
            return Err(bad("the value is missing".into()));
        }
        if key == "SOURCE" {
            let source = SourceSpec::parse(value).ok_or_else(|| {
                bad(format!(
                    "'{value}': expected ANY or comma-separated addresses/networks"
                ))
            })?;
            raws.push(Raw {
                line: line_no,
                source: Some(source),
                ..Raw::default()
            });
            continue;
        }
        let known = is_stanza_key(&key);
        let Some(raw) = raws.last_mut() else {
            return Err(if known {
                AccessConfError::BeforeSource { line: line_no, key }
            } else {
                AccessConfError::UnknownKey { line: line_no, key }
            });
        };
        match key.as_str() {
            "KEY" => raw.key = Some((line_no, value.as_bytes().to_vec())),
            "HMAC_KEY" => raw.hmac_key = Some((line_no, value.as_bytes().to_vec())),
            "KEY_BASE64" | "HMAC_KEY_BASE64" => {
                let bytes =
                    b64::decode_key(value).ok_or_else(|| bad("expected standard base64".into()))?;
                let slot = if key == "KEY_BASE64" {
                    &mut raw.key
                } else {
                    &mut raw.hmac_key
                };
                *slot = Some((line_no, bytes));
            }
            "HMAC_DIGEST_TYPE" => {
                raw.hmac_digest = Some(value.parse().map_err(|e| bad(format!("{e}")))?)
            }
            "ENCRYPTION_MODE" => {
                raw.mode = Some(
                    EncryptionMode::parse(value)
                        .ok_or_else(|| bad(format!("'{value}': expected cbc or legacy")))?,
                )
            }
            "OPEN_PORTS" => {
                let ports = value
                    .split(',')
                    .map(|p| p.trim().parse::<PortSpec>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                raw.open_ports = Some(ports);
            }
            "FW_ACCESS_TIMEOUT" | "MAX_FW_TIMEOUT" => {
                let secs = value
                    .parse::<u32>()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| bad(format!("'{value}': expected seconds from 1 to 86400")))?;
                let slot = if key == "FW_ACCESS_TIMEOUT" {
                    &mut raw.fw_access_timeout
                } else {
                    &mut raw.max_fw_timeout
                };
                *slot = Some(secs);
            }
            "REQUIRE_SOURCE_ADDRESS" | "REQUIRE_SOURCE" => {
                raw.require_source_address =
                    parse_bool(value).ok_or_else(|| bad(format!("'{value}': expected Y or N")))?
            }
            "REQUIRE_USERNAME" => raw.require_username = Some(value.to_string()),
            k if REFUSED_KEYS.contains(&k) => {
                return Err(AccessConfError::Unsupported { line: line_no, key });
            }
            "ENABLE_CMD_EXEC" if parse_bool(value) == Some(false) => {}
            k if WARN_KEYS.contains(&k) => warnings.push(ConfWarning {
                line: line_no,
                key,
                why: "portknock never runs commands, GnuPG, or NAT rules",
            }),
            _ => return Err(AccessConfError::UnknownKey { line: line_no, key }),
        }
    }
    if raws.is_empty() {
        return Err(AccessConfError::Empty);
    }
    let stanzas = raws
        .into_iter()
        .map(|r| validate(r, opts))
        .collect::<Result<_, _>>()?;
    Ok(AccessConf {
        stanzas,
        warnings,
        loose_mode: None,
    })
}

fn is_stanza_key(key: &str) -> bool {
    const KEYS: &[&str] = &[
        "KEY",
        "KEY_BASE64",
        "HMAC_KEY",
        "HMAC_KEY_BASE64",
        "HMAC_DIGEST_TYPE",
        "ENCRYPTION_MODE",
        "OPEN_PORTS",
        "FW_ACCESS_TIMEOUT",
        "MAX_FW_TIMEOUT",
        "REQUIRE_SOURCE_ADDRESS",
        "REQUIRE_SOURCE",
        "REQUIRE_USERNAME",
    ];
    KEYS.contains(&key) || WARN_KEYS.contains(&key) || REFUSED_KEYS.contains(&key)
}

/// `Y`/`N` (fwknop), also `yes`/`no`.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(true),
        "n" | "no" => Some(false),
        _ => None,
    }
}

fn validate(raw: Raw, opts: AccessConfOptions) -> Result<AccessStanza, AccessConfError> {
    let line = raw.line;
    let stanza_err = |problem: &str| AccessConfError::Stanza {
        line,
        problem: problem.to_string(),
    };
    let (_, key) = raw.key.ok_or_else(|| stanza_err("no KEY or KEY_BASE64"))?;
    let hmac_key = raw.hmac_key.map(|(_, k)| k);
    if hmac_key.is_none() && !opts.allow_missing_hmac {
        return Err(stanza_err(
            "no HMAC_KEY or HMAC_KEY_BASE64: unauthenticated stanzas are refused unless explicitly allowed",
        ));
    }
    let keys = SpaKeys::new(
        key,
        hmac_key,
        raw.hmac_digest.unwrap_or(DigestType::Sha256),
        raw.mode.unwrap_or_default(),
    )
    .map_err(|source| AccessConfError::Keys { line, source })?;
    let fw_access_timeout = raw.fw_access_timeout.unwrap_or(DEFAULT_FW_ACCESS_TIMEOUT);
    let max_fw_timeout = raw.max_fw_timeout.unwrap_or(DEFAULT_MAX_FW_TIMEOUT);
    Ok(AccessStanza {
        line,
        source: raw.source.unwrap_or(SourceSpec::Any),
        keys,
        open_ports: raw.open_ports,
        fw_access_timeout,
        max_fw_timeout,
        require_source_address: raw.require_source_address,
        require_username: raw.require_username,
    })
}

#[cfg(test)]
mod tests;
