//! Checking the backend's rules and repairing them (issue 9 item 1).
//!
//! What a check does depends on what prompted it ([`Notice`]):
//! - [`Notice::Broken`]: nf_tables announced a deletion in a table that is
//!   wholly ours. Nothing but our own setup deletes there (and the worker
//!   discards what that announced), so the worker repairs at once without
//!   listing the table first: while the door is open, a listing is an
//!   `nft` process (10-40 ms under load) that only delays the repair.
//! - [`Notice::Changed`] (a shared table changed, notifications were lost,
//!   or the periodic safety net): [`Firewall::verify`], then the grants.
//! - [`Notice::Elements`] (set elements deleted: `nft flush set`, which
//!   locks a granted user out): only the grants are compared.
//!
//! A repair runs setup again and re-applies every live grant with its
//! remaining time, discards the notifications our own setup caused, and
//! verifies once more, so a deletion that raced with the repair is not
//! lost with them. Missing grants alone are re-added without a setup.

use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tracing::{debug, error};

use super::Callbacks;
use crate::firewall::nftables::{NftMonitor, Notice};
use crate::firewall::{Change, Firewall};

/// Repairs in a row before giving up until the retry.
const MAX_REPAIRS: usize = 3;

/// Reads and drops every queued notification; returns the most urgent.
pub(super) fn discard(monitor: &mut Option<AsyncFd<NftMonitor>>) -> Notice {
    monitor.as_mut().map_or(Notice::Nothing, |fd| {
        fd.get_mut().drain().unwrap_or(Notice::Nothing)
    })
}

/// Checks the rules as `notice` asks and repairs what is missing. Returns
/// false when the check or the repair failed (retry soon).
pub(super) fn check(
    firewall: &mut dyn Firewall,
    callbacks: &Callbacks,
    monitor: &mut Option<AsyncFd<NftMonitor>>,
    notice: Notice,
) -> bool {
    let started = Instant::now();
    let missing = match notice {
        Notice::Broken => vec!["a deletion in our table, announced by nf_tables".to_string()],
        Notice::Elements | Notice::Nothing => Vec::new(),
        Notice::Changed => match verify(firewall, started) {
            Some(missing) => missing,
            None => return false,
        },
    };
    if missing.is_empty() {
        return restore_grants(firewall, callbacks, monitor);
    }
    repair(firewall, callbacks, monitor, missing, started)
}

/// [`Firewall::verify`], logged; `None` when it failed.
fn verify(firewall: &mut dyn Firewall, started: Instant) -> Option<Vec<String>> {
    debug!(backend = firewall.name(), "verifying the firewall rules");
    let verified = firewall.verify();
    debug!(
        backend = firewall.name(),
        verify_ms = started.elapsed().as_secs_f64() * 1000.0,
        intact = matches!(&verified, Ok(m) if m.is_empty()),
        "verified"
    );
    verified
        .inspect_err(
            |err| error!(backend = firewall.name(), error = %err, "cannot verify the firewall rules"),
        )
        .ok()
}

/// Setup again, every live grant, then a verify (up to [`MAX_REPAIRS`]).
fn repair(
    firewall: &mut dyn Firewall,
    callbacks: &Callbacks,
    monitor: &mut Option<AsyncFd<NftMonitor>>,
    mut missing: Vec<String>,
    started: Instant,
) -> bool {
    for _ in 0..MAX_REPAIRS {
        let grants = callbacks.live();
        let result = firewall.setup().and_then(|()| {
            firewall
                .apply(&grants)
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), Err)
        });
        let repair_ms = started.elapsed().as_secs_f64() * 1000.0;
        let what = missing.join("; ");
        if let Err(err) = result {
            error!(
                backend = firewall.name(),
                missing = %what,
                error = %err,
                "firewall rules were changed by someone else and the repair failed; retrying"
            );
            return false;
        }
        error!(
            backend = firewall.name(),
            missing = %what,
            grants = grants.len(),
            repair_ms,
            "firewall rules were changed by someone else: repaired"
        );
        // Our setup announced its own deletions; a deletion by someone else
        // at the same time is found by the verify below.
        discard(monitor);
        missing = match verify(firewall, Instant::now()) {
            Some(missing) => missing,
            None => return false,
        };
        if missing.is_empty() {
            return true;
        }
    }
    false
}

/// Re-adds the live grants the kernel lacks (structure intact).
fn restore_grants(
    firewall: &mut dyn Firewall,
    callbacks: &Callbacks,
    monitor: &mut Option<AsyncFd<NftMonitor>>,
) -> bool {
    let live = callbacks.live();
    let missing = match firewall.missing_grants(&live) {
        Ok(missing) if missing.is_empty() => return true,
        Ok(missing) => missing,
        Err(err) => {
            error!(backend = firewall.name(), error = %err, "cannot compare the grants with the kernel");
            return false;
        }
    };
    let failed = firewall
        .apply(&missing)
        .into_iter()
        .filter(Result::is_err)
        .count();
    discard(monitor);
    let ips: Vec<String> = missing
        .iter()
        .filter_map(|change| match change {
            Change::Grant { ip, port, .. } => Some(format!("{ip} port {port}")),
            Change::Revoke { .. } => None,
        })
        .collect();
    error!(
        backend = firewall.name(),
        grants = %ips.join(", "),
        failed,
        "live grants were removed by someone else: re-added with their remaining time"
    );
    failed == 0
}
