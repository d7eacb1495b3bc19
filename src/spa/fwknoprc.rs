//! The fwknop client's `~/.fwknoprc`: `[name]` stanzas of `KEY value` lines,
//! with `[default]` supplying what a named stanza leaves out.
//!
//! `knock-client --spa --rc-file F --name N` reads the stanza an fwknop user
//! already has. Values are checked line by line (errors carry the line and
//! never echo key material); keys the client does not use are warnings.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::access_conf::parse_bool;
use super::b64;
use super::digest::DigestType;
use super::key_file::{self, KeyFileError, LooseMode, ReadFailure};
use super::keys::{EncryptionMode, KeyError, SpaKeys};
use super::message::PortSpec;

/// fwknop's default SPA port.
pub const DEFAULT_SPA_PORT: u16 = 62201;

/// The address an rc stanza asks to open (`ALLOW_IP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowIp {
    /// A fixed address.
    Ip(Ipv4Addr),
    /// `source`: send `0.0.0.0`, the server uses the packet's source.
    Source,
    /// `resolve`: fwknop asks a web service; portknock does not (no
    /// outbound lookups), the client must pick an address itself.
    Resolve,
}

/// One stanza merged over `[default]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcStanza {
    /// The stanza name.
    pub name: String,
    /// `SPA_SERVER`.
    pub spa_server: Option<String>,
    /// `SPA_SERVER_PORT` (default 62201).
    pub spa_server_port: u16,
    /// `ACCESS` ports.
    pub access: Vec<PortSpec>,
    /// `ALLOW_IP`.
    pub allow_ip: Option<AllowIp>,
    /// The keys; `None` if the stanza has no KEY/KEY_BASE64.
    pub keys: Option<SpaKeys>,
    /// `FW_TIMEOUT` (client timeout), 0 when unset.
    pub client_timeout: u32,
    /// `DIGEST_TYPE` (inner digest), default SHA-256.
    pub digest: DigestType,
    /// `SPOOF_USER`.
    pub username: Option<String>,
}

/// A parsed rc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcFile {
    stanzas: Vec<Settings>,
    /// Lines accepted but unused.
    pub warnings: Vec<RcWarning>,
    /// The file's permissions are looser than 0600 (set by [`load_fwknoprc`]).
    pub loose_mode: Option<LooseMode>,
}

/// A line that has no effect on portknock's client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {key} is ignored by knock-client")]
pub struct RcWarning {
    /// 1-based line.
    pub line: usize,
    /// The key.
    pub key: String,
}

/// Why an rc file or stanza was refused.
#[derive(Debug, thiserror::Error)]
pub enum RcError {
    /// The file cannot be read.
    #[error("cannot read rc file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file's type, size or permissions are refused.
    #[error("refusing rc file: {0}")]
    Unsafe(#[source] KeyFileError),
    /// A line that is not `[name]`, a comment, or `KEY value`.
    #[error("line {line}: expected [stanza], a comment, or KEY VALUE")]
    Syntax {
        /// 1-based line.
        line: usize,
    },
    /// A setting before the first `[stanza]`.
    #[error("line {line}: {key} appears before the first [stanza] header")]
    OutsideStanza {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse (key values are not shown).
    #[error("line {line}: invalid {key}: {expected}")]
    BadValue {
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// What is allowed.
        expected: String,
    },
    /// No stanza of that name.
    #[error("no stanza [{0}] in the rc file")]
    NoStanza(String),
    /// The stanza's keys are refused.
    #[error("stanza [{name}]: {source}")]
    Keys {
        /// The stanza.
        name: String,
        /// The problem.
        #[source]
        source: KeyError,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Settings {
    name: String,
    spa_server: Option<String>,
    spa_server_port: Option<u16>,
    access: Option<Vec<PortSpec>>,
    allow_ip: Option<AllowIp>,
    key: Option<Vec<u8>>,
    hmac_key: Option<Vec<u8>>,
    use_hmac: Option<bool>,
    hmac_digest: Option<DigestType>,
    digest: Option<DigestType>,
    mode: Option<EncryptionMode>,
    client_timeout: Option<u32>,
    username: Option<String>,
}

impl Settings {
    /// `self` with unset values taken from `base`.
    fn over(self, base: &Settings) -> Settings {
        let b = base.clone();
        Settings {
            name: self.name,
            spa_server: self.spa_server.or(b.spa_server),
            spa_server_port: self.spa_server_port.or(b.spa_server_port),
            access: self.access.or(b.access),
            allow_ip: self.allow_ip.or(b.allow_ip),
            key: self.key.or(b.key),
            hmac_key: self.hmac_key.or(b.hmac_key),
            use_hmac: self.use_hmac.or(b.use_hmac),
            hmac_digest: self.hmac_digest.or(b.hmac_digest),
            digest: self.digest.or(b.digest),
            mode: self.mode.or(b.mode),
            client_timeout: self.client_timeout.or(b.client_timeout),
            username: self.username.or(b.username),
        }
    }
}

/// Reads and parses an rc file.
pub fn load_fwknoprc(path: &Path) -> Result<RcFile, RcError> {
    let file = key_file::read(path).map_err(|failure| match failure {
        ReadFailure::Io(source) => RcError::Read {
            path: path.to_path_buf(),
            source,
        },
        ReadFailure::Refused(e) => RcError::Unsafe(e),
    })?;
    let mut rc = parse_fwknoprc(&file.text)?;
    rc.loose_mode = file.loose;
    Ok(rc)
}

/// Parses rc text.
pub fn parse_fwknoprc(text: &str) -> Result<RcFile, RcError> {
    let mut stanzas: Vec<Settings> = Vec::new();
    let mut warnings = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| !n.is_empty());
            let name = name.ok_or(RcError::Syntax { line: line_no })?;
            stanzas.push(Settings {
                name: name.to_string(),
                ..Settings::default()
            });
            continue;
        }
        let (key, value) = t
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(RcError::Syntax { line: line_no })?;
        let (key, value) = (key.to_ascii_uppercase(), value.trim());
        let Some(s) = stanzas.last_mut() else {
            return Err(RcError::OutsideStanza { line: line_no, key });
        };
        let bad = |expected: &str| RcError::BadValue {
            line: line_no,
            key: key.clone(),
            expected: expected.to_string(),
        };
        match key.as_str() {
            "SPA_SERVER" => s.spa_server = Some(value.to_string()),
            "SPA_SERVER_PORT" => {
                s.spa_server_port =
                    Some(crate::config::parse_port(value).map_err(|e| bad(&e.to_string()))?)
            }
            "SPA_SERVER_PROTO" if value.eq_ignore_ascii_case("udp") => {}
            "SPA_SERVER_PROTO" => return Err(bad("only udp is supported")),
            "ACCESS" => {
                let ports = value
                    .split(',')
                    .map(|p| p.trim().parse::<PortSpec>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e.to_string()))?;
                s.access = Some(ports);
            }
            "ALLOW_IP" => {
                s.allow_ip = Some(match value.to_ascii_lowercase().as_str() {
                    "source" => AllowIp::Source,
                    "resolve" => AllowIp::Resolve,
                    v => AllowIp::Ip(
                        v.parse()
                            .map_err(|_| bad("expected an IPv4 address, source, or resolve"))?,
                    ),
                })
            }
            "KEY" | "KEY_RIJNDAEL" => s.key = Some(value.as_bytes().to_vec()),
            "KEY_BASE64" | "KEY_BASE64_RIJNDAEL" => {
                s.key = Some(b64::decode_key(value).ok_or_else(|| bad("expected standard base64"))?)
            }
            "HMAC_KEY" => s.hmac_key = Some(value.as_bytes().to_vec()),
            "HMAC_KEY_BASE64" => {
                s.hmac_key =
                    Some(b64::decode_key(value).ok_or_else(|| bad("expected standard base64"))?)
            }
            "USE_HMAC" => {
                s.use_hmac = Some(parse_bool(value).ok_or_else(|| bad("expected Y or N"))?)
            }
            "HMAC_DIGEST_TYPE" => {
                s.hmac_digest = Some(value.parse().map_err(|e| bad(&format!("{e}")))?)
            }
            "DIGEST_TYPE" => s.digest = Some(value.parse().map_err(|e| bad(&format!("{e}")))?),
            "ENCRYPTION_MODE" => {
                s.mode = Some(
                    EncryptionMode::parse(value).ok_or_else(|| bad("expected cbc or legacy"))?,
                )
            }
            "FW_TIMEOUT" => {
                s.client_timeout = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|v| *v <= super::message::MAX_CLIENT_TIMEOUT)
                        .ok_or_else(|| bad("expected seconds from 0 to 65536"))?,
                )
            }
            "SPOOF_USER" => s.username = Some(value.to_string()),
            _ => warnings.push(RcWarning { line: line_no, key }),
        }
    }
    Ok(RcFile {
        stanzas,
        warnings,
        loose_mode: None,
    })
}

impl RcFile {
    /// Stanza names in file order.
    pub fn names(&self) -> Vec<&str> {
        self.stanzas.iter().map(|s| s.name.as_str()).collect()
    }

    /// The stanza `name` merged over `[default]` (if any), validated.
    pub fn stanza(&self, name: &str) -> Result<RcStanza, RcError> {
        let named = self
            .stanzas
            .iter()
            .rev()
            .find(|s| s.name == name)
            .ok_or_else(|| RcError::NoStanza(name.into()))?;
        let merged = match self.stanzas.iter().rev().find(|s| s.name == "default") {
            Some(d) if name != "default" => named.clone().over(d),
            _ => named.clone(),
        };
        let use_hmac = merged.use_hmac.unwrap_or(merged.hmac_key.is_some());
        let keys = match merged.key {
            None => None,
            Some(key) => Some(
                SpaKeys::new(
                    key,
                    if use_hmac { merged.hmac_key } else { None },
                    merged.hmac_digest.unwrap_or(DigestType::Sha256),
                    merged.mode.unwrap_or_default(),
                )
                .map_err(|source| RcError::Keys {
                    name: name.to_string(),
                    source,
                })?,
            ),
        };
        Ok(RcStanza {
            name: merged.name,
            spa_server: merged.spa_server,
            spa_server_port: merged.spa_server_port.unwrap_or(DEFAULT_SPA_PORT),
            access: merged.access.unwrap_or_default(),
            allow_ip: merged.allow_ip,
            keys,
            client_timeout: merged.client_timeout.unwrap_or(0),
            digest: merged.digest.unwrap_or(DigestType::Sha256),
            username: merged.username,
        })
    }
}

#[cfg(test)]
mod tests;
