//! Base64 as fwknop writes it: the standard alphabet (`+/`), every trailing
//! `=` removed on output, padding optional on input.
//!
//! One engine for the whole SPA module so that no call site can pick a
//! different alphabet or padding rule by accident.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard alphabet, no padding on output, padding optional on input,
/// non-zero trailing bits tolerated (fwknop's own decoder ignores them).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard padded base64, for key files (`KEY_BASE64`, `HMAC_KEY_BASE64`).
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes without trailing `=`.
pub(crate) fn encode(data: &[u8]) -> String {
    ENGINE.encode(data)
}

/// Decodes with or without trailing `=`. `None` on any invalid character.
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    ENGINE.decode(text).ok()
}

/// Encodes with padding, as key files hold keys.
pub(crate) fn encode_padded(data: &[u8]) -> String {
    PADDED.encode(data)
}

/// Decodes a key file value (padding optional, strict trailing bits).
pub(crate) fn decode_key(text: &str) -> Option<Vec<u8>> {
    PADDED.decode(text.trim().as_bytes()).ok()
}

/// Whether `c` may appear in an SPA payload: `[A-Za-z0-9+/=]`.
pub(crate) fn is_payload_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_tolerates_padding() {
        assert_eq!(encode(b"root"), "cm9vdA");
        assert_eq!(decode(b"cm9vdA").unwrap(), b"root");
        assert_eq!(decode(b"cm9vdA==").unwrap(), b"root");
        assert!(decode(b"cm9v*A").is_none());
        assert_eq!(encode_padded(b"foo"), "Zm9v");
        assert_eq!(decode_key("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_key("cm9vdA").unwrap(), b"root");
    }
}
