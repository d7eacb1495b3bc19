//! Fleet mode (issue 15): a grant accepted by any node of a group opens
//! the door on every node, through NATS JetStream key-value buckets; SPA
//! digests are created fleet-wide so a packet replayed to another node
//! is refused. The engine distributes; each node's own kernel or timer
//! enforces every deadline, with the time that remains.
//!
//! | file | concept |
//! |---|---|
//! | `settings.rs` | [`FleetSettings`]: the `[fleet]` table, its checks, the group key file |
//! | `record.rs` | [`GrantRecord`]: what crosses the bus, its canonical text and HMAC |
//! | `decide.rs` | [`decide`]: what a verified record means here (pure: own, ended, clamp, skew) |
//! | `link.rs` | [`FleetLink`]: the engine's end (publish, refuse-when-unreachable, replay check) |
//! | `bus.rs` | the NATS task: connect, buckets, watch and apply, publish and hold |
//! | `start.rs` | [`listener`]: the fleet from a configuration, as a server listener |
//!
//! Buckets (names from the group): `portknock-grants-<group>` holds one
//! key per `(door, ip)` (`record::key_of`), history 1, bucket-wide
//! `max_age` (NATS 2.9 has no per-key TTL; per-door durations live in
//! `expires_at`); `portknock-replay-<group>` holds SPA digests with
//! `max_age` = the SPA packet-age window, written with `create` (fails if
//! the key exists: the fleet-wide replay check).

mod bus;
mod decide;
mod link;
mod record;
mod settings;
mod start;

pub use bus::{Buckets, CONNECT_TIMEOUT, FleetError, connect, run};
pub use decide::{Decision, SKEW_TOLERANCE, Skip, decide};
pub use link::{FleetLink, OUTBOX, REPLAY_CHECK_TIMEOUT, ReplayCheck, SPA_DOOR, unix_ms};
pub use record::{
    GrantRecord, GroupKey, MAX_RECORD_LEN, RecordError, RecordKind, SignedRecord, canonical, key_of,
};
pub use settings::{
    FleetAuth, FleetConfigError, FleetSettings, MIN_KEY_LEN, OneOrMany, RawFleet, WhenUnreachable,
    load_key,
};
pub use start::listener;

#[cfg(test)]
mod tests;
