//! The `[fleet]` table of the configuration (and the `--fleet-*` flags):
//! where the NATS servers are, how to log in, which group this node
//! belongs to, its name, the group key file and the failure policy.
//!
//! Checked once, here, so the daemon never sees a half-valid fleet: a bad
//! URL scheme, a group or node name NATS cannot put in a bucket or key, a
//! missing key file are refused at start with a message naming the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::record::GroupKey;

/// What a node does with fleet doors while the engine is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenUnreachable {
    /// Keep granting locally and publish when the engine is back
    /// (availability; the replay check is then local only).
    #[default]
    GrantLocally,
    /// Refuse fleet doors' grants until the engine is back.
    Refuse,
}

impl WhenUnreachable {
    /// Parses `grant-locally` or `refuse`.
    pub fn parse(text: &str) -> Result<Self, FleetConfigError> {
        match text.trim() {
            "grant-locally" => Ok(Self::GrantLocally),
            "refuse" => Ok(Self::Refuse),
            other => Err(FleetConfigError(format!(
                "invalid fleet when-unreachable '{other}': expected grant-locally or refuse"
            ))),
        }
    }

    /// The word of the policy.
    pub fn word(self) -> &'static str {
        match self {
            Self::GrantLocally => "grant-locally",
            Self::Refuse => "refuse",
        }
    }
}

/// How the node logs in to NATS (beside TLS, which a `tls://` URL asks for).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum FleetAuth {
    /// No credentials.
    #[default]
    None,
    /// NATS user and password.
    UserPassword(String, String),
    /// A NATS token.
    Token(String),
    /// A file holding an nkey seed (`SU...`).
    NkeyFile(PathBuf),
    /// A NATS credentials file (JWT + seed).
    CredsFile(PathBuf),
}

impl std::fmt::Debug for FleetAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

impl FleetAuth {
    /// What kind of credentials, never the secret.
    pub fn word(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::UserPassword(..) => "user/password",
            Self::Token(_) => "token",
            Self::NkeyFile(_) => "nkey file",
            Self::CredsFile(_) => "credentials file",
        }
    }
}

/// A refused fleet setting (the message names the value).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct FleetConfigError(pub String);

/// The validated fleet settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// NATS server URLs (`nats://` or `tls://`), one or several.
    pub urls: Vec<String>,
    /// Credentials.
    pub auth: FleetAuth,
    /// Extra CA certificate for `tls://` servers.
    pub tls_ca: Option<PathBuf>,
    /// The group: bucket names derive from it.
    pub group: String,
    /// This node's name (in the records it publishes).
    pub node: String,
    /// The group key file (HMAC key of the records).
    pub key_file: PathBuf,
    /// The failure policy.
    pub when_unreachable: WhenUnreachable,
    /// Whether SPA grants and the SPA replay check are fleet-wide.
    pub spa: bool,
    /// Replicas of the buckets when this node creates them (3 on a
    /// three-server JetStream cluster survives the loss of one server).
    pub replicas: usize,
}

/// `url = "..."` or `url = ["...", "..."]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One URL.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The `[fleet]` table as the file spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFleet {
    url: OneOrMany,
    group: String,
    node: Option<String>,
    key_file: String,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    nkey_file: Option<String>,
    creds_file: Option<String>,
    tls_ca: Option<String>,
    when_unreachable: Option<String>,
    spa: Option<bool>,
    replicas: Option<i64>,
}

impl RawFleet {
    /// Checks the table.
    pub fn validate(&self) -> Result<FleetSettings, FleetConfigError> {
        let urls = match &self.url {
            OneOrMany::One(url) => vec![url.clone()],
            OneOrMany::Many(urls) => urls.clone(),
        };
        let auth = match (
            &self.user,
            &self.password,
            &self.token,
            &self.nkey_file,
            &self.creds_file,
        ) {
            (None, None, None, None, None) => FleetAuth::None,
            (Some(u), Some(p), None, None, None) => FleetAuth::UserPassword(u.clone(), p.clone()),
            (None, None, Some(t), None, None) => FleetAuth::Token(t.clone()),
            (None, None, None, Some(f), None) => FleetAuth::NkeyFile(f.into()),
            (None, None, None, None, Some(f)) => FleetAuth::CredsFile(f.into()),
            _ => {
                return Err(FleetConfigError(
                    "fleet credentials: give user and password together, or token, or nkey-file, or creds-file (one kind)".into(),
                ));
            }
        };
        let node = match &self.node {
            Some(node) => node.clone(),
            None => default_node(),
        };
        FleetSettings::new(urls, self.group.clone(), node, self.key_file.clone().into()).and_then(
            |mut s| {
                s.auth = auth;
                s.tls_ca = self.tls_ca.as_ref().map(PathBuf::from);
                s.spa = self.spa.unwrap_or(true);
                if let Some(r) = self.replicas {
                    s.replicas = match usize::try_from(r) {
                        Ok(r @ 1..=5) => r,
                        _ => {
                            return Err(FleetConfigError(format!(
                                "invalid fleet replicas {r}: expected 1 to 5"
                            )));
                        }
                    };
                }
                if let Some(w) = &self.when_unreachable {
                    s.when_unreachable = WhenUnreachable::parse(w)?;
                }
                Ok(s)
            },
        )
    }
}

impl FleetSettings {
    /// Settings with the defaults (no credentials, grant locally, SPA
    /// shared), checking URLs, group and node names.
    pub fn new(
        urls: Vec<String>,
        group: String,
        node: String,
        key_file: PathBuf,
    ) -> Result<Self, FleetConfigError> {
        if urls.is_empty() {
            return Err(FleetConfigError("fleet url: give at least one".into()));
        }
        for url in &urls {
            let ok = ["nats://", "tls://"]
                .iter()
                .any(|s| url.starts_with(s) && url.len() > s.len());
            if !ok {
                return Err(FleetConfigError(format!(
                    "invalid fleet url '{url}': expected nats://HOST:PORT or tls://HOST:PORT"
                )));
            }
        }
        check_name("group", &group, 32)?;
        check_name("node", &node, 64)?;
        if key_file.as_os_str().is_empty() {
            return Err(FleetConfigError(
                "fleet key-file: give the group key file".into(),
            ));
        }
        Ok(Self {
            urls,
            auth: FleetAuth::None,
            tls_ca: None,
            group,
            node,
            key_file,
            when_unreachable: WhenUnreachable::default(),
            spa: true,
            replicas: 1,
        })
    }

    /// The `[fleet]` table as TOML (`--check-config`); passwords and
    /// tokens masked unless `secrets`.
    pub fn render(&self, secrets: bool) -> String {
        let q = |t: &str| toml::Value::String(t.to_string()).to_string();
        let secret = |t: &str| {
            if secrets {
                q(t)
            } else {
                q(crate::config::MASK)
            }
        };
        let urls: Vec<String> = self.urls.iter().map(|u| q(u)).collect();
        let mut out = format!("[fleet]\nurl = [{}]\n", urls.join(", "));
        out += &format!("group = {}\nnode = {}\n", q(&self.group), q(&self.node));
        out += &format!("key-file = {}\n", q(&self.key_file.display().to_string()));
        match &self.auth {
            FleetAuth::None => {}
            FleetAuth::UserPassword(u, p) => {
                out += &format!("user = {}\npassword = {}\n", q(u), secret(p));
            }
            FleetAuth::Token(t) => out += &format!("token = {}\n", secret(t)),
            FleetAuth::NkeyFile(f) => {
                out += &format!("nkey-file = {}\n", q(&f.display().to_string()))
            }
            FleetAuth::CredsFile(f) => {
                out += &format!("creds-file = {}\n", q(&f.display().to_string()))
            }
        }
        if let Some(ca) = &self.tls_ca {
            out += &format!("tls-ca = {}\n", q(&ca.display().to_string()));
        }
        out += &format!(
            "when-unreachable = {}\nspa = {}\nreplicas = {}\n",
            q(self.when_unreachable.word()),
            self.spa,
            self.replicas
        );
        out
    }

    /// The grants bucket's name.
    pub fn grants_bucket(&self) -> String {
        format!("portknock-grants-{}", self.group)
    }

    /// The SPA replay bucket's name.
    pub fn replay_bucket(&self) -> String {
        format!("portknock-replay-{}", self.group)
    }
}

/// Names that go into bucket names and record ids: letters, digits, `-`
/// and `_` (NATS bucket names allow no more; `.` separates id parts).
fn check_name(what: &str, name: &str, max: usize) -> Result<(), FleetConfigError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(FleetConfigError(format!(
        "invalid fleet {what} '{name}': expected 1 to {max} ASCII letters, digits, '-' or '_'"
    )))
}

/// This host's name, made a valid node name (`node` when it has none).
fn default_node() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = name
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => c,
            _ => '_',
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "node".into()
    } else {
        clean
    }
}

/// Smallest group key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Reads the group key file: refused if group or others may read it (like
/// the SPA key files) or if it holds fewer than [`MIN_KEY_LEN`] bytes. The
/// key is the file's bytes without the trailing newline.
pub fn load_key(path: &Path) -> Result<GroupKey, FleetConfigError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| FleetConfigError(format!("fleet key file {shown}: {e}")))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FleetConfigError(format!(
            "fleet key file {shown} has mode {mode:04o}: group/others may read the group key; refusing it (run chmod 600 {shown})"
        )));
    }
    let mut bytes = std::fs::read(path)
        .map_err(|e| FleetConfigError(format!("fleet key file {shown}: {e}")))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < MIN_KEY_LEN {
        return Err(FleetConfigError(format!(
            "fleet key file {shown} holds {} bytes: a group key needs at least {MIN_KEY_LEN}",
            bytes.len()
        )));
    }
    Ok(GroupKey::new(bytes))
}
