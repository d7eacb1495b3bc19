//! What the SPA decoder concludes about one packet: a grant to carry out, or
//! a typed reason to drop it.
//!
//! `Display` of a rejection names the rule that failed and, at most, numbers
//! (lengths, offsets, seconds, a port): never key material, packet bytes, or
//! attacker-chosen text, so it is safe in a log line.

use std::net::Ipv4Addr;

use super::message::{MessageError, PortSpec, SpaMessage};

/// A packet that passed every check: open `ports` for `allow_ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The address to open (the packet's, or its source for `0.0.0.0`).
    pub allow_ip: Ipv4Addr,
    /// The ports to open, as requested.
    pub ports: Vec<PortSpec>,
    /// How long to keep them open, in seconds.
    pub timeout_secs: u32,
    /// Index of the access.conf stanza that accepted it (0-based, file order).
    pub stanza: usize,
    /// The replay-cache key: base64 of SHA-256 of the packet text.
    pub replay_digest: String,
    /// The decoded message, for logging and tests.
    pub message: SpaMessage,
}

/// A packet that was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub reason: RejectReason,
    /// The stanza whose reason this is, when one got that far (0-based).
    pub stanza: Option<usize>,
    /// The decoded message, when the packet authenticated and decoded.
    pub message: Option<Box<SpaMessage>>,
}

/// The decoder's conclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Open the firewall.
    Accept(Box<Accepted>),
    /// Drop the packet.
    Reject(Rejected),
}

/// Why a packet was dropped, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Shorter than fwknopd's minimum payload.
    #[error("packet too short: {len} bytes, minimum {min}")]
    TooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than fwknopd's maximum payload.
    #[error("packet too long: {len} bytes, maximum {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Starts with the `U2FsdGVkX1` prefix the client strips (replay evasion).
    #[error("packet starts with the re-added 'Salted__' prefix")]
    SaltedPrefixPresent,
    /// A byte outside `[A-Za-z0-9+/=]`.
    #[error("packet has a non-base64 byte at offset {offset}")]
    BadCharacter {
        /// Where.
        offset: usize,
    },
    /// No stanza's SOURCE matches the sender.
    #[error("no access stanza matches the source address")]
    NoStanzaForSource,
    /// Already seen (same packet text).
    #[error("replayed packet")]
    Replay,
    /// ≥ 400 chars: fwknopd classes it as GnuPG and never tries its keys.
    #[error("packet of {len} bytes is treated as GnuPG (not supported)")]
    TreatedAsGpg {
        /// Its length.
        len: usize,
    },
    /// The HMAC tag does not verify.
    #[error("HMAC verification failed")]
    HmacMismatch,
    /// Decryption gave no valid plaintext (wrong key or bad cipher length).
    #[error("decryption failed or decrypted data is invalid")]
    DecryptFailed,
    /// The plaintext broke a field rule or its digest.
    #[error("malformed SPA message: {0}")]
    Malformed(MessageError),
    /// The replay cache could not record the packet (fail closed).
    #[error("replay cache could not record the packet")]
    ReplayCacheFailed,
    /// Timestamp outside the window.
    #[error("timestamp is {skew_secs} s from now, beyond the {max_age_secs} s window")]
    StaleTimestamp {
        /// Packet time minus now.
        skew_secs: i64,
        /// The allowed window.
        max_age_secs: u64,
    },
    /// `0.0.0.0` requested but the stanza has REQUIRE_SOURCE_ADDRESS.
    #[error(
        "packet asks for its source address (0.0.0.0) but the stanza requires an explicit address"
    )]
    SourceAddressRequired,
    /// `0.0.0.0` requested but the sender is not IPv4.
    #[error("packet asks for its source address but the source is not IPv4")]
    SourceNotIpv4,
    /// The requested IP differs from the sender (strict source match).
    #[error("requested address differs from the packet's source address")]
    SourceMismatch,
    /// REQUIRE_USERNAME does not match.
    #[error("username does not match REQUIRE_USERNAME")]
    UsernameMismatch,
    /// A NAT request and NAT is not enabled.
    #[error("NAT access messages are not enabled")]
    NatNotEnabled,
    /// A command message (never executed by portknock).
    #[error("command messages are not allowed")]
    CommandNotEnabled,
    /// A requested port outside OPEN_PORTS.
    #[error("{proto}/{port} is not in OPEN_PORTS", proto = .0.proto.name(), port = .0.port)]
    PortNotAllowed(PortSpec),
}

impl RejectReason {
    /// A stable snake_case code for logs and tests (matches vectors.json).
    pub fn code(&self) -> &'static str {
        use RejectReason::*;
        match self {
            TooShort { .. } => "too_short",
            TooLong { .. } => "too_long",
            SaltedPrefixPresent => "salted_prefix_present",
            BadCharacter { .. } => "bad_character",
            NoStanzaForSource => "no_stanza_for_source",
            Replay => "replay",
            TreatedAsGpg { .. } => "treated_as_gpg",
            HmacMismatch => "hmac_mismatch",
            DecryptFailed => "decrypt_failed",
            Malformed(MessageError::DigestMismatch) => "digest_mismatch",
            Malformed(_) => "malformed",
            ReplayCacheFailed => "replay_cache_failed",
            StaleTimestamp { .. } => "stale_timestamp",
            SourceAddressRequired => "source_address_required",
            SourceNotIpv4 => "source_not_ipv4",
            SourceMismatch => "source_mismatch",
            UsernameMismatch => "username_mismatch",
            NatNotEnabled => "nat_not_enabled",
            CommandNotEnabled => "command_not_enabled",
            PortNotAllowed(_) => "port_not_allowed",
        }
    }
}
