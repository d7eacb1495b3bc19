//! Carries out one control request against the engine and builds its
//! reply. The engine hands back plain copies (`server/control_ops.rs`), so
//! its lock is never held while a reply is formatted or written. Every
//! request is logged with the peer's uid and pid: changes at info,
//! reads at debug.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::peer::Peer;
use super::protocol::{
    Done, DoorStatus, GrantList, GrantRow, LockoutRow, MAX_LISTED_LOCKOUTS, Reply, Request, Status,
    Target,
};
use crate::counters::Counters;
use crate::grants::{MANUAL, SPA};
use crate::server::Engine;

/// What `status` tells beyond the engine, and where `reload` goes.
#[derive(Debug, Clone)]
pub struct ControlContext {
    /// When the daemon started.
    pub started: Instant,
    /// The firewall backend's name.
    pub backend: String,
    /// Where knocks are heard (`socket` today; the stealth sources of
    /// `capture` once the daemon wires them).
    pub capture: String,
    /// The daemon's counters.
    pub counters: Arc<Counters>,
    /// The reload trigger, the same one SIGHUP feeds.
    pub reload: mpsc::Sender<()>,
}

/// Carries out `request` for `peer`.
pub async fn handle(request: Request, peer: &Peer, engine: &Engine, ctx: &ControlContext) -> Reply {
    let (uid, pid) = (peer.uid, peer.pid.unwrap_or(0));
    match request {
        Request::Status => {
            debug!(uid, pid, cmd = "status", "control request");
            status(engine, ctx)
        }
        Request::List { all } => {
            debug!(uid, pid, cmd = "list", all, "control request");
            list(engine, all)
        }
        Request::Grant {
            ip,
            target,
            duration,
        } => {
            let (door, port) = match &target {
                Target::Door(name) => (Some(name.as_str()), None),
                Target::Port(port) => (None, Some(*port)),
                Target::FirstDoor => (None, None),
            };
            match engine.grant_manual(ip, door, port, duration).await {
                Ok(opened) => {
                    let ports: Vec<u16> = opened.iter().map(|&(p, _)| p).collect();
                    info!(uid, pid, cmd = "grant", %ip, ports = ?ports, for_secs = duration.map(|d| d.as_secs_f64()), "control: manual grant");
                    done(format!("granted {ip} on ports {ports:?}"), ports.len())
                }
                Err(err) => {
                    warn!(uid, pid, cmd = "grant", %ip, error = %err, "control: grant refused");
                    Reply::error(err.to_string())
                }
            }
        }
        Request::Revoke { ip, door } => match engine.revoke(ip, door.as_deref()).await {
            Ok(ports) => {
                info!(uid, pid, cmd = "revoke", %ip, door = door.as_deref().unwrap_or("*"), ports = ?ports, "control: revoked");
                let message = match ports.is_empty() {
                    true => format!("{ip} held no grant there: nothing to revoke"),
                    false => format!("revoked {ip} on ports {ports:?}"),
                };
                done(message, ports.len())
            }
            Err(err) => {
                warn!(uid, pid, cmd = "revoke", %ip, error = %err, "control: revoke refused");
                Reply::error(err.to_string())
            }
        },
        Request::Flush => {
            let closed = engine.flush().await;
            info!(
                uid,
                pid,
                cmd = "flush",
                closed,
                "control: flushed every grant"
            );
            done(format!("flushed {closed} grants"), closed)
        }
        Request::Reload => {
            info!(uid, pid, cmd = "reload", "control: reload requested");
            match ctx.reload.try_send(()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => done(
                    "reload requested: the daemon's log says whether it applied".to_string(),
                    0,
                ),
                Err(mpsc::error::TrySendError::Closed(())) => {
                    Reply::error("this daemon does not take reloads")
                }
            }
        }
    }
}

fn done(message: String, changed: usize) -> Reply {
    Reply {
        done: Some(Done { message, changed }),
        ..Reply::ok()
    }
}

fn status(engine: &Engine, ctx: &ControlContext) -> Reply {
    let doors = engine.doors();
    let counters = ctx.counters.snapshot();
    let status = Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        backend: ctx.backend.clone(),
        capture: ctx.capture.clone(),
        doors: doors
            .iter()
            .map(|d| DoorStatus {
                name: d.name.clone(),
                ports: d.protected.clone(),
                access_secs: d.access.as_secs_f64(),
            })
            .collect(),
        grants: engine.open_grants(),
        counters: counters
            .fields()
            .iter()
            .map(|&(name, value)| (name.to_string(), value))
            .collect(),
    };
    Reply {
        status: Some(status),
        ..Reply::ok()
    }
}

/// `list`: the copy is taken under the lock, the rows are built after.
fn list(engine: &Engine, all: bool) -> Reply {
    let census = engine.census(if all { MAX_LISTED_LOCKOUTS } else { 0 });
    let left = |until: std::time::Instant| {
        let ms = until.saturating_duration_since(census.now).as_millis();
        ms as f64 / 1000.0
    };
    let door_of_port = |port: u16| {
        census
            .doors
            .iter()
            .find(|d| d.protected.contains(&port))
            .map(|d| d.name.clone())
    };
    let grants = census
        .grants
        .iter()
        .map(|entry| GrantRow {
            ip: entry.ip,
            door: match entry.holder {
                SPA | MANUAL => door_of_port(entry.port),
                door => census.doors.get(usize::from(door)).map(|d| d.name.clone()),
            },
            port: entry.port,
            left_secs: left(entry.until),
            origin: entry.origin().to_string(),
        })
        .collect();
    let lockouts = all.then(|| {
        census
            .lockouts
            .iter()
            .map(|&(ip, until)| LockoutRow {
                ip,
                left_secs: left(until),
            })
            .collect()
    });
    Reply {
        list: Some(GrantList {
            grants,
            tracked: census.tracked,
            locked_out: census.locked_out,
            lockouts,
        }),
        ..Reply::ok()
    }
}
