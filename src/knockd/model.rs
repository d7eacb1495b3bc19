//! What a knockd.conf says, as knockd 0.8 reads it: the `[options]`
//! section and each door ("knock/event") with its line numbers, so every
//! later check (what this build can serve, shell syntax in commands, the
//! native translation) can still point at the line to fix.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::KnockPort;

/// knockd's `Seq_Timeout` default (`knockd.c`: `door->seq_timeout = SEQ_TIMEOUT`, 25).
pub const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
/// knockd's `Cmd_Timeout` default (`CMD_TIMEOUT`, 10): start to stop command.
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// knockd's longest sequence (`SEQ_MAX`, 32).
pub const MAX_SEQUENCE: usize = 32;

/// A value and the 1-based line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtLine<T> {
    /// The value.
    pub value: T,
    /// Its line in the file.
    pub line: usize,
}

/// The `[options]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Bare `UseSyslog`: also log through syslog.
    pub use_syslog: bool,
    /// `LogFile = path`.
    pub log_file: Option<AtLine<PathBuf>>,
    /// `PidFile = path` (knockd writes it only with `-d`).
    pub pid_file: Option<AtLine<PathBuf>>,
    /// `Interface = name` (knockd's `-i` overrides it).
    pub interface: Option<AtLine<String>>,
}

/// TCP flag bits as knockd names them (`fin syn rst psh ack urg`).
pub const TCP_FLAGS: [(&str, u8); 6] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
];

/// The SYN bit.
pub const SYN: u8 = 0x02;

/// A door's `TCPFlags`: bits that must be set and bits that must be clear
/// (repeated lines accumulate, as in knockd).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// Must be set.
    pub set: u8,
    /// Must be clear (`!flag`).
    pub clear: u8,
    /// Line of the last `TCPFlags` (0: none given).
    pub line: usize,
}

impl TcpFlags {
    /// Whether a segment with `flags` passes (knockd's `flags_match`).
    pub fn matches(&self, flags: u8) -> bool {
        flags & self.set == self.set && flags & self.clear == 0
    }

    /// Whether a plain SYN (what knock clients send and what the capture
    /// passes) satisfies these flags.
    pub fn heard_as_syn(&self) -> bool {
        self.matches(SYN)
    }

    /// The flags as written in a knockd.conf (`syn,!ack`), or `none`.
    pub fn describe(&self) -> String {
        let mut words = Vec::new();
        for (name, bit) in TCP_FLAGS {
            if self.set & bit != 0 {
                words.push(name.to_string());
            }
            if self.clear & bit != 0 {
                words.push(format!("!{name}"));
            }
        }
        if words.is_empty() {
            return "none".to_string();
        }
        words.join(",")
    }
}

/// Where a door's sequence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSource {
    /// `Sequence = ...` (the last one given).
    Fixed(AtLine<Vec<KnockPort>>),
    /// `One_Time_Sequences = file`: the first unused line of the file,
    /// read at load time.
    OneTime {
        /// The file.
        path: AtLine<PathBuf>,
        /// Its first unused sequence, if any is left.
        current: Option<Vec<KnockPort>>,
    },
}

/// One door of the file (a section other than `[options]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockdDoor {
    /// The section's name (knockd allows any text; duplicates too).
    pub name: String,
    /// Line of `[name]`.
    pub line: usize,
    /// The knocks.
    pub sequence: SequenceSource,
    /// `Seq_Timeout` (`Timeout`): from the first knock to the last.
    pub seq_timeout: Duration,
    /// `TCPFlags`.
    pub tcp_flags: TcpFlags,
    /// `Start_Command` (`Command`), for IPv4 knockers.
    pub start: Option<AtLine<String>>,
    /// `Start_Command_6` (`Command_6`), for IPv6 knockers (falls back to
    /// `start`; an empty value runs nothing).
    pub start6: Option<AtLine<String>>,
    /// `Cmd_Timeout`: from the end of the start command to the stop command.
    pub cmd_timeout: Duration,
    /// `Stop_Command`.
    pub stop: Option<AtLine<String>>,
    /// `Stop_Command_6` (falls back to `stop`).
    pub stop6: Option<AtLine<String>>,
    /// `Target = ip`: match knocks sent to this address.
    pub target: Option<AtLine<String>>,
    /// Extension `AllowDuplicates` (knockd PR #72): a copy of the knock just
    /// matched changes nothing instead of breaking the sequence.
    pub allow_duplicates: bool,
    /// Extension `Lockout = s`: a broken sequence ignores its source this
    /// long (off by default, as in knockd).
    pub lockout: Option<Duration>,
    /// Extension `Allow_Shell`: this door's commands may use shell syntax.
    pub allow_shell: bool,
}

impl KnockdDoor {
    /// A door named `name` at `line` with knockd's defaults and no sequence.
    pub fn new(name: &str, line: usize) -> Self {
        Self {
            name: name.to_string(),
            line,
            sequence: SequenceSource::Fixed(AtLine {
                value: Vec::new(),
                line,
            }),
            seq_timeout: DEFAULT_SEQ_TIMEOUT,
            tcp_flags: TcpFlags::default(),
            start: None,
            start6: None,
            cmd_timeout: DEFAULT_CMD_TIMEOUT,
            stop: None,
            stop6: None,
            target: None,
            allow_duplicates: false,
            lockout: None,
            allow_shell: false,
        }
    }

    /// The knocks that open the door now (empty: an exhausted one-time file).
    pub fn knocks(&self) -> &[KnockPort] {
        match &self.sequence {
            SequenceSource::Fixed(seq) => &seq.value,
            SequenceSource::OneTime { current, .. } => current.as_deref().unwrap_or(&[]),
        }
    }

    /// The line that defines the sequence.
    pub fn sequence_line(&self) -> usize {
        match &self.sequence {
            SequenceSource::Fixed(seq) => seq.line,
            SequenceSource::OneTime { path, .. } => path.line,
        }
    }

    /// The start and stop commands for a knocker of this family, with
    /// knockd's fallback from `_6` to the IPv4 ones.
    pub fn commands(&self, ipv6: bool) -> (Option<&AtLine<String>>, Option<&AtLine<String>>) {
        if ipv6 {
            (
                self.start6.as_ref().or(self.start.as_ref()),
                self.stop6.as_ref().or(self.stop.as_ref()),
            )
        } else {
            (self.start.as_ref(), self.stop.as_ref())
        }
    }
}

/// A whole knockd.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockdFile {
    /// The file read.
    pub path: PathBuf,
    /// `[options]`.
    pub options: Options,
    /// The doors, in file order.
    pub doors: Vec<KnockdDoor>,
}
