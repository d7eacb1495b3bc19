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
//! the expiry task as before) and, when the knock rules are unchanged, the
//! progress and lockouts of every source. Changed knock rules start a new
//! tracker: a half-knocked old sequence must not complete the new one.
//! The protected port is fixed for the life of the engine; the daemon
//! refuses a reload that changes it.

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Engine, ServerSettings};
use crate::firewall::FirewallError;
use crate::firewall_worker::Reconfigurer;
use crate::knock::KnockTracker;

/// New rules for a running server.
#[derive(Debug)]
pub struct Reload {
    /// The new rules (same protected port).
    pub settings: ServerSettings,
    /// Bound sockets of the knock ports the new rules add.
    pub add: Vec<UdpSocket>,
    /// Every knock port of the new rules: sockets on other ports close.
    pub ports: Vec<u16>,
    /// Every port the firewall must protect now, if that changed.
    pub firewall_ports: Option<Vec<u16>>,
    /// Told when the new rules are in force: `true` if the knock progress
    /// was kept (the rules were unchanged); the firewall's refusal leaves
    /// everything as it was.
    pub done: oneshot::Sender<Result<bool, FirewallError>>,
}

impl Engine {
    /// Applies new knock rules; returns whether progress was kept (the
    /// rules were unchanged). Grants are untouched.
    pub fn reconfigure(&self, settings: &ServerSettings) -> bool {
        let mut state = self.lock();
        state.protected_port = settings.protected_port;
        if state.rules == settings.rules {
            return true;
        }
        state.tracker = KnockTracker::new(&settings.rules);
        state.rules = settings.rules.clone();
        state.last_now = None;
        state.publish_table(&self.counters);
        false
    }
}

/// Hands `reload` to the receiver (`rebind`), or applies it to the engine
/// directly when no receiver runs (SPA only).
pub(super) async fn apply(
    engine: &Engine,
    rebind: Option<&mpsc::Sender<Reload>>,
    firewall: &Reconfigurer,
    mut reload: Reload,
) {
    if let Some(ports) = reload.firewall_ports.take() {
        if let Err(err) = firewall.reconfigure(ports).await {
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
    let kept = engine.reconfigure(&reload.settings);
    info!(progress_kept = kept, "knock rules reloaded");
    let _ = reload.done.send(Ok(kept));
}
