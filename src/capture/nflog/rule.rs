//! What a kernel backend installs so the NFLOG reader hears knocks: one
//! value, rendered by each backend in its own words
//! (`firewall/nftables/capture.rs`, `firewall/iptables/capture.rs`).

use super::{DEFAULT_GROUP, SNAPLEN};
use crate::capture::CaptureSpec;

/// The capture rule of a kernel backend ([`crate::firewall::FirewallOptions::capture`]):
/// packets addressed to this host (`fib daddr type local` / `-m addrtype
/// --dst-type LOCAL`) that the [`CaptureSpec`] asks for are logged to NFLOG
/// `group`, up to `snaplen` bytes, and continue on their way unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogRule {
    /// Which packets: UDP ports, TCP ports (SYN without ACK), interfaces.
    pub spec: CaptureSpec,
    /// The NFLOG group the reader binds ([`DEFAULT_GROUP`] unless
    /// `--nflog-group`).
    pub group: u16,
    /// Bytes of each packet copied to the reader ([`SNAPLEN`]).
    pub snaplen: u32,
}

impl NflogRule {
    /// The rule for `spec` on `group`, with the default snap length.
    pub fn new(spec: CaptureSpec, group: u16) -> Self {
        Self {
            spec,
            group,
            snaplen: SNAPLEN,
        }
    }

    /// Whether the rule captures anything at all (no ports: no rule).
    pub fn is_empty(&self) -> bool {
        self.spec.udp_ports.is_empty() && self.spec.tcp_ports.is_empty()
    }
}

impl Default for NflogRule {
    fn default() -> Self {
        Self::new(CaptureSpec::default(), DEFAULT_GROUP)
    }
}
