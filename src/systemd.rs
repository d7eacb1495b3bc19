//! Readiness notifications to systemd (`Type=notify`, `sd_notify(3)`),
//! through the `sd-notify` crate.
//!
//! Why: with `Type=notify` systemd starts the units ordered after
//! portknock only once the firewall is set up and every socket is bound
//! (`READY=1`), a reload (`ExecReload` sends SIGHUP) counts as finished
//! when the new configuration is in or refused (`RELOADING=1` with
//! `MONOTONIC_USEC`, then `READY=1`), and `systemctl status` shows what
//! the daemon is doing (`STATUS=`). `STOPPING=1` says the teardown (rule
//! removal) has begun.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is unset (not under
//! systemd), and a failure to send is logged at debug level and otherwise
//! ignored: a notification never stops the daemon. The variable is left in
//! the environment, so the packet process of a privilege split (a child,
//! re-executed) notifies too; the unit says `NotifyAccess=all` for that.
//! Who sends what: the process that runs the engine
//! (`server::run_reloadable`, `server::daemon`'s reloader).

use sd_notify::NotifyState;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        debug!(error = %err, "cannot notify the service manager");
    }
}

/// Start-up is finished: the firewall is set up and packets are read.
/// `status` is a one-line summary for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has begun (SIGHUP). Carries `MONOTONIC_USEC`, which systemd
/// 253 and newer require beside `RELOADING=1`; [`reloaded`] must follow.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        // Without the clock, RELOADING=1 alone would fail the unit on
        // systemd >= 253: say nothing; the reload still happens.
        Err(err) => debug!(error = %err, "no monotonic clock: reload not announced"),
    }
}

/// A reload has ended, applied or refused (`status` says which).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon is stopping: its firewall rules are being removed.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}
