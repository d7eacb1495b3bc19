//! A door's rotating sequence as the configuration holds it: the key (read
//! and checked once, at load, so a bad key file refuses the config, not a
//! knock), the rotation's shape, the protocol and the used-sequence state
//! file. The derivation itself is in `rotate/`.
//!
//! In a config file: `sequence = { rotate = "/etc/portknock/door.key",
//! period = "30s", length = 4, ports = "20000-60000", protocols = "udp" }`,
//! optionally `state = "/var/lib/portknock/web.used"` (default: the key
//! file's path with `.used` appended).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{KnockPort, Problem, Proto};
use crate::rotate::{DoorKey, MIN_ENTROPY_BITS, Rotation};

/// Default knocks per rotating sequence.
pub const DEFAULT_LENGTH: usize = 4;
/// Default range of a rotating sequence: 40 001 ports, 61.1 bits for 4
/// knocks, clear of the well-known ports services use. It overlaps
/// Linux's ephemeral range (32768-60999): the server binds a knock socket
/// per port, so an outgoing connection holding one of them is only a
/// conflict for its own address and port pair (the knock socket is bound
/// to the wildcard and a busy port is skipped with a warning).
pub const DEFAULT_PORTS: &str = "20000-60000";

/// A validated rotating sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatingSequence {
    /// The key file, as given.
    pub key_path: PathBuf,
    /// The key it holds.
    pub key: DoorKey,
    /// Period, length, port range.
    pub rotation: Rotation,
    /// Protocol of the knocks (UDP: the bound-socket receiver hears UDP).
    pub proto: Proto,
    /// The used-sequence state file.
    pub state: PathBuf,
}

impl RotatingSequence {
    /// Checks and builds a rotating sequence: reads the key file at
    /// `key_path`, checks the rotation (period, length, range, entropy).
    pub fn new(
        key_path: &Path,
        period: Duration,
        length: usize,
        ports: &str,
        protocols: &str,
        state: Option<PathBuf>,
    ) -> Result<Self, Problem> {
        let proto = match protocols.trim().to_ascii_lowercase().as_str() {
            "udp" => Proto::Udp,
            other => {
                return Err(Problem::Rotation(format!(
                    "protocols '{other}' is not supported: rotating knocks are udp (tcp needs stealth capture)"
                )));
            }
        };
        let rotation = Rotation::new(period, length, ports, MIN_ENTROPY_BITS)
            .map_err(|e| Problem::Rotation(e.to_string()))?;
        let key = DoorKey::load(key_path).map_err(|e| Problem::RotateKey(e.to_string()))?;
        let state = state.unwrap_or_else(|| {
            let mut path = key_path.as_os_str().to_owned();
            path.push(".used");
            PathBuf::from(path)
        });
        Ok(Self {
            key_path: key_path.to_path_buf(),
            key,
            rotation,
            proto,
            state,
        })
    }

    /// The knocks of `door`'s sequence in period `c`.
    pub fn knocks(&self, door: &str, c: u64) -> Vec<KnockPort> {
        let proto = self.proto;
        let ports = self.rotation.sequence(&self.key, door, c);
        ports
            .into_iter()
            .map(|port| KnockPort { port, proto })
            .collect()
    }
}
