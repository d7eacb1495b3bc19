//! From a parsed knockd.conf to what this daemon runs: each door's
//! commands as [`Template`]s (shell syntax refused at its line unless
//! allowed), what this build cannot serve refused at its line, and with
//! `--knockd-native` the doors whose commands are a plain iptables rule
//! for the knocker translated into portknock doors served by the native
//! firewall backend (kernel expiry, no duplicate rules).
//!
//! Refused here, with their line: `Target` (not matched yet: knocks are
//! taken whatever their destination) and `TCPFlags` that a plain SYN does
//! not satisfy (`syn,ack`, `fin,!ack`...: the AF_PACKET capture's filter
//! passes SYNs without ACK only). `syn`, `syn,!ack` and no flags are
//! accepted.

use std::time::Duration;

use super::model::{AtLine, KnockdDoor, KnockdFile};
use super::parse::ConfError;
use crate::commands::{Template, WordsError};
use crate::config::door::LOCKOUT_BOUNDS;
use crate::config::{AllowList, Door, DoorName, ProtectedPort, Proto, Timing};

/// How the doors are to be served (flags of the command line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--knockd-allow-shell`: every door may use shell syntax.
    pub allow_shell: bool,
    /// `--knockd-native`: translate plain iptables doors.
    pub native: bool,
    /// `--lockout` given: the lockout of every door without its own.
    pub lockout: Option<Duration>,
}

/// A door's commands for one address family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    /// Run on success (None: nothing).
    pub start: Option<Template>,
    /// Run `Cmd_Timeout` after the start command ended (None: nothing).
    pub stop: Option<Template>,
}

/// How one door is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Its commands run (knockd's way, without a shell).
    Commands {
        /// For IPv4 knockers.
        v4: Commands,
        /// For IPv6 knockers.
        v6: Commands,
    },
    /// Translated to a portknock door on the native backend.
    Native(Door),
}

/// One door and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The door as the file gives it.
    pub door: KnockdDoor,
    /// How it is served.
    pub service: Service,
    /// Its lockout (zero: off).
    pub lockout: Duration,
    /// Why `--knockd-native` did not translate it (None: translated, or
    /// the flag was not given).
    pub not_native: Option<String>,
}

/// Plans every door of `file`; the first refusal stops, with its line.
pub fn plan(file: &KnockdFile, options: PlanOptions) -> Result<Vec<Planned>, ConfError> {
    file.doors
        .iter()
        .map(|door| plan_door(file, door, options))
        .collect()
}

fn plan_door(
    file: &KnockdFile,
    door: &KnockdDoor,
    options: PlanOptions,
) -> Result<Planned, ConfError> {
    let refuse = |line, message: String| ConfError::new(&file.path, line, message);
    if let Some(target) = &door.target {
        return Err(refuse(
            target.line,
            format!(
                "door '{}': Target = {} needs stealth capture (knocks sent to another address), which this build does not have yet",
                door.name, target.value
            ),
        ));
    }
    let has_tcp = door.knocks().iter().any(|k| k.proto == Proto::Tcp);
    if has_tcp && door.tcp_flags.line != 0 && !door.tcp_flags.heard_as_syn() {
        return Err(refuse(
            door.tcp_flags.line,
            format!(
                "door '{}': TCPFlags = {}: only knocks a plain SYN satisfies (syn, syn,!ack, or no TCPFlags) are heard by this build's capture",
                door.name,
                door.tcp_flags.describe()
            ),
        ));
    }
    let shell = options.allow_shell || door.allow_shell;
    let template =
        |cmd: Option<&AtLine<String>>, key: &str| -> Result<Option<Template>, ConfError> {
            match cmd {
                None => Ok(None),
                Some(cmd) if cmd.value.trim().is_empty() => Ok(None),
                Some(cmd) => Template::parse(&cmd.value, shell).map(Some).map_err(|err| {
                    let err: WordsError = err;
                    refuse(cmd.line, format!("door '{}': {key}: {err}", door.name))
                }),
            }
        };
    let v4 = Commands {
        start: template(door.commands(false).0, "Start_Command")?,
        stop: template(door.commands(false).1, "Stop_Command")?,
    };
    let v6 = Commands {
        start: template(door.commands(true).0, "Start_Command_6")?,
        stop: template(door.commands(true).1, "Stop_Command_6")?,
    };
    let lockout = door.lockout.or(options.lockout).unwrap_or(Duration::ZERO);
    let mut planned = Planned {
        door: door.clone(),
        service: Service::Commands { v4, v6 },
        lockout,
        not_native: None,
    };
    if options.native {
        match translate(door, lockout) {
            Ok(native) => planned.service = Service::Native(native),
            Err(why) => planned.not_native = Some(why),
        }
    }
    Ok(planned)
}

/// The protected TCP port of a door whose start and stop commands are the
/// usual `iptables -I|-A INPUT -s %IP% -p tcp --dport N -j ACCEPT` and its
/// `-D` twin (and no other IPv6 commands than the `ip6tables` twins), as a
/// portknock door; else why not.
pub fn translate(door: &KnockdDoor, lockout: Duration) -> Result<Door, String> {
    if matches!(door.sequence, super::model::SequenceSource::OneTime { .. }) {
        return Err("one-time sequences run their commands".into());
    }
    let words = |cmd: Option<&AtLine<String>>| -> Option<Vec<String>> {
        crate::commands::words::split(&cmd?.value).ok()
    };
    let start = words(door.start.as_ref()).ok_or("no plain Start_Command")?;
    let stop =
        words(door.stop.as_ref()).ok_or("no Stop_Command (the door never closes by itself)")?;
    let port = rule_port(&start, "iptables", &["-I", "-A"])
        .ok_or("Start_Command is not 'iptables -I|-A INPUT -s %IP% -p tcp --dport N -j ACCEPT'")?;
    if rule_port(&stop, "iptables", &["-D"]) != Some(port) {
        return Err("Stop_Command is not the -D twin of Start_Command".into());
    }
    for (cmd, flags) in [
        (&door.start6, &["-I", "-A"][..]),
        (&door.stop6, &["-D"][..]),
    ] {
        if let Some(cmd) = cmd {
            let twin = words(Some(cmd)).and_then(|w| rule_port(&w, "ip6tables", flags));
            if twin != Some(port) {
                return Err("its IPv6 commands are not the ip6tables twins".into());
            }
        }
    }
    let name: DoorName = door.name.parse().map_err(|_| {
        format!(
            "its name '{}' is not a portknock door name (letters, digits, - and _, at most 32)",
            door.name
        )
    })?;
    let timing = Timing {
        window: door.seq_timeout,
        access: door.cmd_timeout,
        lockout: lockout.max(LOCKOUT_BOUNDS.min),
    };
    Door::new(
        name,
        door.knocks().to_vec(),
        timing,
        vec![ProtectedPort::tcp(port)],
        AllowList::everything(),
    )
    .map_err(|issues| {
        let all: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        all.join("; ")
    })
}

/// `N` if `words` is `PROG FLAG INPUT -s %IP% -p tcp --dport N -j ACCEPT`
/// with PROG's file name `prog` and FLAG one of `flags`.
fn rule_port(words: &[String], prog: &str, flags: &[&str]) -> Option<u16> {
    let [program, flag, chain, rest @ ..] = words else {
        return None;
    };
    let base = program.rsplit('/').next()?;
    if base != prog || !flags.contains(&flag.as_str()) || chain != "INPUT" {
        return None;
    }
    match rest {
        [s, ip, p, tcp, dport, n, j, accept]
            if s == "-s"
                && ip == "%IP%"
                && p == "-p"
                && tcp == "tcp"
                && dport == "--dport"
                && j == "-j"
                && accept == "ACCEPT" =>
        {
            n.parse::<u16>().ok().filter(|&n| n > 0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
