//! The client's side of a rotating door (issue 14): the sequence of the
//! current period, derived from the door's key file exactly as the server
//! derives it (`rotate/derive.rs`), from this host's wall clock.
//!
//! `--clock-offset` shifts that clock (seconds, may be negative): a client
//! whose clock is off by up to one period still gets in (the server
//! accepts `c-1`..`c+1`), and the flag lets a test show it. It is also the
//! way for a second user to knock a period whose sequence someone already
//! used: `--clock-offset` of one period knocks `c+1`.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::rotate::{DoorKey, KeyError, MIN_ENTROPY_BITS, Rotation, RotationError};

/// What the client needs to derive a rotating door's sequence.
#[derive(Debug, Clone)]
pub struct RotatingFlags<'a> {
    /// The door's key file.
    pub key: &'a Path,
    /// The door's name (part of the derivation).
    pub door: &'a str,
    /// The period.
    pub period: Duration,
    /// Knocks per sequence.
    pub length: usize,
    /// The port range, `LOW-HIGH`.
    pub ports: &'a str,
    /// Seconds added to this host's clock.
    pub clock_offset: i64,
}

/// Why no sequence could be derived (bad input: exit 2).
#[derive(Debug, Error)]
pub enum RotatingError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The rotation's shape.
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

/// The sequence to knock now, and its period.
pub fn current_sequence(flags: &RotatingFlags<'_>) -> Result<(Vec<u16>, u64), RotatingError> {
    let rotation = Rotation::new(flags.period, flags.length, flags.ports, MIN_ENTROPY_BITS)?;
    let key = DoorKey::load(flags.key)?;
    let now = crate::server::rotation::unix_now();
    let shift = Duration::from_secs(flags.clock_offset.unsigned_abs());
    let at = match flags.clock_offset >= 0 {
        true => now + shift,
        false => now.saturating_sub(shift),
    };
    let c = rotation.period_at(at);
    Ok((rotation.sequence(&key, flags.door, c), c))
}
