//! Rotating knock sequences (issue 14): a door whose ports change every
//! period, derived from a secret only the server and its clients hold.
//!
//! Why: a fixed sequence is a password sent in clear; whoever sees it once
//! replays it forever. A rotating sequence seen on the wire is worth one
//! use: the server refuses a sequence once it has opened the door, from any
//! address, for the rest of its life (periods `c-1`, `c`, `c+1`).
//!
//! | file | job |
//! |---|---|
//! | `rotate/derive.rs` | the derivation: ports of period `c` from the door's key (HMAC-SHA256, rejection sampling) and the entropy check |
//! | `rotate/key.rs` | key files: load (mode and length checked), `--keygen` (0600) |
//! | `rotate/used.rs` | the used-sequence memory per door and period, bounded, kept across restarts in a small state file written atomically |
//!
//! All of it is pure except reading and writing the files the user named;
//! the current period is computed by the caller from its clock and passed
//! in ([`period_at`]).

mod derive;
mod key;
mod used;

pub use derive::{
    MIN_ENTROPY_BITS, MIN_GAP, Rotation, RotationError, SKEW_PERIODS, period_at, sequence_bits,
};
pub use key::{DoorKey, KEY_LEN, KeyError, MIN_KEY_LEN, write_new_key};
pub use used::{UsedError, UsedSequences};

#[cfg(test)]
mod tests;
