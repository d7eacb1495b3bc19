//! What the control socket does to the engine: read the open grants and
//! the core's census, grant by hand, revoke, flush. Each takes the engine's
//! lock once, copies or changes plain data, and lets go before anything is
//! formatted or written to a client, or queued for the firewall; the
//! firewall learns of every change through the same queue as knocks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use super::Engine;
use super::engine::DoorInfo;
use crate::firewall::Change;
use crate::grants::{GrantChange, GrantEntry, GrantRefused, MANUAL};

/// A control request the engine refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    /// No door has this name.
    #[error("no door named '{name}' (doors: {known})")]
    NoDoor {
        /// The name given.
        name: String,
        /// The doors that exist.
        known: String,
    },
    /// No door protects this port.
    #[error("port {port} is not protected by any door (protected: {known})")]
    NotProtected {
        /// The port given.
        port: u16,
        /// The ports that are.
        known: String,
    },
    /// `--max-grants` are open.
    #[error(transparent)]
    Refused(#[from] GrantRefused),
}

/// The open grants and the core's census at one moment, copied out of the
/// lock: `list` formats them afterwards.
#[derive(Debug)]
pub struct Census {
    /// Every open grant.
    pub grants: Vec<GrantEntry>,
    /// The doors (names, ports, access), in the core's order.
    pub doors: Arc<Vec<DoorInfo>>,
    /// Sources the core tracks.
    pub tracked: usize,
    /// Of those, locked out.
    pub locked_out: usize,
    /// Up to the limit asked: locked-out sources and their end.
    pub lockouts: Vec<(IpAddr, std::time::Instant)>,
    /// When the copy was taken.
    pub now: std::time::Instant,
}

impl Engine {
    /// The open grants and the core's census; with `lockouts > 0`, up to
    /// that many locked-out sources.
    pub fn census(&self, lockouts: usize) -> Census {
        let now = Instant::now().into_std();
        let state = self.lock();
        Census {
            grants: state.grants.entries().collect(),
            doors: state.doors.clone(),
            tracked: state.tracker.tracked(),
            locked_out: state.tracker.locked_out(),
            lockouts: match lockouts {
                0 => Vec::new(),
                n => state.tracker.lockouts(n),
            },
            now,
        }
    }

    /// The doors now (names, protected ports, access).
    pub fn doors(&self) -> Arc<Vec<DoorInfo>> {
        self.lock().doors.clone()
    }

    /// Opens `ports` (a door's, `None`: the first door's) for `ip` by
    /// hand for `duration` (`None`: the door's access time). Held as
    /// [`MANUAL`]: it ends on time and shows as manual in `list`.
    pub async fn grant_manual(
        &self,
        ip: IpAddr,
        door: Option<&str>,
        port: Option<u16>,
        duration: Option<Duration>,
    ) -> Result<Vec<(u16, GrantChange)>, ControlError> {
        let (changes, refused) = {
            let mut state = self.lock();
            let doors = state.doors.clone();
            let (ports, access) = resolve(&doors, door, port)?;
            let now = Instant::now().into_std();
            let until = now + duration.unwrap_or(access);
            let mut changes = Vec::new();
            let mut refused = None;
            for port in ports {
                match state.grants.grant_for(ip, MANUAL, port, until) {
                    Ok(change) => {
                        let end = state.grants.open_until(ip, port).unwrap_or(until);
                        changes.push((port, change, end.saturating_duration_since(now)));
                    }
                    Err(err) => {
                        self.counters.record_grant_refused();
                        refused = Some(err);
                    }
                }
            }
            self.wake_expiry.notify_one();
            (changes, refused)
        };
        for &(port, _, ttl) in &changes {
            self.queue(Change::Grant { ip, port, ttl }).await;
        }
        match refused {
            Some(err) if changes.is_empty() => Err(err.into()),
            _ => Ok(changes.into_iter().map(|(p, c, _)| (p, c)).collect()),
        }
    }

    /// Closes `ip`'s access on `door`'s ports (`None`: every port),
    /// whoever granted it; returns the ports closed.
    pub async fn revoke(&self, ip: IpAddr, door: Option<&str>) -> Result<Vec<u16>, ControlError> {
        let closed = {
            let mut state = self.lock();
            let doors = state.doors.clone();
            let ports = match door {
                Some(name) => Some(find_door(&doors, name)?.protected.clone()),
                None => None,
            };
            let wanted = |port: u16| ports.as_ref().is_none_or(|p| p.contains(&port));
            state.grants.revoke_ip(ip, wanted)
        };
        for &(ip, port) in &closed {
            self.counters.record_expiry();
            self.queue(Change::Revoke { ip, port }).await;
        }
        Ok(closed.into_iter().map(|(_, port)| port).collect())
    }

    /// Revokes every grant; returns how many `(ip, port)` entries closed.
    /// The firewall then holds what it held right after start.
    pub async fn flush(&self) -> usize {
        let closed = self.lock().grants.revoke_all();
        for &(ip, port) in &closed {
            self.counters.record_expiry();
            self.queue(Change::Revoke { ip, port }).await;
        }
        closed.len()
    }
}

fn find_door<'a>(doors: &'a [DoorInfo], name: &str) -> Result<&'a DoorInfo, ControlError> {
    doors
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ControlError::NoDoor {
            name: name.chars().take(64).collect(),
            known: doors
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The ports and default access of a manual grant.
fn resolve(
    doors: &[DoorInfo],
    door: Option<&str>,
    port: Option<u16>,
) -> Result<(Vec<u16>, Duration), ControlError> {
    if let Some(port) = port {
        let owner = doors.iter().find(|d| d.protected.contains(&port));
        return match owner {
            Some(door) => Ok((vec![port], door.access)),
            None => Err(ControlError::NotProtected {
                port,
                known: protected_list(doors),
            }),
        };
    }
    let door = match door {
        Some(name) => find_door(doors, name)?,
        None => doors.first().ok_or_else(|| ControlError::NoDoor {
            name: String::new(),
            known: String::new(),
        })?,
    };
    Ok((door.protected.clone(), door.access))
}

fn protected_list(doors: &[DoorInfo]) -> String {
    let mut ports: Vec<u16> = doors
        .iter()
        .flat_map(|d| d.protected.iter().copied())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
