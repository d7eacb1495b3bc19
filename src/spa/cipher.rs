//! fwknop's Rijndael layer: OpenSSL `enc`-style salted AES-256-CBC.
//!
//! Key and IV come from `EVP_BytesToKey(MD5, 1 round)` over key‖salt, the
//! blob is `"Salted__"‖salt‖ciphertext`, padding is PKCS#7 (removed
//! leniently on decrypt, as libfko does). See FWKNOP-SPA.md §4 and §6.4.3.

use aes::Aes256;
use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest as _, Md5};

use super::keys::EncryptionMode;

/// OpenSSL's salted-blob magic.
pub const SALTED_MAGIC: &[u8; 8] = b"Salted__";
/// `b64("Salted__")` without its last, salt-dependent char: what the fwknop
/// client strips from the front of every packet.
pub const SALTED_PREFIX_B64: &str = "U2FsdGVkX1";
/// AES block size.
const BLOCK: usize = 16;

/// AES-256 key and IV derived from a key and salt.
pub(crate) struct DerivedKey {
    pub(crate) key: [u8; 32],
    pub(crate) iv: [u8; 16],
}

/// The key bytes after the mode's adjustment (legacy: pad with '0' / cut to 16).
fn mode_key(key: &[u8], mode: EncryptionMode) -> Vec<u8> {
    match mode {
        EncryptionMode::Cbc => key.to_vec(),
        EncryptionMode::Legacy => {
            let mut k: Vec<u8> = key.iter().copied().take(16).collect();
            k.resize(16, b'0');
            k
        }
    }
}

/// `EVP_BytesToKey` with MD5 and one round: D1‖D2 is the key, D3 the IV.
pub(crate) fn derive(key: &[u8], salt: &[u8; 8], mode: EncryptionMode) -> DerivedKey {
    let k = mode_key(key, mode);
    let d1 = Md5::new().chain_update(&k).chain_update(salt).finalize();
    let d2 = Md5::new()
        .chain_update(d1)
        .chain_update(&k)
        .chain_update(salt)
        .finalize();
    let d3 = Md5::new()
        .chain_update(d2)
        .chain_update(&k)
        .chain_update(salt)
        .finalize();
    let mut out = DerivedKey {
        key: [0; 32],
        iv: [0; 16],
    };
    out.key[..16].copy_from_slice(&d1);
    out.key[16..].copy_from_slice(&d2);
    out.iv.copy_from_slice(&d3);
    out
}

/// Encrypts `plain` into a `Salted__` blob.
pub(crate) fn encrypt(plain: &[u8], key: &[u8], salt: &[u8; 8], mode: EncryptionMode) -> Vec<u8> {
    let dk = derive(key, salt, mode);
    let enc = cbc::Encryptor::<Aes256>::new(&dk.key.into(), &dk.iv.into());
    let cipher = enc.encrypt_padded_vec_mut::<Pkcs7>(plain);
    let mut blob = Vec::with_capacity(16 + cipher.len());
    blob.extend_from_slice(SALTED_MAGIC);
    blob.extend_from_slice(salt);
    blob.extend_from_slice(&cipher);
    blob
}

/// Decrypts a salted blob. `None` when its length is not 16 + a positive
/// multiple of 16. The magic is not checked (libfko does not either).
/// Padding is removed only when it is consistent PKCS#7.
pub(crate) fn decrypt(blob: &[u8], key: &[u8], mode: EncryptionMode) -> Option<Vec<u8>> {
    if blob.len() < 2 * BLOCK || blob.len() % BLOCK != 0 {
        return None;
    }
    let salt: [u8; 8] = blob[8..16].try_into().ok()?;
    let dk = derive(key, &salt, mode);
    let dec = cbc::Decryptor::<Aes256>::new(&dk.key.into(), &dk.iv.into());
    let mut plain = dec.decrypt_padded_vec_mut::<NoPadding>(&blob[16..]).ok()?;
    if let Some(&pad) = plain.last() {
        let n = usize::from(pad);
        if (1..=BLOCK).contains(&n) && plain[plain.len() - n..].iter().all(|&b| b == pad) {
            plain.truncate(plain.len() - n);
        }
    }
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn derivation_matches_the_spec_known_answer() {
        let key =
            crate::spa::b64::decode_key("kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=").unwrap();
        let salt = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        let dk = derive(&key, &salt, EncryptionMode::Cbc);
        assert_eq!(
            hex(&dk.key),
            "7d7224141e1692259c7eb0c368c15fb7cf99392d860d6baab6b17d417dbd0a9b"
        );
        assert_eq!(hex(&dk.iv), "350f5bbe17c525334d685a88bd9b8546");
    }

    #[test]
    fn round_trip_and_bad_lengths() {
        for len in [0, 1, 15, 16, 17, 100] {
            let plain = vec![b'x'; len];
            for mode in [EncryptionMode::Cbc, EncryptionMode::Legacy] {
                let blob = encrypt(&plain, b"k", &[7; 8], mode);
                assert_eq!(&blob[..8], SALTED_MAGIC);
                assert_eq!(blob.len() % 16, 0);
                assert_eq!(decrypt(&blob, b"k", mode).unwrap(), plain);
            }
        }
        assert!(decrypt(&[0; 16], b"k", EncryptionMode::Cbc).is_none());
        assert!(decrypt(&[0; 33], b"k", EncryptionMode::Cbc).is_none());
        // Wrong key: decrypts to garbage, never panics.
        let blob = encrypt(b"hello", b"k", &[7; 8], EncryptionMode::Cbc);
        assert_ne!(
            decrypt(&blob, b"j", EncryptionMode::Cbc),
            Some(b"hello".to_vec())
        );
    }

    #[test]
    fn legacy_pads_with_ascii_zero_and_cuts_at_16() {
        assert_eq!(
            mode_key(b"shortpw", EncryptionMode::Legacy),
            b"shortpw000000000"
        );
        assert_eq!(
            mode_key(&[b'a'; 20], EncryptionMode::Legacy),
            vec![b'a'; 16]
        );
    }
}
