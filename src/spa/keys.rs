//! Key material: the encryption key, the optional HMAC key, and how they are
//! used. Secrets never appear in `Debug` output or log lines.

use std::fmt;

use super::digest::DigestType;

/// Longest encryption key libfko accepts, in bytes.
pub const MAX_KEY_LEN: usize = 32;
/// Longest HMAC key the fwknop client accepts, in bytes.
pub const MAX_HMAC_KEY_LEN: usize = 128;

/// Bytes that must stay secret: `Debug` prints only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The key bytes, for the crypto code.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// How the encryption key goes into the key derivation (fwknop `-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionMode {
    /// The key bytes as they are (fwknop's default, `cbc`).
    #[default]
    Cbc,
    /// fwknop's legacy IV mode: the key right-padded with `'0'` or cut to 16
    /// bytes first. The real client never combines it with an HMAC.
    Legacy,
}

impl EncryptionMode {
    /// Parses `cbc` or `legacy` (case-insensitive), as in `ENCRYPTION_MODE`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cbc" => Some(EncryptionMode::Cbc),
            "legacy" => Some(EncryptionMode::Legacy),
            _ => None,
        }
    }
}

/// The keys one side of an SPA exchange holds: server stanza or client rc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaKeys {
    /// The "Rijndael" key: 1..=32 raw bytes.
    pub key: SecretBytes,
    /// The HMAC key; `None` means packets carry no HMAC (weak; opt-in only).
    pub hmac_key: Option<SecretBytes>,
    /// The HMAC hash (`HMAC_DIGEST_TYPE`, default SHA-256).
    pub hmac_digest: DigestType,
    /// Key derivation mode (`ENCRYPTION_MODE`).
    pub mode: EncryptionMode,
}

/// Keys that fwknop would refuse to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Encryption key empty or longer than 32 bytes.
    #[error("encryption key is {len} bytes: expected 1 to {MAX_KEY_LEN} bytes")]
    KeyLength {
        /// The length given.
        len: usize,
    },
    /// HMAC key empty or longer than 128 bytes.
    #[error("HMAC key is {len} bytes: expected 1 to {MAX_HMAC_KEY_LEN} bytes")]
    HmacKeyLength {
        /// The length given.
        len: usize,
    },
    /// The two keys are the same (fwknop refuses this).
    #[error("the encryption key and the HMAC key are identical: they must differ")]
    SameKeys,
    /// Legacy mode with an HMAC key (the fwknop client refuses this).
    #[error("legacy encryption mode cannot be combined with an HMAC key")]
    LegacyWithHmac,
}

impl SpaKeys {
    /// Builds and checks a key set the way fwknop checks it.
    pub fn new(
        key: Vec<u8>,
        hmac_key: Option<Vec<u8>>,
        hmac_digest: DigestType,
        mode: EncryptionMode,
    ) -> Result<Self, KeyError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(KeyError::KeyLength { len: key.len() });
        }
        if let Some(h) = &hmac_key {
            if h.is_empty() || h.len() > MAX_HMAC_KEY_LEN {
                return Err(KeyError::HmacKeyLength { len: h.len() });
            }
            if *h == key {
                return Err(KeyError::SameKeys);
            }
            if mode == EncryptionMode::Legacy {
                return Err(KeyError::LegacyWithHmac);
            }
        }
        Ok(SpaKeys {
            key: SecretBytes::new(key),
            hmac_key: hmac_key.map(SecretBytes::new),
            hmac_digest,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_checks_apply() {
        let k = SpaKeys::new(
            b"secret".to_vec(),
            Some(b"other".to_vec()),
            DigestType::Sha256,
            EncryptionMode::Cbc,
        )
        .unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("secret") && dbg.contains("redacted"), "{dbg}");
        let e = |k: &[u8], h: Option<&[u8]>, m| {
            SpaKeys::new(k.to_vec(), h.map(<[u8]>::to_vec), DigestType::Sha256, m).unwrap_err()
        };
        assert_eq!(
            e(b"", None, EncryptionMode::Cbc),
            KeyError::KeyLength { len: 0 }
        );
        assert_eq!(
            e(&[1; 33], None, EncryptionMode::Cbc),
            KeyError::KeyLength { len: 33 }
        );
        assert_eq!(e(b"a", Some(b"a"), EncryptionMode::Cbc), KeyError::SameKeys);
        assert_eq!(
            e(b"a", Some(b""), EncryptionMode::Cbc),
            KeyError::HmacKeyLength { len: 0 }
        );
        assert_eq!(
            e(b"a", Some(b"b"), EncryptionMode::Legacy),
            KeyError::LegacyWithHmac
        );
        assert_eq!(
            EncryptionMode::parse("LEGACY"),
            Some(EncryptionMode::Legacy)
        );
        assert_eq!(EncryptionMode::parse("ctr"), None);
    }
}
