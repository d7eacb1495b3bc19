//! The file as serde reads it: every key of the TOML file, each value that
//! gets a check of its own kept with its span, and the way back from an
//! [`Issue`]'s place (door, key, item) to the span it points at.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::issue::{Issue, Key};

/// A number or a string in the file, kept as text for its parser and the
/// error message (`window = 10`, `window = "250ms"`, `sequence = [1234, "5678:tcp"]`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        de.deserialize_any(Visitor)
    }
}

pub(super) type List<T> = Spanned<Vec<Spanned<T>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    pub(super) bind: Option<List<String>>,
    pub(super) firewall: Option<Spanned<String>>,
    pub(super) deny: Option<Spanned<String>>,
    pub(super) keep_established: Option<bool>,
    pub(super) max_tracked: Option<Spanned<i64>>,
    pub(super) max_grants: Option<Spanned<i64>>,
    pub(super) instance: Option<Spanned<String>>,
    pub(super) iptables_position: Option<Spanned<String>>,
    pub(super) log_level: Option<Spanned<String>>,
    pub(super) log_format: Option<Spanned<String>>,
    pub(super) stats_listen: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) control_group: Option<Spanned<String>>,
    pub(super) upstream: Option<Spanned<String>>,
    pub(super) flag: Option<Spanned<String>>,
    pub(super) close_after: Option<Spanned<Scalar>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) spa: Option<RawSpa>,
    pub(super) capture: Option<Spanned<String>>,
    pub(super) interface: Option<List<String>>,
    pub(super) nflog_group: Option<Spanned<i64>>,
    pub(super) fleet: Option<Spanned<crate::fleet::RawFleet>>,
    #[serde(default)]
    pub(super) door: Vec<Spanned<RawDoor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSpa {
    pub(super) port: Option<Spanned<i64>>,
    pub(super) access: Spanned<String>,
    pub(super) allow_no_hmac: Option<bool>,
    pub(super) max_age: Option<Spanned<i64>>,
    pub(super) require_source_match: Option<bool>,
    pub(super) replay_cache: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDoor {
    pub(super) name: Spanned<String>,
    pub(super) sequence: Spanned<RawSequence>,
    pub(super) window: Option<Spanned<Scalar>>,
    pub(super) access: Option<Spanned<Scalar>>,
    pub(super) lockout: Option<Spanned<Scalar>>,
    pub(super) protected: List<Scalar>,
    pub(super) allow: Option<List<String>>,
    pub(super) fleet: Option<bool>,
    pub(super) decoys: Option<RawDecoys>,
}

/// `decoys = true | false | [ports]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDecoys {
    Switch(bool),
    Ports(Vec<i64>),
}

/// A door's sequence: a list of knocks, or a rotating sequence's table.
#[derive(Debug)]
pub(super) enum RawSequence {
    Fixed(Vec<Spanned<Scalar>>),
    Rotate(RawRotate),
}

/// `sequence = { rotate = "door.key", period = "30s", ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRotate {
    pub(super) rotate: String,
    pub(super) period: Scalar,
    pub(super) length: Option<i64>,
    pub(super) ports: Option<String>,
    pub(super) protocols: Option<String>,
    pub(super) state: Option<String>,
}

impl<'de> Deserialize<'de> for RawSequence {
    // By hand, not `untagged`: an untagged enum buffers the value and
    // loses the spans of the list's items.
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSequence;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of knocks or a table { rotate = \"key file\", period = \"30s\", ... }",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawSequence, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawSequence::Fixed(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawSequence, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(map);
                RawRotate::deserialize(de).map(RawSequence::Rotate)
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// The span of item `item` of `list`, or of the whole list.
fn list_span<T>(list: &List<T>, item: Option<usize>) -> Range<usize> {
    match item.and_then(|i| list.get_ref().get(i)) {
        Some(entry) => entry.span(),
        None => list.span(),
    }
}

impl RawDoor {
    /// The span an issue about `key` (item `item`) of this door points at.
    fn span(&self, key: Key, item: Option<usize>) -> Option<Range<usize>> {
        match key {
            Key::Name => Some(self.name.span()),
            Key::Sequence => Some(match self.sequence.get_ref() {
                RawSequence::Fixed(list) => match item.and_then(|i| list.get(i)) {
                    Some(entry) => entry.span(),
                    None => self.sequence.span(),
                },
                RawSequence::Rotate(_) => self.sequence.span(),
            }),
            Key::Protected => Some(list_span(&self.protected, item)),
            Key::Window => self.window.as_ref().map(Spanned::span),
            Key::Access => self.access.as_ref().map(Spanned::span),
            Key::Lockout => self.lockout.as_ref().map(Spanned::span),
            Key::Allow => self.allow.as_ref().map(|l| list_span(l, item)),
            _ => None,
        }
    }
}

impl RawFile {
    pub(super) fn span(&self, issue: &Issue) -> Option<Range<usize>> {
        if let Some(door) = issue.door.and_then(|i| self.door.get(i)) {
            return door
                .get_ref()
                .span(issue.key, issue.item)
                .or(Some(door.span()));
        }
        let num = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        match issue.key {
            Key::Bind => self.bind.as_ref().map(|l| list_span(l, issue.item)),
            Key::MaxTracked => num(&self.max_tracked),
            Key::MaxGrants => num(&self.max_grants),
            Key::MaxConnections => num(&self.max_connections),
            Key::StatsListen => text(&self.stats_listen),
            Key::MetricsListen => text(&self.metrics_listen),
            Key::ControlSocket => text(&self.control_socket),
            Key::ControlGroup => text(&self.control_group),
            Key::Flag => text(&self.flag),
            Key::CloseAfter => self.close_after.as_ref().map(Spanned::span),
            Key::SpaPort => self.spa.as_ref().and_then(|s| num(&s.port)),
            Key::SpaMaxAge => self.spa.as_ref().and_then(|s| num(&s.max_age)),
            Key::Fleet => self.fleet.as_ref().map(Spanned::span),
            _ => None,
        }
    }
}
