//! The daemon-wide settings of a configuration: where to listen, which
//! firewall, how to deny, bounds, logging, observation addresses, the
//! userspace gate's service and the SPA listener.
//!
//! Each field's type is already checked on its own (a parsed address, an
//! enum); [`super::server_config::ServerConfig::new`] checks the ranges and
//! how fields relate to each other and to the doors, once for flags and
//! files alike. [`GlobalOverrides`] carries the flags given beside
//! `--config`: each one given replaces the file's value.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::capture::CaptureKind;
use crate::firewall::instance::Instance;
use crate::firewall::{FirewallKind, Position};
use crate::spa_listener::{DEFAULT_REPLAY_CACHE, SpaOptions};

use super::issue::{Key, Problem};

/// Default bound on open grants (`max-grants`): the one `--max-grants`
/// uses (`grants.rs`).
pub const DEFAULT_MAX_GRANTS: usize = crate::grants::DEFAULT_MAX_GRANTS;
/// Default seconds before the built-in service closes a connection.
pub const DEFAULT_CLOSE_AFTER: Duration = Duration::from_secs(3);

/// How a protected port answers a stranger (defined beside the backends
/// that apply it).
pub use crate::firewall::Deny;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines: the default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Lowest level of the log lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
#[allow(missing_docs)] // tracing's levels
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// A word of a small set, parsed case-insensitively.
pub trait Word: Sized + Copy + 'static {
    /// Each word and its value.
    const WORDS: &'static [(&'static str, Self)];
    /// The words, for the error message.
    const ALLOWED: &'static str;

    /// Parses `text`; the error names `key`.
    fn parse_word(key: Key, text: &str) -> Result<Self, Problem> {
        let lower = text.trim().to_ascii_lowercase();
        Self::WORDS
            .iter()
            .find(|(word, _)| *word == lower)
            .map(|(_, value)| *value)
            .ok_or(Problem::Choice {
                key,
                value: text.to_string(),
                allowed: Self::ALLOWED,
            })
    }

    /// The word of `self`.
    fn word(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::WORDS
            .iter()
            .find(|(_, value)| *value == self)
            .map(|(word, _)| *word)
            .expect("every value has a word")
    }
}

impl Word for Deny {
    const WORDS: &'static [(&'static str, Self)] = &Deny::NAMED;
    const ALLOWED: &'static str = "reset, drop (reject: alias of reset)";
}

impl Word for LogFormat {
    const WORDS: &'static [(&'static str, Self)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
    const ALLOWED: &'static str = "text, json";
}

impl Word for LogLevel {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ];
    const ALLOWED: &'static str = "error, warn, info, debug, trace";
}

impl Word for Position {
    const WORDS: &'static [(&'static str, Self)] = &Position::NAMED;
    const ALLOWED: &'static str = "first, last";
}

impl Word for FirewallKind {
    const WORDS: &'static [(&'static str, Self)] = &FirewallKind::NAMED;
    const ALLOWED: &'static str = "auto, userspace, iptables, nftables";
}

impl Word for CaptureKind {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("auto", CaptureKind::Auto),
        ("nflog", CaptureKind::Nflog),
        ("packet", CaptureKind::Packet),
        ("socket", CaptureKind::Socket),
    ];
    const ALLOWED: &'static str = "auto, nflog, packet, socket";
}

/// The NFLOG group the capture rule logs to unless `nflog-group` says
/// otherwise (one reader per group per network namespace; the same number
/// as `capture::nflog::DEFAULT_GROUP`).
pub const DEFAULT_NFLOG_GROUP: u16 = 27502;

/// Longest interface name (`IFNAMSIZ` less its NUL, linux `if.h`).
pub const MAX_INTERFACE_LEN: usize = 15;

/// Checks an interface name the way the kernel does (`dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace. Whether it
/// exists is checked at start.
pub fn check_interface(name: &str) -> Result<(), Problem> {
    let bad = name.is_empty()
        || name.len() > MAX_INTERFACE_LEN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    match bad {
        true => Err(Problem::Interface(name.to_string())),
        false => Ok(()),
    }
}

/// How the daemon hears knocks and SPA packets (`capture`, `interface`,
/// `nflog-group`; `capture.rs` says what each source needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The source, or `auto`.
    pub kind: CaptureKind,
    /// Interfaces to capture on; empty: all.
    pub interfaces: Vec<String>,
    /// The NFLOG group of the capture rule.
    pub nflog_group: u16,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            kind: CaptureKind::Auto,
            interfaces: Vec::new(),
            nflog_group: DEFAULT_NFLOG_GROUP,
        }
    }
}

/// The SPA listener's settings (the `--spa*` flags, the `[spa]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaSettings {
    /// UDP port of the listener.
    pub port: u16,
    /// fwknop access.conf with the keys and policy.
    pub access: PathBuf,
    /// Accept stanzas without an HMAC key.
    pub allow_no_hmac: bool,
    /// Refuse packets older than this, seconds.
    pub max_age_secs: u64,
    /// Open access only for the packet's own source.
    pub require_source_match: bool,
    /// Replay cache file.
    pub replay_cache: PathBuf,
}

impl SpaSettings {
    /// Settings with today's defaults for everything but the access file.
    pub fn with_access(access: PathBuf) -> Self {
        Self {
            port: crate::spa::DEFAULT_SPA_PORT,
            access,
            allow_no_hmac: false,
            max_age_secs: 120,
            require_source_match: false,
            replay_cache: PathBuf::from(DEFAULT_REPLAY_CACHE),
        }
    }

    /// The options the SPA listener's set-up takes.
    pub fn options(&self) -> SpaOptions {
        SpaOptions {
            access: self.access.clone(),
            allow_no_hmac: self.allow_no_hmac,
            max_age_secs: self.max_age_secs,
            require_source_match: self.require_source_match,
            replay_cache: self.replay_cache.clone(),
        }
    }
}

/// The daemon-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    /// Addresses to listen on; empty means `0.0.0.0` and `::`.
    pub bind: Vec<IpAddr>,
    /// Firewall backend.
    pub firewall: FirewallKind,
    /// How protected ports answer strangers.
    pub deny: Deny,
    /// Whether connections opened during a grant outlive it.
    pub keep_established: bool,
    /// Bound on tracked source IPs.
    pub max_tracked: usize,
    /// Bound on open grants.
    pub max_grants: usize,
    /// Names this daemon's firewall table or chain.
    pub instance: Instance,
    /// iptables: where the jump to our chain goes in INPUT.
    pub iptables_position: Position,
    /// Lowest log level written.
    pub log_level: LogLevel,
    /// Log line format.
    pub log_format: LogFormat,
    /// Loopback address of the JSON stats line, if any.
    pub stats_listen: Option<SocketAddr>,
    /// Loopback address of the metrics endpoint, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the control socket listens (`knockctl`).
    pub control_socket: ControlSocketSetting,
    /// A group whose members may use the control socket too (0660).
    pub control_group: Option<String>,
    /// Userspace gate: proxy granted connections to this HOST:PORT.
    pub upstream: Option<String>,
    /// Userspace gate: the flag the built-in service serves (a secret).
    pub flag: String,
    /// Built-in service: time before a served connection is closed.
    pub close_after: Duration,
    /// Userspace gate: cap on connections served at once.
    pub max_connections: usize,
    /// The SPA listener, if on.
    pub spa: Option<SpaSettings>,
    /// How knocks and SPA packets are heard.
    pub capture: CaptureSettings,
    /// Fleet mode (`[fleet]`, `--fleet-*`): None runs alone.
    pub fleet: Option<crate::fleet::FleetSettings>,
}

impl Default for Globals {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            firewall: FirewallKind::Auto,
            deny: Deny::Reset,
            keep_established: true,
            max_tracked: super::DEFAULT_MAX_TRACKED,
            max_grants: DEFAULT_MAX_GRANTS,
            instance: Instance::default(),
            iptables_position: Position::First,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            stats_listen: None,
            metrics_listen: None,
            control_socket: ControlSocketSetting::Default,
            control_group: None,
            upstream: None,
            flag: super::DEFAULT_FLAG.to_string(),
            close_after: DEFAULT_CLOSE_AFTER,
            max_connections: crate::gate::DEFAULT_MAX_CONNECTIONS,
            spa: None,
            capture: CaptureSettings::default(),
            fleet: None,
        }
    }
}

/// Flags given beside `--config`: each `Some` replaces the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // one per field of `Globals`, same meaning
pub struct GlobalOverrides {
    pub bind: Option<Vec<IpAddr>>,
    pub firewall: Option<FirewallKind>,
    pub deny: Option<Deny>,
    pub keep_established: Option<bool>,
    pub max_tracked: Option<usize>,
    pub max_grants: Option<usize>,
    pub instance: Option<Instance>,
    pub iptables_position: Option<Position>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
    pub stats_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub control_socket: Option<ControlSocketSetting>,
    pub control_group: Option<String>,
    pub upstream: Option<String>,
    pub flag: Option<String>,
    pub close_after: Option<Duration>,
    pub max_connections: Option<usize>,
    pub spa: Option<SpaSettings>,
    pub capture: Option<CaptureKind>,
    pub interfaces: Option<Vec<String>>,
    pub nflog_group: Option<u16>,
    pub fleet: Option<crate::fleet::FleetSettings>,
}

impl Globals {
    /// Replaces every field that `overrides` gives.
    pub fn apply(&mut self, overrides: GlobalOverrides) {
        macro_rules! take {
            ($($field:ident),*) => {
                $(if let Some(value) = overrides.$field { self.$field = value; })*
            };
        }
        take!(
            bind,
            firewall,
            deny,
            keep_established,
            max_tracked,
            max_grants,
            instance,
            iptables_position,
            log_level,
            log_format,
            control_socket,
            close_after,
            flag,
            max_connections
        );
        macro_rules! take_opt {
            ($($field:ident),*) => {
                $(if let Some(value) = overrides.$field { self.$field = Some(value); })*
            };
        }
        take_opt!(
            stats_listen,
            metrics_listen,
            control_group,
            upstream,
            spa,
            fleet
        );
        if let Some(kind) = overrides.capture {
            self.capture.kind = kind;
        }
        if let Some(interfaces) = overrides.interfaces {
            self.capture.interfaces = interfaces;
        }
        if let Some(group) = overrides.nflog_group {
            self.capture.nflog_group = group;
        }
    }
}

/// Where the control socket listens: the default path (a failure to bind
/// it is a warning: several daemons may share a host), a path given (a
/// failure stops the start), or off (`none`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ControlSocketSetting {
    /// `/run/portknock/control.sock`, if it can be bound.
    #[default]
    Default,
    /// No control socket.
    Off,
    /// This path.
    At(PathBuf),
}

impl ControlSocketSetting {
    /// `none` or `off`: no socket; anything else: a path.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "none" | "off" => Self::Off,
            path => Self::At(PathBuf::from(path)),
        }
    }

    /// The path it names, if any (the default's included).
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Default => Some(PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            Self::Off => None,
            Self::At(path) => Some(path.clone()),
        }
    }
}

/// The control socket's default path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/portknock/control.sock";
