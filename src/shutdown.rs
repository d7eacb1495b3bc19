//! The one stop signal of the server's tasks (server, gate, SPA listener,
//! expiry, receiver, protected service).
//!
//! Before, each of them built its own `watch::channel(false)` and read it
//! its own way (`changed()`, `borrow_and_update()`, a dropped sender taken
//! as a stop or not). [`Shutdown`] is the one reading: cheap to clone,
//! [`Shutdown::is_stopped`] to poll, [`Shutdown::stopped`] to await; a
//! dropped [`Stopper`] counts as a stop, so a task never outlives its owner.

use tokio::sync::watch;

/// Stops every [`Shutdown`] made with it (also when dropped).
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// A clonable view of one stop signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new stop signal: its [`Stopper`] and a first [`Shutdown`].
    pub fn new() -> (Stopper, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Stopper(tx), Shutdown(rx))
    }

    /// Whether the stop was given (or its [`Stopper`] is gone).
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes once the stop is given (or its [`Stopper`] is gone).
    pub async fn stopped(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

impl Stopper {
    /// Stops every [`Shutdown`] of this signal.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_and_drop_both_stop() {
        let (stopper, shutdown) = Shutdown::new();
        let copy = shutdown.clone();
        assert!(!copy.is_stopped());
        stopper.stop();
        assert!(copy.is_stopped());
        shutdown.stopped().await;
        let (stopper, shutdown) = Shutdown::new();
        drop(stopper);
        assert!(shutdown.is_stopped());
        shutdown.stopped().await;
    }
}
