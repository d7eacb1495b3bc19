//! Decoys (issue 14): ports next to a door's knock ports that are heard
//! too and count as wrong knocks, so a sweep cannot complete a sequence.
//!
//! Why: the seed's ascending sequence (1234, 5678, 9012) falls to one
//! source walking ports upward: the ports in between are never heard, so
//! they never reset it. With decoys, a sweep that reaches a knock port in
//! order has just knocked the decoy below it (a wrong knock: its progress
//! is reset and it is locked out), and the decoy above it comes before the
//! next knock port (rotating sequences keep their ports
//! [`crate::rotate::MIN_GAP`] apart, so a band never holds the next knock).
//! A random sweep meets `2 * band` decoys for each knock port.
//!
//! `decoys = true` (the default for doors in a config file): a band of
//! [`DEFAULT_BAND`] ports either side of each knock port; `decoys = false`
//! (the default for the seed's flags, which keep the seed's behaviour);
//! `decoys = [1000, 1001, ...]`: exactly these ports. Knock ports and
//! protected ports of any door are never decoys. With the bound-socket
//! receiver each decoy is a bound UDP socket (a busy port is skipped with
//! a warning); with stealth capture they join the capture filter.

/// Ports either side of a knock port that are decoys by default: enough
/// that an ordered sweep in either direction, or one skipping a few ports,
/// meets one between two knock ports.
pub const DEFAULT_BAND: u16 = 8;

/// A door's decoys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Decoys {
    /// None (the seed's flags).
    #[default]
    Off,
    /// A band of this many ports either side of each knock port.
    Band(u16),
    /// Exactly these ports.
    Set(Vec<u16>),
}

impl Decoys {
    /// The decoy ports around `knocks` (before excluding knock and
    /// protected ports, which the caller does over every door).
    pub fn ports(&self, knocks: &[u16]) -> Vec<u16> {
        match self {
            Decoys::Off => Vec::new(),
            Decoys::Set(ports) => ports.clone(),
            Decoys::Band(band) => knocks
                .iter()
                .flat_map(|&k| {
                    let lo = k.saturating_sub(*band).max(1);
                    let hi = k.saturating_add(*band);
                    (lo..=hi).filter(move |&p| p != k)
                })
                .collect(),
        }
    }
}
