//! Validated configuration: the one place that rejects bad values.
//!
//! Binaries turn their flags into these types once, at start-up; nothing
//! after that sees a raw string. Every error names the value it refused and
//! what is allowed, in one line, so `knock-server --window 0` tells the user
//! exactly what to change.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

pub mod decoys;
pub mod door;
pub mod file;
pub mod globals;
pub mod issue;
pub mod render;
pub mod rotating;
pub mod server_config;

pub use door::{AllowList, Door, DoorName, KnockPort, ProtectedPort, Proto, Timing};
pub use file::{LoadError, Located};
pub use globals::{Deny, GlobalOverrides, Globals, LogFormat, LogLevel, SpaSettings};
pub use issue::{Issue, Issues, Key, Problem};
pub use render::{MASK, Reveal};
pub use server_config::{SeedFlags, ServerConfig};

/// Default knock sequence (DESIGN.md: `1234,5678,9012`).
pub const DEFAULT_SEQUENCE: &str = "1234,5678,9012";
/// Default protected TCP port.
pub const DEFAULT_PROTECTED_PORT: u16 = 2222;
/// Default time allowed from the first knock to the last.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Default time a grant keeps the protected port open.
pub const DEFAULT_ACCESS: Duration = Duration::from_secs(30);
/// Default time an IP is ignored after a wrong knock.
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(5);
/// Default flag served by the protected service.
pub const DEFAULT_FLAG: &str = "FLAG{port_knock1ng_m4st3r_2024}";
/// Default bound on tracked source IPs (in progress or locked out).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;
/// Longest duration accepted anywhere (one day): longer values are typos.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest knock sequence accepted.
pub const MAX_SEQUENCE_LEN: usize = 64;

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A port that is not a number in 1..=65535.
    #[error("invalid port '{value}': expected a number from 1 to 65535")]
    Port {
        /// The text that was given.
        value: String,
    },
    /// An empty knock sequence.
    #[error(
        "invalid sequence '{value}': expected 1 to {MAX_SEQUENCE_LEN} comma-separated ports, e.g. 1234,5678,9012"
    )]
    Sequence {
        /// The text that was given.
        value: String,
    },
    /// A duration that does not parse or is out of range.
    #[error(
        "invalid duration '{value}': expected a positive number of seconds up to 1 day, optionally with a unit (10, 0.5, 10s, 250ms, 1m, 1h)"
    )]
    Duration {
        /// The text that was given.
        value: String,
    },
    /// The protected port is also one of the knock ports.
    #[error(
        "protected port {port} is also in the knock sequence: the knock ports and the protected port must differ"
    )]
    ProtectedPortInSequence {
        /// The clashing port.
        port: u16,
    },
    /// A bound on tracked IPs of zero.
    #[error("invalid --max-tracked '{value}': expected a whole number of at least 1")]
    MaxTracked {
        /// The text that was given.
        value: String,
    },
}

/// Parses a TCP/UDP port: a number in 1..=65535.
pub fn parse_port(text: &str) -> Result<u16, ConfigError> {
    match text.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigError::Port {
            value: text.to_string(),
        }),
    }
}

/// Parses a duration: plain seconds (`10`, `0.5`) or a number with a unit
/// (`250ms`, `10s`, `1m`, `1h`). Zero, negative and over one day are refused.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let refuse = || ConfigError::Duration {
        value: text.to_string(),
    };
    let duration = parse_duration_unbounded(text).ok_or_else(refuse)?;
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(refuse());
    }
    Ok(duration)
}

/// Parses a non-negative duration like [`parse_duration`] without its
/// bounds (a door checks its own); `None` if it does not parse.
pub fn parse_duration_unbounded(text: &str) -> Option<Duration> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
}

/// Parses the bound on tracked IPs: a whole number of at least 1.
pub fn parse_max_tracked(text: &str) -> Result<usize, ConfigError> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ConfigError::MaxTracked {
            value: text.to_string(),
        }),
    }
}

/// A knock sequence: one or more ports, repeats allowed (`1111,1111,2222`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence(Vec<u16>);

impl Sequence {
    /// Builds a sequence from ports; refuses an empty, too long or port-0 one.
    pub fn new(ports: Vec<u16>) -> Result<Self, ConfigError> {
        if ports.is_empty() || ports.len() > MAX_SEQUENCE_LEN {
            return Err(ConfigError::Sequence {
                value: join_ports(&ports),
            });
        }
        if ports.contains(&0) {
            return Err(ConfigError::Port {
                value: "0".to_string(),
            });
        }
        Ok(Self(ports))
    }

    /// The ports in knock order.
    pub fn ports(&self) -> &[u16] {
        &self.0
    }

    /// Number of knocks in the sequence.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a sequence has at least one port.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The distinct ports, in first-seen order: one listener each.
    pub fn distinct_ports(&self) -> Vec<u16> {
        let mut seen = Vec::new();
        for &port in &self.0 {
            if !seen.contains(&port) {
                seen.push(port);
            }
        }
        seen
    }
}

impl Default for Sequence {
    fn default() -> Self {
        DEFAULT_SEQUENCE.parse().expect("default sequence is valid")
    }
}

impl FromStr for Sequence {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(ConfigError::Sequence {
                value: text.to_string(),
            });
        }
        let ports = text
            .split(',')
            .map(parse_port)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(ports).map_err(|err| match err {
            ConfigError::Sequence { .. } => ConfigError::Sequence {
                value: text.to_string(),
            },
            other => other,
        })
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join_ports(&self.0))
    }
}

fn join_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The rules the knock core applies: what to knock, how fast, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockRules {
    /// The secret sequence.
    pub sequence: Sequence,
    /// Longest time from the first knock to the last.
    pub window: Duration,
    /// How long a grant keeps the protected port open.
    pub access: Duration,
    /// How long a wrong knock locks its source out.
    pub lockout: Duration,
    /// Bound on tracked source IPs (in progress or locked out).
    pub max_tracked: usize,
}

impl Default for KnockRules {
    fn default() -> Self {
        Self {
            sequence: Sequence::default(),
            window: DEFAULT_WINDOW,
            access: DEFAULT_ACCESS,
            lockout: DEFAULT_LOCKOUT,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

/// Checks that the protected port is not one of the knock ports.
pub fn check_protected_port(sequence: &Sequence, protected_port: u16) -> Result<(), ConfigError> {
    if sequence.ports().contains(&protected_port) {
        return Err(ConfigError::ProtectedPortInSequence {
            port: protected_port,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_accept_the_valid_range_only() {
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(parse_port(" 2222 "), Ok(2222));
        for bad in ["0", "65536", "-1", "abc", "", "12.5", "99999999999"] {
            let err = parse_port(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
            assert!(err.to_string().contains("1 to 65535"), "{err}");
        }
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn durations_refuse_zero_negative_garbage_and_huge() {
        for bad in [
            "0",
            "0s",
            "-1",
            "-0.5",
            "",
            "s",
            "10x",
            "abc",
            "1e3",
            "1.2.3",
            "25h",
            "0.0000000001",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn sequences_parse_with_repeats() {
        let seq: Sequence = "1111,1111,2222".parse().unwrap();
        assert_eq!(seq.ports(), &[1111, 1111, 2222]);
        assert_eq!(seq.distinct_ports(), vec![1111, 2222]);
        assert_eq!(seq.to_string(), "1111,1111,2222");
        assert_eq!(Sequence::default().ports(), &[1234, 5678, 9012]);
    }

    #[test]
    fn sequences_refuse_empty_and_bad_ports() {
        assert!(matches!(
            "".parse::<Sequence>(),
            Err(ConfigError::Sequence { .. })
        ));
        assert!(matches!(
            "1234,,9012".parse::<Sequence>(),
            Err(ConfigError::Port { .. })
        ));
        assert_eq!(
            "1234,0".parse::<Sequence>(),
            Err(ConfigError::Port { value: "0".into() })
        );
        assert_eq!(
            "1234,70000".parse::<Sequence>(),
            Err(ConfigError::Port {
                value: "70000".into()
            })
        );
        let long = vec!["1"; MAX_SEQUENCE_LEN + 1].join(",");
        assert!(matches!(
            long.parse::<Sequence>(),
            Err(ConfigError::Sequence { .. })
        ));
    }

    #[test]
    fn protected_port_must_not_be_a_knock_port() {
        let seq = Sequence::default();
        assert!(check_protected_port(&seq, 2222).is_ok());
        let err = check_protected_port(&seq, 5678).unwrap_err();
        assert!(err.to_string().contains("5678"));
    }

    #[test]
    fn max_tracked_must_be_positive() {
        assert_eq!(parse_max_tracked("1"), Ok(1));
        assert!(parse_max_tracked("0").is_err());
        assert!(parse_max_tracked("x").is_err());
    }
}
