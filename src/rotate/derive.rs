//! The derivation of a rotating door's ports.
//!
//! Chosen scheme (documented in the README): for door `d`, period
//! `c = floor(unix_time / period)` and knock `i`,
//!
//! ```text
//! block_j = HMAC-SHA256(key, "portknock-rotate-v1" || len(d) || d || u64_be(c) || u8(i) || u8(j))
//! ```
//!
//! Each 32-byte block gives eight big-endian `u32` candidates `x`; a
//! candidate is taken when `x < floor(2^32 / span) * span` (rejection
//! sampling: no modulo bias) and gives `port = first + x mod span`. A
//! candidate within [`MIN_GAP`] of an earlier port of the same sequence is
//! refused too, so decoy bands around one knock never swallow the next
//! (this costs under 0.01 bits per knock for the default span). The door's
//! name is in the message so two doors sharing a key still differ, and a
//! version tag so a later scheme cannot collide with this one.
//!
//! Entropy: `length * log2(span)` bits per sequence; [`MIN_ENTROPY_BITS`]
//! (56) is the least a door accepts by default (4 knocks over 20000-60000
//! give 61.1 bits).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::DoorKey;

/// The least secret per sequence, in bits, a rotating door accepts: the
/// issue's floor (knockd PR #76 gave 8 bits a knock; knockd_rotator v2
/// checks 40 bits).
pub const MIN_ENTROPY_BITS: f64 = 56.0;
/// Least distance between two ports of one sequence (see the module doc).
pub const MIN_GAP: u16 = 16;
/// Periods accepted either side of the server's own (clock skew).
pub const SKEW_PERIODS: u64 = 1;
/// Longest rotating sequence.
pub const MAX_LENGTH: usize = 16;
/// The version tag of the derivation.
const TAG: &[u8] = b"portknock-rotate-v1";

/// A rotating sequence's shape: how long a period lasts, how many knocks,
/// over which ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// How long one sequence lasts (at least a second).
    pub period: Duration,
    /// Knocks per sequence.
    pub length: usize,
    /// Lowest port of the range.
    pub first: u16,
    /// Highest port of the range (inclusive).
    pub last: u16,
}

/// A rotation that is refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RotationError {
    /// A period of zero (or under a second).
    #[error("period {0:?} is too short: a rotating sequence lasts at least 1s")]
    Period(Duration),
    /// A length of zero or over `MAX_LENGTH`.
    #[error("length {0} is out of range: a rotating sequence has 1 to {MAX_LENGTH} knocks")]
    Length(usize),
    /// Not `LOW-HIGH` with `1 <= LOW < HIGH <= 65535`.
    #[error("ports '{0}' is not a range LOW-HIGH with 1 <= LOW < HIGH <= 65535")]
    Ports(String),
    /// Too little secret per sequence.
    #[error(
        "{length} knocks over {span} ports give {bits:.1} bits per sequence, below the {min} required: use more knocks or a wider range (e.g. length = 4, ports = \"20000-60000\": 61.1 bits)"
    )]
    Entropy {
        /// Knocks per sequence.
        length: usize,
        /// Ports in the range.
        span: u32,
        /// `length * log2(span)`.
        bits: f64,
        /// The floor.
        min: f64,
    },
}

/// Bits of secret in a sequence of `length` knocks over `span` ports.
pub fn sequence_bits(length: usize, span: u32) -> f64 {
    length as f64 * f64::from(span).log2()
}

/// The period `unix_secs` falls in, for periods of `period`.
pub fn period_at(unix: Duration, period: Duration) -> u64 {
    let p = period.as_nanos().max(1);
    (unix.as_nanos() / p) as u64
}

impl Rotation {
    /// Checks a rotation and builds it; `min_bits` is the entropy floor
    /// ([`MIN_ENTROPY_BITS`] unless configured).
    pub fn new(
        period: Duration,
        length: usize,
        ports: &str,
        min_bits: f64,
    ) -> Result<Self, RotationError> {
        if period < Duration::from_secs(1) {
            return Err(RotationError::Period(period));
        }
        if length == 0 || length > MAX_LENGTH {
            return Err(RotationError::Length(length));
        }
        let bad = || RotationError::Ports(ports.to_string());
        let (lo, hi) = ports.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = lo.trim().parse().map_err(|_| bad())?;
        let last: u16 = hi.trim().parse().map_err(|_| bad())?;
        if first == 0 || first >= last {
            return Err(bad());
        }
        let rotation = Self {
            period,
            length,
            first,
            last,
        };
        let bits = sequence_bits(length, rotation.span());
        if bits < min_bits {
            return Err(RotationError::Entropy {
                length,
                span: rotation.span(),
                bits,
                min: min_bits,
            });
        }
        // Room for `length` ports MIN_GAP apart, or the sampling could not end.
        if rotation.span() <= length as u32 * (2 * u32::from(MIN_GAP) + 1) {
            return Err(bad());
        }
        Ok(rotation)
    }

    /// Ports in the range.
    pub fn span(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// The period `unix` falls in.
    pub fn period_at(&self, unix: Duration) -> u64 {
        period_at(unix, self.period)
    }

    /// When period `c` starts, since the Unix epoch.
    pub fn start_of(&self, c: u64) -> Duration {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(c));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The ports of `door`'s sequence in period `c` (see the module doc).
    pub fn sequence(&self, key: &DoorKey, door: &str, c: u64) -> Vec<u16> {
        let span = self.span();
        let limit = (u64::from(u32::MAX) + 1) / u64::from(span) * u64::from(span);
        let mut ports: Vec<u16> = Vec::with_capacity(self.length);
        for i in 0..self.length {
            'blocks: for j in 0..=u8::MAX {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
                    .expect("HMAC takes any key length");
                mac.update(TAG);
                mac.update(&[door.len() as u8]);
                mac.update(door.as_bytes());
                mac.update(&c.to_be_bytes());
                mac.update(&[i as u8, j]);
                let block = mac.finalize().into_bytes();
                for chunk in block.chunks_exact(4) {
                    let x = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
                    if u64::from(x) >= limit {
                        continue;
                    }
                    let port = (u32::from(self.first) + x % span) as u16;
                    if ports.iter().any(|&p| p.abs_diff(port) < MIN_GAP) {
                        continue;
                    }
                    ports.push(port);
                    break 'blocks;
                }
            }
            assert_eq!(ports.len(), i + 1, "2048 candidates all refused");
        }
        ports
    }
}
