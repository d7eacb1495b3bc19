//! The SPA encoder: what `knock-client --spa` sends, byte-compatible with the
//! fwknop 2.6.10 client (FWKNOP-SPA.md §3..§5), so fwknopd accepts it too.

use std::net::Ipv4Addr;

use super::b64;
use super::cipher::{self, SALTED_PREFIX_B64};
use super::digest::DigestType;
use super::keys::SpaKeys;
use super::message::{self, MAX_CLIENT_TIMEOUT, MessageType, PlainFields, PortSpec, RAND_VAL_LEN};
use super::verifier::{GPG_MIN_LEN, MIN_PACKET_LEN};

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaRequest {
    /// Username field (fwknop: `-U`, else the login name).
    pub username: String,
    /// The IP to open; `0.0.0.0` asks the server to use the packet's source.
    pub allow_ip: Ipv4Addr,
    /// Ports to open (`-A tcp/22,udp/53`).
    pub access: Vec<PortSpec>,
    /// Client timeout in seconds; 0 for the server's default. Non-zero makes
    /// the message type 3 (access with timeout), as libfko does.
    pub client_timeout: u32,
    /// The inner digest (`-m`, default SHA-256).
    pub digest: DigestType,
    /// The packet's timestamp (unix seconds): the caller passes its clock.
    pub timestamp: u64,
}

impl SpaRequest {
    /// A request with fwknop's defaults (SHA-256, no client timeout).
    pub fn new(username: &str, allow_ip: Ipv4Addr, access: Vec<PortSpec>, timestamp: u64) -> Self {
        SpaRequest {
            username: username.to_string(),
            allow_ip,
            access,
            client_timeout: 0,
            digest: DigestType::Sha256,
            timestamp,
        }
    }
}

/// A request that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// No ports.
    #[error("no ports to open: give at least one proto/port such as tcp/22")]
    NoPorts,
    /// A username fwknopd would refuse.
    #[error("invalid username: 1 to 48 printable ASCII chars without \"/\\[]:;|=,+*?<>")]
    BadUsername,
    /// A client timeout above fwknopd's maximum.
    #[error("client timeout {0} s is too large: maximum {MAX_CLIENT_TIMEOUT}")]
    TimeoutTooLarge(u32),
    /// The packet would be so long that fwknopd treats it as GnuPG.
    #[error(
        "packet would be {len} bytes; fwknopd ignores packets of {GPG_MIN_LEN} or more: request fewer ports"
    )]
    TooLong {
        /// The length it would have.
        len: usize,
    },
    /// The random source failed.
    #[error("no randomness available from the OS")]
    Random,
}

/// Encodes `req` with fresh randomness (the 16-digit random field and the
/// 8-byte salt come from the OS).
pub fn encode(req: &SpaRequest, keys: &SpaKeys) -> Result<String, EncodeError> {
    let mut bytes = [0u8; RAND_VAL_LEN + 8];
    getrandom::fill(&mut bytes).map_err(|_| EncodeError::Random)?;
    let rand_val: String = bytes[..RAND_VAL_LEN]
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let mut salt = [0u8; 8];
    salt.copy_from_slice(&bytes[RAND_VAL_LEN..]);
    encode_with(req, keys, &rand_val, salt)
}

/// Encodes `req` with the given random field (16 digits) and salt:
/// deterministic, for tests and known-answer checks.
pub fn encode_with(
    req: &SpaRequest,
    keys: &SpaKeys,
    rand_val: &str,
    salt: [u8; 8],
) -> Result<String, EncodeError> {
    if req.access.is_empty() {
        return Err(EncodeError::NoPorts);
    }
    // 48 chars keep the base64 field within fwknopd's 64.
    if !message::valid_username(&req.username) || req.username.len() > 48 {
        return Err(EncodeError::BadUsername);
    }
    if req.client_timeout > MAX_CLIENT_TIMEOUT {
        return Err(EncodeError::TimeoutTooLarge(req.client_timeout));
    }
    let mut text = req.allow_ip.to_string();
    for p in &req.access {
        text.push(',');
        text.push_str(&p.to_string());
    }
    let msg_type = if req.client_timeout > 0 {
        MessageType::ClientTimeoutAccess
    } else {
        MessageType::Access
    };
    let plain = message::encode_plaintext(&PlainFields {
        rand_val,
        username: &req.username,
        timestamp: req.timestamp,
        msg_type,
        message: &text,
        server_auth: None,
        client_timeout: req.client_timeout,
        digest: req.digest,
    });
    let blob = cipher::encrypt(plain.as_bytes(), keys.key.expose(), &salt, keys.mode);
    let b = b64::encode(&blob);
    let mut packet = b
        .get(SALTED_PREFIX_B64.len()..)
        .unwrap_or_default()
        .to_string();
    if let Some(hmac_key) = &keys.hmac_key {
        packet.push_str(&b64::encode(
            &keys.hmac_digest.hmac(hmac_key.expose(), b.as_bytes()),
        ));
    }
    if packet.len() >= GPG_MIN_LEN {
        return Err(EncodeError::TooLong { len: packet.len() });
    }
    debug_assert!(packet.len() >= MIN_PACKET_LEN || keys.hmac_key.is_none());
    Ok(packet)
}
