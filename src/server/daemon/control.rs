//! The daemon's operations endpoints: the control socket (`knockctl`) and,
//! beside it, the reload trigger it shares with SIGHUP. Bound with the
//! other sockets, before the firewall is touched.
//!
//! The default path (`/run/portknock/control.sock`) is best effort: when
//! it cannot be bound (no right to create `/run/portknock`, another daemon
//! on the host owns it) the daemon warns and runs without one. A path the
//! operator named must work, or the start fails.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::warn;

use super::{DaemonError, Reloads};
use crate::config::globals::{ControlSocketSetting, Globals};
use crate::control::{self, ControlContext, ControlSocket};
use crate::counters::Counters;
use crate::server::Listener;

/// Reload requests from SIGHUP (`reloads`) and from the control socket,
/// merged into one stream the reloader serves; returns the control
/// socket's trigger.
pub(super) fn merge_reloads(reloads: Option<Reloads>) -> (mpsc::Sender<()>, Reloads) {
    let (tx, triggers) = mpsc::channel(1);
    let source = match reloads {
        Some(Reloads {
            source,
            triggers: mut hangups,
        }) => {
            let forward = tx.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let _ = forward.try_send(());
                }
            });
            source
        }
        None => None,
    };
    (tx, Reloads { source, triggers })
}

/// Binds the control socket `globals` asks for, if any.
pub(super) fn bind(globals: &Globals) -> Result<Option<ControlSocket>, DaemonError> {
    let Some(path) = globals.control_socket.path() else {
        return Ok(None);
    };
    let group = match &globals.control_group {
        Some(name) => Some(control::peer::group_id(name)?),
        None => None,
    };
    match ControlSocket::bind(&path, group) {
        Ok(socket) => Ok(Some(socket)),
        Err(err) if globals.control_socket == ControlSocketSetting::Default => {
            warn!(error = %crate::cli::chain(&err), "no control socket (knockctl will not reach this daemon); give --control-socket PATH, or none to silence this");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// The control socket's task.
pub(super) fn listener(
    socket: ControlSocket,
    backend: String,
    counters: Arc<Counters>,
    reload: mpsc::Sender<()>,
) -> Listener {
    let ctx = ControlContext {
        started: Instant::now(),
        backend,
        // The daemon hears knocks on bound sockets until stealth capture
        // is wired in (`capture.rs`); name its source here then.
        capture: "socket".to_string(),
        counters,
        reload,
    };
    Listener::new("control", move |engine, stop| {
        control::serve(socket, engine, ctx, stop)
    })
}
