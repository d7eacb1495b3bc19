//! Reading a knockd.conf with knockd 0.8's lexical rules (`parseconfig`
//! in `src/knockd.c`; research note §2.2): lines trimmed, `#` comments only
//! at the start of a line, `[name]` sections, `key = value` split at the
//! first `=`, keys case-insensitive, a bare `UseSyslog`, unknown keys
//! fatal, a door without a sequence fatal. The first problem stops the
//! read, as in knockd, and is reported once with its file and line.
//!
//! Where knockd is silently lax, this reader refuses with the line instead
//! (README, "Migrating from knockd"): a port or timeout that is not a
//! number (knockd's `atoi` turns it into 0), port 0, a sequence longer than
//! 32 (knockd truncates).

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::model::{AtLine, KnockdDoor, KnockdFile, MAX_SEQUENCE, SequenceSource, TCP_FLAGS};
use super::one_time;
use crate::config::{KnockPort, Proto};

/// A refused knockd.conf: one message with its file and line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}:{line}: {message}", path.display())]
pub struct ConfError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfError {
    /// A refusal of `path` at `line`.
    pub fn new(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Reads and parses the knockd.conf at `path` (and the one-time sequence
/// files it names).
pub fn load(path: &Path) -> Result<KnockdFile, ConfError> {
    let text = std::fs::read(path)
        .map_err(|err| ConfError::new(path, 0, format!("cannot read the file: {err}")))?;
    parse(path, &String::from_utf8_lossy(&text))
}

enum Section {
    None,
    Options,
    Door,
}

/// Parses knockd.conf `text`; `path` names it in errors and anchors
/// relative one-time sequence files (knockd opens them from its working
/// directory; an absolute path is the usual).
pub fn parse(path: &Path, text: &str) -> Result<KnockdFile, ConfError> {
    let mut file = KnockdFile {
        path: path.to_path_buf(),
        options: Default::default(),
        doors: Vec::new(),
    };
    let mut section = Section::None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| ConfError::new(path, line, message);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with('[') && trimmed.ends_with(']') && trimmed.len() >= 2 {
            let name = &trimmed[1..trimmed.len() - 1];
            if name == "options" {
                section = Section::Options;
            } else {
                // knockd truncates names to 127 bytes; keep it whole.
                file.doors.push(KnockdDoor::new(name, line));
                section = Section::Door;
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            if trimmed.eq_ignore_ascii_case("usesyslog") {
                file.options.use_syslog = true;
                continue;
            }
            return Err(err(format!(
                "syntax error: '{trimmed}' is not 'key = value' (only UseSyslog stands alone)"
            )));
        };
        let key = key.trim().to_ascii_uppercase();
        let value = value.trim();
        match section {
            Section::None => {
                return Err(err(format!(
                    "'{}' before any section: start the file with [options] or a [door]",
                    key.to_ascii_lowercase()
                )));
            }
            Section::Options => option(&mut file, &key, value, line).map_err(err)?,
            Section::Door => {
                let door = file.doors.last_mut().expect("a door section is open");
                directive(door, path, &key, value, line).map_err(err)?;
            }
        }
    }
    for door in &file.doors {
        if let SequenceSource::Fixed(seq) = &door.sequence {
            if seq.value.is_empty() {
                return Err(ConfError::new(
                    path,
                    door.line,
                    format!(
                        "door '{}' has an empty knock sequence: give it Sequence = ports or One_Time_Sequences = file",
                        door.name
                    ),
                ));
            }
        }
    }
    Ok(file)
}

fn option(file: &mut KnockdFile, key: &str, value: &str, line: usize) -> Result<(), String> {
    let at = |v| AtLine { value: v, line };
    match key {
        "USESYSLOG" => {
            return Err(
                "syntax error: UseSyslog takes no value (write the bare word UseSyslog)".into(),
            );
        }
        "LOGFILE" => file.options.log_file = Some(at(PathBuf::from(value))),
        "PIDFILE" => file.options.pid_file = Some(at(PathBuf::from(value))),
        "INTERFACE" => {
            file.options.interface = Some(AtLine {
                value: value.to_string(),
                line,
            })
        }
        other => {
            return Err(format!(
                "unknown option '{other}' in [options] (allowed: UseSyslog, LogFile, PidFile, Interface)"
            ));
        }
    }
    Ok(())
}

const DOOR_KEYS: &str = "Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Start_Command, Start_Command_6, Cmd_Timeout, Stop_Command, Stop_Command_6, Target; portknock's AllowDuplicates, Lockout, Allow_Shell";

fn directive(
    door: &mut KnockdDoor,
    path: &Path,
    key: &str,
    value: &str,
    line: usize,
) -> Result<(), String> {
    let text = |v: &str| {
        Some(AtLine {
            value: v.to_string(),
            line,
        })
    };
    match key {
        "SEQUENCE" => {
            door.sequence = SequenceSource::Fixed(AtLine {
                value: parse_sequence(value)?,
                line,
            })
        }
        "ONE_TIME_SEQUENCES" => {
            let file = resolve(path, value);
            let current = one_time::first_unused(&file).map_err(|err| err.to_string())?;
            door.sequence = SequenceSource::OneTime {
                path: AtLine { value: file, line },
                current,
            };
        }
        "SEQ_TIMEOUT" | "TIMEOUT" => door.seq_timeout = seconds(key, value, 1)?,
        "CMD_TIMEOUT" => door.cmd_timeout = seconds(key, value, 0)?,
        "TCPFLAGS" => {
            for word in value.split(',') {
                // knockd splits at commas without trimming: `syn, ack`
                // names the flag " ack", which it refuses too.
                let (clear, name) = match word.strip_prefix('!') {
                    Some(name) => (true, name),
                    None => (false, word),
                };
                let bit = TCP_FLAGS
                    .iter()
                    .find(|(flag, _)| flag.eq_ignore_ascii_case(name))
                    .map(|(_, bit)| *bit)
                    .ok_or_else(|| {
                        format!(
                            "unrecognized TCP flag '{word}' (allowed: fin, syn, rst, psh, ack, urg, each optionally with !; comma-separated without spaces)"
                        )
                    })?;
                if clear {
                    door.tcp_flags.clear |= bit;
                } else {
                    door.tcp_flags.set |= bit;
                }
            }
            door.tcp_flags.line = line;
        }
        "START_COMMAND" | "COMMAND" => door.start = text(value),
        "START_COMMAND_6" | "COMMAND_6" => door.start6 = text(value),
        "STOP_COMMAND" => door.stop = text(value),
        "STOP_COMMAND_6" => door.stop6 = text(value),
        "TARGET" => door.target = text(value),
        "ALLOWDUPLICATES" | "ALLOW_DUPLICATES" => door.allow_duplicates = yes_no(key, value)?,
        "ALLOW_SHELL" => door.allow_shell = yes_no(key, value)?,
        "LOCKOUT" => door.lockout = Some(seconds(key, value, 0)?),
        other => {
            return Err(format!(
                "unknown directive '{other}' (allowed: {DOOR_KEYS})"
            ));
        }
    }
    Ok(())
}

fn resolve(conf: &Path, value: &str) -> PathBuf {
    let file = PathBuf::from(value);
    if file.is_absolute() {
        return file;
    }
    conf.parent().unwrap_or(Path::new(".")).join(file)
}

/// Whole seconds, at least `min` (knockd reads them with `atoi`).
fn seconds(key: &str, value: &str, min: u64) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(secs) if secs >= min && secs <= 24 * 60 * 60 => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{key} = '{value}': expected whole seconds from {min} to 86400"
        )),
    }
}

fn yes_no(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("{key} = '{value}': expected yes or no")),
    }
}

/// Parses `p[:tcp|udp],...` as knockd does (protocol TCP by default,
/// trimmed, case-insensitive), refusing what knockd would turn into port 0.
pub fn parse_sequence(value: &str) -> Result<Vec<KnockPort>, String> {
    let mut knocks = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (port, proto) = match item.split_once(':') {
            Some((port, proto)) => {
                let proto = match proto.trim().to_ascii_lowercase().as_str() {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => {
                        return Err(format!(
                            "unknown protocol '{}' in sequence item '{item}' (allowed: tcp, udp)",
                            proto.trim()
                        ));
                    }
                };
                (port.trim(), proto)
            }
            None => (item, Proto::Tcp),
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(format!(
                    "bad port '{port}' in sequence item '{item}' (allowed: 1 to 65535)"
                ));
            }
        };
        knocks.push(KnockPort { port, proto });
    }
    if knocks.len() > MAX_SEQUENCE {
        return Err(format!(
            "the sequence has {} knocks; knockd allows at most {MAX_SEQUENCE}",
            knocks.len()
        ));
    }
    Ok(knocks)
}

#[cfg(test)]
mod tests;
