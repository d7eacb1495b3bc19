//! The effective configuration as TOML: what `knock-server --check-config`
//! prints, with secrets masked, and a file that reads back to the same
//! configuration when secrets are shown (checked by a property test).

use std::fmt::Write as _;
use std::time::Duration;

use super::globals::Word;
use super::server_config::ServerConfig;

/// What the rendering does with secrets (the built-in service's flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Replace them with [`MASK`]: for logs and `--check-config`.
    Masked,
    /// Write them out: for a file that must read back the same.
    Secrets,
}

/// What a masked secret reads as.
pub const MASK: &str = "********";

/// A duration as the shortest text [`super::parse_duration`] reads back:
/// `10s`, `250ms`, or fractional seconds below a millisecond.
pub fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

impl ServerConfig {
    /// The configuration as a TOML file.
    pub fn render(&self, reveal: Reveal) -> String {
        let g = self.globals();
        let mut out = String::new();
        let o = &mut out;
        if !g.bind.is_empty() {
            let _ = writeln!(o, "bind = {}", list(&g.bind));
        }
        let _ = writeln!(o, "firewall = {}", quote(g.firewall.word()));
        let _ = writeln!(o, "deny = {}", quote(g.deny.word()));
        let _ = writeln!(o, "keep-established = {}", g.keep_established);
        let _ = writeln!(o, "max-tracked = {}", g.max_tracked);
        let _ = writeln!(o, "max-grants = {}", g.max_grants);
        let _ = writeln!(o, "instance = {}", quote(&g.instance.to_string()));
        let _ = writeln!(
            o,
            "iptables-position = {}",
            quote(g.iptables_position.word())
        );
        let _ = writeln!(o, "log-level = {}", quote(g.log_level.word()));
        let _ = writeln!(o, "log-format = {}", quote(g.log_format.word()));
        if let Some(addr) = g.stats_listen {
            let _ = writeln!(o, "stats-listen = {}", quote(&addr.to_string()));
        }
        if let Some(addr) = g.metrics_listen {
            let _ = writeln!(o, "metrics-listen = {}", quote(&addr.to_string()));
        }
        if let crate::config::globals::ControlSocketSetting::At(path) = &g.control_socket {
            let _ = writeln!(o, "control-socket = {}", quote(&path.display().to_string()));
        }
        if let crate::config::globals::ControlSocketSetting::Off = &g.control_socket {
            let _ = writeln!(o, "control-socket = \"none\"");
        }
        if let Some(group) = &g.control_group {
            let _ = writeln!(o, "control-group = {}", quote(group));
        }
        if let Some(upstream) = &g.upstream {
            let _ = writeln!(o, "upstream = {}", quote(upstream));
        }
        let flag = match reveal {
            Reveal::Masked => MASK,
            Reveal::Secrets => g.flag.as_str(),
        };
        let _ = writeln!(o, "flag = {}", quote(flag));
        let _ = writeln!(o, "close-after = {}", quote(&duration_text(g.close_after)));
        let _ = writeln!(o, "max-connections = {}", g.max_connections);
        let _ = writeln!(o, "capture = {}", quote(g.capture.kind.word()));
        if !g.capture.interfaces.is_empty() {
            let _ = writeln!(o, "interface = {}", list(&g.capture.interfaces));
        }
        let _ = writeln!(o, "nflog-group = {}", g.capture.nflog_group);
        if let Some(spa) = &g.spa {
            let _ = writeln!(o, "\n[spa]");
            let _ = writeln!(o, "port = {}", spa.port);
            let _ = writeln!(o, "access = {}", quote(&spa.access.display().to_string()));
            let _ = writeln!(o, "allow-no-hmac = {}", spa.allow_no_hmac);
            let _ = writeln!(o, "max-age = {}", spa.max_age_secs);
            let _ = writeln!(o, "require-source-match = {}", spa.require_source_match);
            let _ = writeln!(
                o,
                "replay-cache = {}",
                quote(&spa.replay_cache.display().to_string())
            );
        }
        if let Some(fleet) = &g.fleet {
            let _ = write!(o, "\n{}", fleet.render(reveal == Reveal::Secrets));
        }
        for door in self.doors() {
            let timing = door.timing();
            let _ = writeln!(o, "\n[[door]]");
            let _ = writeln!(o, "name = {}", quote(door.name().as_str()));
            match door.rotating_sequence() {
                None => {
                    let _ = writeln!(o, "sequence = {}", list(door.sequence()));
                }
                Some(r) => {
                    let (rot, path) = (r.rotation, |p: &std::path::Path| {
                        quote(&p.display().to_string())
                    });
                    let _ = writeln!(
                        o,
                        "sequence = {{ rotate = {}, period = {}, length = {}, ports = \"{}-{}\", protocols = \"{}\", state = {} }}",
                        path(&r.key_path),
                        quote(&duration_text(rot.period)),
                        rot.length,
                        rot.first,
                        rot.last,
                        r.proto,
                        path(&r.state),
                    );
                }
            }
            let _ = writeln!(o, "window = {}", quote(&duration_text(timing.window)));
            let _ = writeln!(o, "access = {}", quote(&duration_text(timing.access)));
            let _ = writeln!(o, "lockout = {}", quote(&duration_text(timing.lockout)));
            let _ = writeln!(o, "protected = {}", list(door.protected()));
            let _ = writeln!(o, "allow = {}", list(door.allow().networks()));
            if door.fleet() {
                let _ = writeln!(o, "fleet = true");
            }
            match door.decoys() {
                crate::config::decoys::Decoys::Off => {
                    let _ = writeln!(o, "decoys = false");
                }
                crate::config::decoys::Decoys::Band(_) => {
                    let _ = writeln!(o, "decoys = true");
                }
                crate::config::decoys::Decoys::Set(ports) => {
                    let _ = writeln!(o, "decoys = {ports:?}");
                }
            }
        }
        out
    }
}
