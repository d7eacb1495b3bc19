//! What the core answers: one [`Judged`] verdict per door a knock concerns,
//! and the counters of what the tracker did.

use std::net::IpAddr;
use std::time::Instant;

/// Index of a door in the configuration's order (the core's `doors`).
pub type DoorId = u16;

/// What the core decided about one knock, for one door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The knock was the next expected port (or a tolerated duplicate of
    /// the one just matched); `matched` of `total` done.
    Progress {
        /// Source of the knock.
        ip: IpAddr,
        /// Knocks matched so far, including this one.
        matched: usize,
        /// Length of the sequence.
        total: usize,
    },
    /// The sequence is complete: open access for `ip` until `until`.
    Grant {
        /// Source that completed the sequence.
        ip: IpAddr,
        /// End of the access.
        until: Instant,
    },
    /// A wrong knock: `ip` is locked out until `until`.
    LockedOut {
        /// Source of the wrong knock.
        ip: IpAddr,
        /// End of the lockout.
        until: Instant,
    },
    /// The knock was ignored because `ip` is locked out until `until`.
    Ignored {
        /// Source of the ignored knock.
        ip: IpAddr,
        /// End of the (unchanged) lockout.
        until: Instant,
    },
    /// The knock was ignored for this door: `ip` is outside its `allow`
    /// list. Nothing changed.
    NotAllowed {
        /// Source of the ignored knock.
        ip: IpAddr,
    },
}

impl Verdict {
    /// Short name of the verdict, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Progress { .. } => "progress",
            Verdict::Grant { .. } => "grant",
            Verdict::LockedOut { .. } => "locked_out",
            Verdict::Ignored { .. } => "ignored",
            Verdict::NotAllowed { .. } => "not_allowed",
        }
    }
}

/// A verdict and the door it is about. A lockout concerns the source on
/// every door; it names the first door (in configuration order) the
/// source may use that has the knocked port, else the first it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// The door.
    pub door: DoorId,
    /// What happened on it.
    pub verdict: Verdict,
}

/// Counters of what the tracker did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Entries removed to make room while the table was full (progress
    /// among them went to the ledger), plus first knocks that went to the
    /// ledger directly.
    pub evictions: u64,
    /// Entries removed because their window or lockout had passed.
    pub expirations: u64,
    /// Knocks judged with progress restored from the ledger.
    pub restored: u64,
    /// Tolerated duplicates of the knock just matched.
    pub duplicates: u64,
    /// Progress the ledger forgot to make room: those sources are judged
    /// as a fresh start at their next knock.
    pub forgotten: u64,
    /// Lockouts dropped to make room (those sources may knock again).
    pub lockouts_evicted: u64,
    /// Completed sequences dropped to make room, or not kept for lack of
    /// it (a copy of their last knock is then judged afresh).
    pub completed_dropped: u64,
    /// Knocks ignored for a door because the source is outside its
    /// `allow` list (one per door).
    pub not_allowed: u64,
    /// Progress on a door reset by a knock that another door took.
    pub resets: u64,
    /// Lockouts lifted by a rotating door's correct first knock.
    pub lockouts_lifted: u64,
}
