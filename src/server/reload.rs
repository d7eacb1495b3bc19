//! New rules for a running server, without a restart.
//!
//! A [`Reload`] carries the new [`ServerSettings`], the knock sockets of
//! the ports they add (bound by the caller first, so a busy port refuses
//! the reload before anything changed) and the full list of knock ports.
//! It is applied in one step between two passes of the receiver (see
//! `receiver.rs`): knocks already read are judged under the old rules,
//! then the engine takes the new ones and sockets of dropped ports close.
//!
//! What survives: the open grants (they end at their own time, revoked by
//! the expiry task as before) except those of a removed door, which are
//! revoked at once; lockouts; and the progress of every source on each
//! door that is unchanged (`knock/reload.rs`). A changed door starts
//! afresh: a half-knocked old sequence must not complete the new one.
//! Doors are matched by name. With the seed's single door (no doors in
//! the settings), changed rules start a new tracker.

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Engine, ServerSettings};
use crate::config::Door;
use crate::firewall::FirewallError;
use crate::firewall_worker::Reconfigurer;
use crate::knock::DoorId;

/// New rules for a running server.
#[derive(Debug)]
pub struct Reload {
    /// The new rules (same protected port).
    pub settings: ServerSettings,
    /// Bound sockets of the knock ports the new rules add.
    pub add: Vec<UdpSocket>,
    /// Every knock port of the new rules: sockets on other ports close.
    pub ports: Vec<u16>,
    /// Every port the firewall must protect now, if that changed: the TCP
    /// ports and the UDP ports.
    pub firewall_ports: Option<(Vec<u16>, Vec<u16>)>,
    /// Told when the new rules are in force: `true` if the knock progress
    /// was kept (the rules were unchanged); the firewall's refusal leaves
    /// everything as it was.
    pub done: oneshot::Sender<Result<bool, FirewallError>>,
}

impl Engine {
    /// Applies new knock rules; returns whether all progress was kept
    /// (no door changed or went away). With doors, per door: an unchanged
    /// door (same name, sequence, window, allow list) keeps every source's
    /// progress, a changed one starts afresh, lockouts stay; grants of a
    /// door that stays (by name) stay, a removed door's are revoked.
    pub async fn reconfigure(&self, settings: &ServerSettings) -> bool {
        let (kept, revoked) = {
            let mut state = self.lock();
            state.doors = super::door_infos(settings);
            if state.rules == settings.rules && state.door_config == settings.doors {
                return true;
            }
            let (kept, revoked) = match (state.door_config.is_empty(), settings.doors.is_empty()) {
                (false, false) => {
                    let map = door_map(&state.door_config, &settings.doors);
                    let progress: Vec<_> = map.iter().map(|m| m.progress).collect();
                    state.tracker = state.tracker.reconfigured(
                        &settings.doors,
                        settings.rules.max_tracked,
                        &progress,
                    );
                    let revoked = state
                        .grants
                        .remap_holders(|door| map.get(usize::from(door)).and_then(|m| m.grants));
                    (progress.iter().all(Option::is_some), revoked)
                }
                // The seed's door on either side: a new tracker.
                _ => {
                    state.tracker = super::tracker_for(settings);
                    (false, Vec::new())
                }
            };
            state.rules = settings.rules.clone();
            state.door_config = settings.doors.clone();
            state.used = super::engine::load_used(&settings.doors);
            state.last_now = None;
            state.publish_table(&self.counters);
            (kept, revoked)
        };
        for (ip, port) in revoked {
            info!(%ip, port, "access revoked: its door was removed");
            self.queue(crate::firewall::Change::Revoke { ip, port })
                .await;
        }
        self.wake_expiry.notify_one();
        kept
    }
}

/// Where an old door goes in a reload.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    /// Its new index if its progress carries over (unchanged door).
    progress: Option<DoorId>,
    /// Its new index if its grants stay (a door of the same name).
    grants: Option<DoorId>,
}

/// Where each of `old`'s doors goes among `new`'s, by name.
fn door_map(old: &[Door], new: &[Door]) -> Vec<Mapped> {
    old.iter()
        .map(|door| {
            let found = new.iter().position(|d| d.name() == door.name());
            let same = found.filter(|&i| {
                let other = &new[i];
                other.sequence() == door.sequence()
                    && other.timing().window == door.timing().window
                    && other.allow() == door.allow()
            });
            let id = |i: usize| DoorId::try_from(i).ok();
            Mapped {
                progress: same.and_then(id),
                grants: found.and_then(id),
            }
        })
        .collect()
}

/// Hands `reload` to the receiver (`rebind`), or applies it to the engine
/// directly when no receiver runs (SPA only).
pub(super) async fn apply(
    engine: &Engine,
    rebind: Option<&mpsc::Sender<Reload>>,
    firewall: &Reconfigurer,
    mut reload: Reload,
) {
    if let Some((ports, udp_ports)) = reload.firewall_ports.take() {
        if let Err(err) = firewall.reconfigure(ports, udp_ports).await {
            let _ = reload.done.send(Err(err));
            return;
        }
    }
    let reload = match rebind {
        Some(receiver) => match receiver.send(reload).await {
            Ok(()) => return,
            // The receiver is gone: the supervisor stops the server.
            Err(mpsc::error::SendError(reload)) => reload,
        },
        None => reload,
    };
    let kept = engine.reconfigure(&reload.settings).await;
    info!(progress_kept = kept, "knock rules reloaded");
    let _ = reload.done.send(Ok(kept));
}
