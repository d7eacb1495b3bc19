//! Supervision of the server's tasks: every long-lived task (receiver,
//! expiry, SPA listener, gate, stats) runs until shutdown, so one that ends
//! earlier, by a panic or by returning, means the server is half-alive:
//! knocks no longer judged, or grants no longer ending. [`Tasks`] names
//! each task and reports the first one that ends, so the server can stop
//! through its normal teardown and say which task died (fail closed).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tracing::warn;

use super::Engine;

/// How long stopped tasks get to finish before they are aborted, so a
/// stuck task cannot hold the firewall teardown back forever.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

type Start = Box<
    dyn FnOnce(Arc<Engine>, crate::shutdown::Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// A task that runs beside the knock sockets and shares the engine (the
/// SPA listener, the userspace gate, the stats endpoint): started with the
/// engine and the stop signal; it must run until the stop signal turns
/// true. The server waits for it to finish before tearing down, and stops
/// (with teardown) if it ends any earlier.
pub struct Listener {
    name: &'static str,
    start: Start,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A listener called `name` in logs and errors, started by `start`.
    pub fn new<F>(
        name: &'static str,
        start: impl FnOnce(Arc<Engine>, crate::shutdown::Shutdown) -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Listener {
            name,
            start: Box::new(move |engine, stop| Box::pin(start(engine, stop))),
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its task, ready to spawn.
    pub(super) fn start(
        self,
        engine: Arc<Engine>,
        stop: crate::shutdown::Shutdown,
    ) -> (&'static str, Pin<Box<dyn Future<Output = ()> + Send>>) {
        (self.name, (self.start)(engine, stop))
    }
}

/// The server's named tasks.
#[derive(Default)]
pub(super) struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Spawns `task` under `name`.
    pub(super) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits until some task ends and says which and how; pending forever
    /// when there is none.
    pub(super) async fn first_ended(&mut self) -> (&'static str, String) {
        match self.set.join_next_with_id().await {
            Some(Ok((id, ()))) => (self.name(id), "returned".to_string()),
            Some(Err(err)) => (self.name(err.id()), describe(err)),
            None => std::future::pending().await,
        }
    }

    /// Waits (at most [`DRAIN_LIMIT`]) for the stopped tasks to finish,
    /// then aborts the rest.
    pub(super) async fn drain(mut self) {
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_LIMIT, all).await.is_err() {
            warn!(
                left = self.set.len(),
                "tasks did not stop in time; aborting them"
            );
            self.set.shutdown().await;
        }
    }

    fn name(&self, id: Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unnamed")
    }
}

/// How a task ended: its panic message, or that it was cancelled.
fn describe(err: JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".to_string();
    }
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".to_string());
    format!("panicked: {message}")
}
