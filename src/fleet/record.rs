//! The fleet's grant record and its authentication: what one node tells
//! the others when it grants (or revokes) a fleet door's access.
//!
//! Why an HMAC of our own on top of the engine's auth: anyone who can
//! write to the NATS bucket (a leaked NATS credential, a misconfigured
//! account) must still be unable to open doors. Only holders of the
//! group key can sign; a record that does not verify is ignored. The MAC
//! covers a canonical text (fixed field order, one field per line, the
//! group name first), not the JSON bytes, so a re-encoding cannot change
//! what is signed and a record copied from another group's bucket fails
//! even if the two groups share a key. Nothing secret is in a record.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The version tag of the canonical text (first line signed).
const VERSION: &str = "portknock-fleet-v1";

/// Largest record accepted from the bucket (bytes of JSON).
pub const MAX_RECORD_LEN: usize = 4096;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// Access opened (or renewed) until `expires_at`.
    Grant,
    /// Access revoked early: every node closes the door for `ip`.
    Revoke,
}

/// One grant (or revocation) for the fleet: `ip` may reach `ports` of
/// `door` until `expires_at` (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Grant or revoke.
    pub kind: RecordKind,
    /// Who may connect.
    pub ip: IpAddr,
    /// The door's name (`spa` for SPA grants).
    pub door: String,
    /// The ports the origin opened (informational: each node opens its
    /// own configuration's ports for the door).
    pub ports: Vec<u16>,
    /// When access ends, unix milliseconds (clocks NTP-synchronised).
    pub expires_at: u64,
    /// The node that accepted the knock or packet.
    pub origin: String,
    /// Unique per record: `<origin>.<run>.<sequence>`.
    pub id: String,
}

/// A record with its MAC, as stored in the bucket (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The record.
    #[serde(flatten)]
    pub record: GrantRecord,
    /// HMAC-SHA256 of the canonical text, lowercase hex.
    pub hmac: Option<String>,
}

/// Why a value from the bucket was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Too long to be ours.
    #[error("record of {0} bytes is longer than {MAX_RECORD_LEN}")]
    TooLong(usize),
    /// Not a record's JSON.
    #[error("record does not parse: {0}")]
    Malformed(String),
    /// No MAC.
    #[error("record is not signed")]
    Unsigned,
    /// The MAC does not match (wrong key, another group, or tampering).
    #[error("record signature does not verify (forged, tampered, or another group's)")]
    BadSignature,
}

/// The group key: HMAC key shared by every node of a group.
#[derive(Clone)]
pub struct GroupKey(Vec<u8>);

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

impl GroupKey {
    /// A key from raw bytes (at least 16 of them; checked by the loader).
    pub fn new(bytes: Vec<u8>) -> Self {
        GroupKey(bytes)
    }

    fn mac(&self, group: &str, record: &GrantRecord) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(canonical(group, record).as_bytes());
        mac
    }

    /// Signs `record` for `group`.
    pub fn sign(&self, group: &str, record: GrantRecord) -> SignedRecord {
        let tag = self.mac(group, &record).finalize().into_bytes();
        SignedRecord {
            record,
            hmac: Some(hex(&tag)),
        }
    }

    /// Parses a bucket value and checks its MAC for `group`.
    pub fn verify(&self, group: &str, bytes: &[u8]) -> Result<GrantRecord, RecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let signed: SignedRecord =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        let record = signed.record;
        if [&record.door, &record.origin, &record.id]
            .iter()
            .any(|f| f.contains('\n'))
        {
            return Err(RecordError::Malformed("a field holds a newline".into()));
        }
        let tag = signed.hmac.ok_or(RecordError::Unsigned)?;
        let tag = unhex(&tag).ok_or(RecordError::BadSignature)?;
        self.mac(group, &record)
            .verify_slice(&tag)
            .map_err(|_| RecordError::BadSignature)?;
        Ok(record)
    }
}

/// The text the MAC covers: one field per line, in a fixed order.
pub fn canonical(group: &str, r: &GrantRecord) -> String {
    let kind = match r.kind {
        RecordKind::Grant => "grant",
        RecordKind::Revoke => "revoke",
    };
    let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
    format!(
        "{VERSION}\n{group}\n{kind}\n{}\n{}\n{}\n{}\n{}\n{}",
        r.ip.to_canonical(),
        r.door,
        ports.join(","),
        r.expires_at,
        r.origin,
        r.id
    )
}

/// The bucket key of `(door, ip)`: one key per door and address, so a
/// renewal overwrites and the watch's last value is the one that counts.
/// NATS keys allow `[-/_=.a-zA-Z0-9]`: door names are identifiers, and an
/// IPv6 address's `:` becomes `_`.
pub fn key_of(door: &str, ip: IpAddr) -> String {
    let ip = ip.to_canonical().to_string().replace(':', "_");
    format!("{door}.{ip}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
