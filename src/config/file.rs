//! The TOML configuration file (`--config`), read with serde + toml.
//!
//! Keys are kebab-case and unknown keys are refused (a typo must not pass
//! silently as a default). Every value that gets a check of its own is kept
//! with its span ([`toml::Spanned`]), so each refusal, including those
//! [`ServerConfig::new`] finds across doors, points at a file, line and
//! column. All problems of a file are reported at once, so a reload that
//! is refused lists everything to fix.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use toml::Spanned;

use super::decoys::Decoys;
use super::door::{AllowList, Door, DoorName, KnockPort, ProtectedPort, Timing, parse_network};
use super::globals::ControlSocketSetting;
use super::globals::{Globals, SpaSettings, Word};
use super::issue::{Issue, Key, Problem};
use super::rotating::RotatingSequence;
use super::server_config::ServerConfig;

mod raw;

use raw::{RawDecoys, RawDoor, RawFile, RawRotate, RawSequence, Scalar};

/// One refusal at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration file was refused.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", render_located(path, errors))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order.
        errors: Vec<Located>,
    },
}

fn render_located(path: &Path, errors: &[Located]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message))
        .collect();
    lines.join("\n")
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<ServerConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Checks the configuration `text`; `path` names it in the errors.
pub fn parse(path: &Path, text: &str) -> Result<ServerConfig, LoadError> {
    let invalid = |mut errors: Vec<Located>| {
        errors.sort_by_key(|e| (e.line, e.column));
        LoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        }
    };
    let raw: RawFile = toml::from_str(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        invalid(vec![locate(text, span, err.message().trim().to_string())])
    })?;
    let mut found: Vec<(Range<usize>, Issue)> = Vec::new();
    let globals = globals(&raw, &mut found);
    let doors: Vec<Door> = raw
        .door
        .iter()
        .enumerate()
        .filter_map(|(index, door)| build_door(index, door, &raw, &mut found))
        .collect();
    if found.is_empty() {
        if let Some(globals) = globals {
            match ServerConfig::new(globals, doors) {
                Ok(config) => return Ok(config),
                Err(issues) => {
                    for issue in issues.0 {
                        found.push((raw.span(&issue).unwrap_or(0..0), issue));
                    }
                }
            }
        }
    }
    let errors = found
        .into_iter()
        .map(|(span, issue)| locate(text, span, issue.to_string()))
        .collect();
    Err(invalid(errors))
}

/// Line and column of byte `span.start` in `text`.
fn locate(text: &str, span: Range<usize>, message: String) -> Located {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    Located {
        line,
        column,
        message,
    }
}

/// Parses `value`, recording a refusal at its span.
fn take<T, V>(
    value: &Spanned<V>,
    found: &mut Vec<(Range<usize>, Issue)>,
    place: impl Fn(Problem) -> Issue,
    parse: impl FnOnce(&V) -> Result<T, Problem>,
) -> Option<T> {
    parse(value.get_ref())
        .map_err(|problem| found.push((value.span(), place(problem))))
        .ok()
}

fn global(key: Key) -> impl Fn(Problem) -> Issue {
    move |problem| Issue::at(key, None, problem)
}

/// Text to a duration, without bounds (the door or global checks those).
fn duration(key: Key, text: &Scalar) -> Result<Duration, Problem> {
    let text = text.0.trim();
    if text.starts_with('-') {
        return Err(Problem::NegativeDuration {
            key,
            value: text.to_string(),
        });
    }
    super::parse_duration_unbounded(text).ok_or(Problem::Duration {
        key,
        value: text.to_string(),
    })
}

fn count(key: Key, value: &i64) -> Result<usize, Problem> {
    usize::try_from(*value).map_err(|_| Problem::Count {
        key,
        value: *value,
        min: 1,
        max: super::server_config::MAX_TABLE_BOUND,
    })
}

fn listen(key: Key, text: &str) -> Result<SocketAddr, Problem> {
    text.trim().parse().map_err(|_| Problem::Listen {
        key,
        value: text.to_string(),
        reason: "expected IP:PORT, e.g. 127.0.0.1:9920 or [::1]:9920".to_string(),
    })
}

fn globals(raw: &RawFile, found: &mut Vec<(Range<usize>, Issue)>) -> Option<Globals> {
    let mut g = Globals::default();
    let before = found.len();
    if let Some(list) = &raw.bind {
        let addrs = list.get_ref().iter().enumerate().filter_map(|(i, entry)| {
            let place = move |problem| Issue::at(Key::Bind, Some(i), problem);
            take(entry, found, place, |text: &String| {
                text.trim().parse::<IpAddr>().map_err(|_| Problem::Address {
                    key: Key::Bind,
                    value: text.clone(),
                })
            })
        });
        g.bind = addrs.collect();
    }
    macro_rules! field {
        ($raw:expr, $key:expr, $parse:expr, $set:expr) => {
            if let Some(value) = &$raw {
                if let Some(parsed) = take(value, found, global($key), $parse) {
                    #[allow(clippy::redundant_closure_call)]
                    ($set)(&mut g, parsed);
                }
            }
        };
    }
    field!(
        raw.firewall,
        Key::Firewall,
        |t: &String| Word::parse_word(Key::Firewall, t),
        |g: &mut Globals, v| g.firewall = v
    );
    field!(
        raw.deny,
        Key::Deny,
        |t: &String| Word::parse_word(Key::Deny, t),
        |g: &mut Globals, v| g.deny = v
    );
    field!(
        raw.log_level,
        Key::LogLevel,
        |t: &String| Word::parse_word(Key::LogLevel, t),
        |g: &mut Globals, v| g.log_level = v
    );
    field!(
        raw.log_format,
        Key::LogFormat,
        |t: &String| Word::parse_word(Key::LogFormat, t),
        |g: &mut Globals, v| g.log_format = v
    );
    field!(
        raw.iptables_position,
        Key::IptablesPosition,
        |t: &String| Word::parse_word(Key::IptablesPosition, t),
        |g: &mut Globals, v| g.iptables_position = v
    );
    field!(
        raw.instance,
        Key::Instance,
        |t: &String| t.parse().map_err(|_| Problem::Instance(t.clone())),
        |g: &mut Globals, v| g.instance = v
    );
    field!(
        raw.max_tracked,
        Key::MaxTracked,
        |v: &i64| count(Key::MaxTracked, v),
        |g: &mut Globals, v| g.max_tracked = v
    );
    field!(
        raw.max_grants,
        Key::MaxGrants,
        |v: &i64| count(Key::MaxGrants, v),
        |g: &mut Globals, v| g.max_grants = v
    );
    field!(
        raw.max_connections,
        Key::MaxConnections,
        |v: &i64| count(Key::MaxConnections, v),
        |g: &mut Globals, v| g.max_connections = v
    );
    field!(
        raw.stats_listen,
        Key::StatsListen,
        |t: &String| listen(Key::StatsListen, t),
        |g: &mut Globals, v| g.stats_listen = Some(v)
    );
    field!(
        raw.metrics_listen,
        Key::MetricsListen,
        |t: &String| listen(Key::MetricsListen, t),
        |g: &mut Globals, v| g.metrics_listen = Some(v)
    );
    field!(
        raw.control_socket,
        Key::ControlSocket,
        |t: &String| Ok::<_, Problem>(ControlSocketSetting::parse(t)),
        |g: &mut Globals, v| g.control_socket = v
    );
    field!(
        raw.control_group,
        Key::ControlGroup,
        |t: &String| Ok::<_, Problem>(t.trim().to_string()),
        |g: &mut Globals, v| g.control_group = Some(v)
    );
    field!(
        raw.close_after,
        Key::CloseAfter,
        |t: &Scalar| duration(Key::CloseAfter, t),
        |g: &mut Globals, v| g.close_after = v
    );
    field!(
        raw.upstream,
        Key::Upstream,
        |t: &String| nonempty(Key::Upstream, t),
        |g: &mut Globals, v| g.upstream = Some(v)
    );
    field!(
        raw.flag,
        Key::Flag,
        |t: &String| Ok(t.clone()),
        |g: &mut Globals, v| g.flag = v
    );
    field!(
        raw.capture,
        Key::Capture,
        |t: &String| Word::parse_word(Key::Capture, t),
        |g: &mut Globals, v| g.capture.kind = v
    );
    field!(
        raw.nflog_group,
        Key::NflogGroup,
        |v: &i64| u16::try_from(*v).map_err(|_| Problem::Count {
            key: Key::NflogGroup,
            value: *v,
            min: 0,
            max: u64::from(u16::MAX),
        }),
        |g: &mut Globals, v| g.capture.nflog_group = v
    );
    if let Some(list) = &raw.interface {
        let names = list.get_ref().iter().enumerate().filter_map(|(i, entry)| {
            let place = move |problem| Issue::at(Key::Interface, Some(i), problem);
            take(entry, found, place, |text: &String| {
                super::globals::check_interface(text).map(|()| text.clone())
            })
        });
        g.capture.interfaces = names.collect();
    }
    if let Some(keep) = raw.keep_established {
        g.keep_established = keep;
    }
    if let Some(spa) = &raw.spa {
        let mut s = SpaSettings::with_access(PathBuf::from(spa.access.get_ref()));
        if spa.access.get_ref().trim().is_empty() {
            found.push((
                spa.access.span(),
                Issue::at(Key::SpaAccess, None, Problem::Empty(Key::SpaAccess)),
            ));
        }
        if let Some(port) = &spa.port {
            let parse = |v: &i64| match u16::try_from(*v) {
                Ok(p) if p != 0 => Ok(p),
                _ => Err(Problem::Port {
                    key: Key::SpaPort,
                    value: *v,
                }),
            };
            s.port = take(port, found, global(Key::SpaPort), parse).unwrap_or(s.port);
        }
        if let Some(age) = &spa.max_age {
            let parse = |v: &i64| {
                u64::try_from(*v).map_err(|_| Problem::Count {
                    key: Key::SpaMaxAge,
                    value: *v,
                    min: 1,
                    max: super::server_config::MAX_SPA_AGE,
                })
            };
            s.max_age_secs =
                take(age, found, global(Key::SpaMaxAge), parse).unwrap_or(s.max_age_secs);
        }
        s.allow_no_hmac = spa.allow_no_hmac.unwrap_or(false);
        s.require_source_match = spa.require_source_match.unwrap_or(false);
        if let Some(cache) = &spa.replay_cache {
            s.replay_cache = PathBuf::from(cache.get_ref());
        }
        g.spa = Some(s);
    }
    if let Some(fleet) = &raw.fleet {
        match fleet.get_ref().validate() {
            Ok(settings) => g.fleet = Some(settings),
            Err(e) => found.push((
                fleet.span(),
                Issue::at(Key::Fleet, None, Problem::Fleet(e.0)),
            )),
        }
    }
    (found.len() == before).then_some(g)
}

fn nonempty(key: Key, text: &str) -> Result<String, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::Empty(key));
    }
    Ok(text.to_string())
}

/// A rotating sequence from its table (`config/rotating.rs`).
fn rotating_sequence(raw: &RawRotate) -> Result<RotatingSequence, Problem> {
    let period = duration(Key::Sequence, &raw.period)?;
    let length = match raw.length {
        None => crate::config::rotating::DEFAULT_LENGTH,
        Some(n) => usize::try_from(n)
            .map_err(|_| Problem::Rotation(format!("length {n} is out of range")))?,
    };
    let ports = raw
        .ports
        .as_deref()
        .unwrap_or(crate::config::rotating::DEFAULT_PORTS);
    let protocols = raw.protocols.as_deref().unwrap_or("udp");
    let state = raw.state.as_ref().map(PathBuf::from);
    RotatingSequence::new(
        Path::new(&raw.rotate),
        period,
        length,
        ports,
        protocols,
        state,
    )
}

fn build_door(
    index: usize,
    spanned: &Spanned<RawDoor>,
    raw: &RawFile,
    found: &mut Vec<(Range<usize>, Issue)>,
) -> Option<Door> {
    let door = spanned.get_ref();
    let fleet = door.fleet.unwrap_or(false);
    let label = door.name.get_ref().clone();
    let before = found.len();
    let place = |key: Key, item: Option<usize>| {
        let label = label.clone();
        move |problem| Issue::at(key, item, problem).in_door(index, &label)
    };
    let name = take(&door.name, found, place(Key::Name, None), |t: &String| {
        t.parse::<DoorName>()
    });
    let (sequence, rotating): (Vec<KnockPort>, _) = match door.sequence.get_ref() {
        RawSequence::Fixed(list) => {
            let knocks = list.iter().enumerate().filter_map(|(i, knock)| {
                take(knock, found, place(Key::Sequence, Some(i)), |t: &Scalar| {
                    t.0.parse()
                })
            });
            (knocks.collect(), None)
        }
        RawSequence::Rotate(raw) => {
            let rotating = rotating_sequence(raw).map_err(place(Key::Sequence, None));
            match rotating {
                Ok(rotating) => (Vec::new(), Some(rotating)),
                Err(issue) => {
                    found.push((door.sequence.span(), issue));
                    (Vec::new(), None)
                }
            }
        }
    };
    let protected: Vec<ProtectedPort> = door
        .protected
        .get_ref()
        .iter()
        .enumerate()
        .filter_map(|(i, port)| {
            take(port, found, place(Key::Protected, Some(i)), |t: &Scalar| {
                t.0.parse()
            })
        })
        .collect();
    let mut timing = Timing::default();
    for (key, value, slot) in [
        (Key::Window, &door.window, &mut timing.window),
        (Key::Access, &door.access, &mut timing.access),
        (Key::Lockout, &door.lockout, &mut timing.lockout),
    ] {
        if let Some(value) = value {
            if let Some(parsed) = take(value, found, place(key, None), |t: &Scalar| {
                duration(key, t)
            }) {
                *slot = parsed;
            }
        }
    }
    let allow = match &door.allow {
        None => Some(AllowList::everything()),
        Some(list) => {
            let nets: Vec<_> = list
                .get_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, net)| {
                    take(net, found, place(Key::Allow, Some(i)), |t: &String| {
                        parse_network(t)
                    })
                })
                .collect();
            let all_parsed = nets.len() == list.get_ref().len();
            match AllowList::new(nets) {
                Ok(allow) => Some(allow),
                Err(problem) if all_parsed => {
                    found.push((list.span(), place(Key::Allow, None)(problem)));
                    None
                }
                Err(_) => None,
            }
        }
    };
    if found.len() != before {
        return None;
    }
    let built = match rotating {
        Some(rotating) => Door::rotating(name?, rotating, timing, protected, allow?),
        None => Door::new(name?, sequence, timing, protected, allow?),
    };
    let decoys = match &door.decoys {
        None | Some(RawDecoys::Switch(true)) => Decoys::Band(crate::config::decoys::DEFAULT_BAND),
        Some(RawDecoys::Switch(false)) => Decoys::Off,
        Some(RawDecoys::Ports(ports)) => {
            let parsed: Option<Vec<u16>> = ports
                .iter()
                .map(|&p| u16::try_from(p).ok().filter(|&p| p > 0))
                .collect();
            match parsed {
                Some(ports) => Decoys::Set(ports),
                None => {
                    let problem = Problem::Rotation(format!(
                        "decoys {ports:?}: expected true, false or a list of ports 1-65535"
                    ));
                    found.push((spanned.span(), place(Key::Sequence, None)(problem)));
                    return None;
                }
            }
        }
    };
    let door_issues = match built.map(|d| d.with_decoys(decoys)) {
        Ok(door) => return Some(door.with_fleet(fleet)),
        Err(issues) => issues,
    };
    for issue in door_issues {
        let issue = issue.in_door(index, &label);
        found.push((raw.span(&issue).unwrap_or(spanned.span()), issue));
    }
    None
}

#[cfg(test)]
mod tests;
