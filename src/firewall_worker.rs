//! The firewall worker: one thread that owns the backend.
//!
//! Firewall commands can be slow (an `iptables -D` takes milliseconds), so
//! the server never runs them on its receive path: it queues [`Change`]s
//! here. The worker drains whatever has queued into one batch, applies it,
//! logs each failure with the backend's own words, and tells the server of
//! a grant that failed so the server's table matches the firewall. When the
//! queue closes it tears the backend down; a panic while applying closes
//! the queue (the server then stops) and still tears down.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use crate::counters::Counters;
use crate::firewall::{Change, Firewall, FirewallError};

/// Changes queued beyond this make a knock wait (backpressure, not loss).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Most changes applied in one batch.
pub const MAX_BATCH: usize = 1024;

type FailedGrant = Box<dyn Fn(IpAddr, u16) + Send + Sync>;

/// Handle on the running worker thread.
pub struct FirewallWorker {
    thread: JoinHandle<()>,
    on_failed_grant: Arc<Mutex<Option<FailedGrant>>>,
}

impl std::fmt::Debug for FirewallWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirewallWorker").finish_non_exhaustive()
    }
}

impl FirewallWorker {
    /// Sets the backend up on a new thread and starts applying changes.
    /// Fails, leaving no thread behind, if the setup fails.
    pub async fn start(
        mut firewall: Box<dyn Firewall>,
        counters: Arc<Counters>,
    ) -> Result<(mpsc::Sender<Change>, FirewallWorker), FirewallError> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (ready_tx, ready_rx) = oneshot::channel();
        let on_failed_grant: Arc<Mutex<Option<FailedGrant>>> = Arc::default();
        let callback = on_failed_grant.clone();
        let thread = std::thread::Builder::new()
            .name("firewall".into())
            .spawn(move || {
                if let Err(err) = firewall.setup() {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                // A panic while applying drops the queue (the server sees
                // it closed and stops) but must not skip the teardown.
                let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    apply_until_closed(firewall.as_mut(), rx, &counters, &callback)
                }));
                if applied.is_err() {
                    error!(
                        backend = firewall.name(),
                        "firewall worker panicked; tearing down"
                    );
                }
                match firewall.teardown() {
                    Ok(()) => info!(backend = firewall.name(), "firewall rules removed"),
                    Err(err) => {
                        error!(backend = firewall.name(), error = %err, "firewall teardown failed")
                    }
                }
            })
            .map_err(|source| FirewallError::Io {
                context: "cannot start the firewall thread".into(),
                source,
            })?;
        match ready_rx.await {
            Ok(Ok(())) => Ok((
                tx,
                FirewallWorker {
                    thread,
                    on_failed_grant,
                },
            )),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                Err(FirewallError::Io {
                    context: "firewall thread ended during setup".into(),
                    source: std::io::Error::other("thread panicked"),
                })
            }
        }
    }

    /// Registers what to call when a grant could not be applied.
    pub fn on_failed_grant(&self, callback: impl Fn(IpAddr, u16) + Send + Sync + 'static) {
        *self
            .on_failed_grant
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(callback));
    }

    /// Waits for the worker to apply what is queued and tear down. Every
    /// sender must have been dropped first.
    pub async fn finish(self) {
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn apply_until_closed(
    firewall: &mut dyn Firewall,
    mut rx: mpsc::Receiver<Change>,
    counters: &Counters,
    on_failed_grant: &Mutex<Option<FailedGrant>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        let results = firewall.apply(&batch);
        for (change, result) in batch.iter().zip(results) {
            counters.record_firewall(result.is_err());
            let Err(err) = result else { continue };
            match *change {
                Change::Grant { ip, port, .. } => {
                    error!(%ip, port, backend = firewall.name(), error = %err, "grant failed; access not opened");
                    if let Some(callback) = on_failed_grant
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_ref()
                    {
                        callback(ip, port);
                    }
                }
                Change::Revoke { ip, port } => {
                    error!(%ip, port, backend = firewall.name(), error = %err, "revoke failed; rule stays until teardown");
                }
            }
        }
    }
}
