//! Base64 as fwknop writes it: the standard alphabet (`+/`), every trailing
//! `=` removed on output, padding optional on input.
//!
//! One engine for the whole SPA module so that no call site can pick a
//! different alphabet or padding rule by accident.
//!
//! The outer payload is decoded strictly ([`decode_payload`]): no `=`, no
//! non-zero unused trailing bits. Every byte string then has exactly one
//! accepted text, so the replay cache, which keys the packet text, cannot be
//! walked around by re-spelling a captured packet (issue 9 item 11: without
//! HMAC, `=` appended or the last character's unused bits flipped made four
//! "new" packets of one). fwknop's clients strip `=` and never set those
//! bits, so nothing they send is refused.

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

/// The outer SPA payload: no padding, canonical trailing bits.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
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

/// Decodes the outer SPA payload: canonical unpadded base64 only, so that
/// one ciphertext has one text. `None` for anything else.
pub(crate) fn decode_payload(text: &[u8]) -> Option<Vec<u8>> {
    STRICT.decode(text).ok()
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

    #[test]
    fn the_payload_decoder_accepts_only_the_canonical_text() {
        assert_eq!(decode_payload(b"cm9vdA").unwrap(), b"root");
        assert_eq!(decode_payload(b"Zm9v").unwrap(), b"foo");
        // Padding, even correct padding, is a second spelling.
        assert!(decode_payload(b"cm9vdA==").is_none());
        assert!(decode_payload(b"cm9vdA=").is_none());
        // "dA" and "dB".."dP" differ only in unused bits: one is canonical.
        assert!(decode_payload(b"cm9vdB").is_none());
        assert!(decode_payload(b"cm9vdP").is_none());
        assert!(decode_payload(b"cm9v*A").is_none());
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).collect();
            assert_eq!(decode_payload(encode(&data).as_bytes()).unwrap(), data);
        }
    }
}
