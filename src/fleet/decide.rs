//! What a node does with a verified record from the bucket: pure, with
//! the wall clock passed in (unix milliseconds), so convergence rules are
//! unit-tested without NATS.
//!
//! The rules (issue 15):
//! - a record of this node's current run was applied when it was made:
//!   skip it (a restarted node has a new run, so it re-applies its own
//!   records from before the restart, which it lost);
//! - a door this node does not share (`fleet = true`) is skipped: a door
//!   that is not shared never opens from the fleet;
//! - an ended grant is skipped (nothing expired is reopened);
//! - the remaining time is clamped to the door's access time, and a
//!   record that ends implausibly far ahead (beyond access +
//!   [`SKEW_TOLERANCE`]) is applied clamped with a skew warning.

use std::time::Duration;

use super::record::{GrantRecord, RecordKind};

/// How far past a door's access time a record may end before its clock
/// is called implausible (NTP keeps nodes within milliseconds; this
/// allows for a slow publish, not for a broken clock).
pub const SKEW_TOLERANCE: Duration = Duration::from_secs(5);

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Open the door for the record's ip for `ttl`; `skewed` if the record
    /// ended implausibly late and was clamped.
    Apply {
        /// Remaining time, clamped to the door's access.
        ttl: Duration,
        /// The record's end was implausibly far ahead.
        skewed: bool,
    },
    /// Close the door for the record's ip (a revocation).
    Revoke,
    /// Nothing to do.
    Skip(Skip),
}

/// Why a record changes nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Made by this node in this run (already applied).
    Own,
    /// The door is unknown here or not shared.
    NotShared,
    /// The grant has ended.
    Expired,
}

/// Decides what `record` means at `now_ms` on a node whose current run
/// makes ids starting with `run_prefix`; `access` is the door's access
/// time here (None: the door is not shared here).
pub fn decide(
    record: &GrantRecord,
    now_ms: u64,
    run_prefix: &str,
    access: Option<Duration>,
) -> Decision {
    if record.id.starts_with(run_prefix) {
        return Decision::Skip(Skip::Own);
    }
    let Some(access) = access else {
        return Decision::Skip(Skip::NotShared);
    };
    if record.kind == RecordKind::Revoke {
        return Decision::Revoke;
    }
    let Some(left) = record.expires_at.checked_sub(now_ms).filter(|&ms| ms > 0) else {
        return Decision::Skip(Skip::Expired);
    };
    let left = Duration::from_millis(left);
    Decision::Apply {
        ttl: left.min(access),
        skewed: left > access + SKEW_TOLERANCE,
    }
}
