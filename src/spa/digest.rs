//! The digest types fwknop knows, for the inner message digest and for the
//! outer HMAC.
//!
//! fwknop configures the HMAC type (`HMAC_DIGEST_TYPE`) but infers the inner
//! digest type from the length of its base64 text; both live here.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use sha3::{Sha3_256, Sha3_512};

/// A hash function fwknop can use (`-m` / `--hmac-digest-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestType {
    /// MD5 (16 bytes, 22 base64 chars).
    Md5,
    /// SHA-1 (20 bytes, 27 chars).
    Sha1,
    /// SHA-256 (32 bytes, 43 chars): fwknop's default for both uses.
    Sha256,
    /// SHA-384 (48 bytes, 64 chars).
    Sha384,
    /// SHA-512 (64 bytes, 86 chars).
    Sha512,
    /// SHA3-256 (32 bytes, 43 chars).
    Sha3_256,
    /// SHA3-512 (64 bytes, 86 chars).
    Sha3_512,
}

/// Every digest type, in fwknop's order.
pub const ALL_DIGESTS: [DigestType; 7] = [
    DigestType::Md5,
    DigestType::Sha1,
    DigestType::Sha256,
    DigestType::Sha384,
    DigestType::Sha512,
    DigestType::Sha3_256,
    DigestType::Sha3_512,
];

/// A name that is not one of fwknop's digest types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown digest type '{0}': expected md5, sha1, sha256, sha384, sha512, sha3_256 or sha3_512"
)]
pub struct UnknownDigest(pub String);

impl DigestType {
    /// The name fwknop uses in config files (`sha256`, `sha3_512`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DigestType::Md5 => "md5",
            DigestType::Sha1 => "sha1",
            DigestType::Sha256 => "sha256",
            DigestType::Sha384 => "sha384",
            DigestType::Sha512 => "sha512",
            DigestType::Sha3_256 => "sha3_256",
            DigestType::Sha3_512 => "sha3_512",
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            DigestType::Md5 => 16,
            DigestType::Sha1 => 20,
            DigestType::Sha256 | DigestType::Sha3_256 => 32,
            DigestType::Sha384 => 48,
            DigestType::Sha512 | DigestType::Sha3_512 => 64,
        }
    }

    /// Length of the unpadded base64 text of one output.
    pub fn b64_len(self) -> usize {
        (self.output_len() * 4).div_ceil(3)
    }

    /// Block size in bytes (the size of `fwknop --key-gen`'s HMAC key).
    pub fn block_len(self) -> usize {
        match self {
            DigestType::Md5 | DigestType::Sha1 | DigestType::Sha256 => 64,
            DigestType::Sha384 | DigestType::Sha512 => 128,
            DigestType::Sha3_256 => 136,
            DigestType::Sha3_512 => 72,
        }
    }

    /// The digest types whose base64 text is `len` chars long, in the order
    /// fwknopd tries them (SHA-256 before SHA3-256, SHA-512 before SHA3-512).
    pub(crate) fn candidates_for_b64_len(len: usize) -> &'static [DigestType] {
        match len {
            22 => &[DigestType::Md5],
            27 => &[DigestType::Sha1],
            43 => &[DigestType::Sha256, DigestType::Sha3_256],
            64 => &[DigestType::Sha384],
            86 => &[DigestType::Sha512, DigestType::Sha3_512],
            _ => &[],
        }
    }

    /// Hashes `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestType::Md5 => Md5::digest(data).to_vec(),
            DigestType::Sha1 => Sha1::digest(data).to_vec(),
            DigestType::Sha256 => Sha256::digest(data).to_vec(),
            DigestType::Sha384 => Sha384::digest(data).to_vec(),
            DigestType::Sha512 => Sha512::digest(data).to_vec(),
            DigestType::Sha3_256 => Sha3_256::digest(data).to_vec(),
            DigestType::Sha3_512 => Sha3_512::digest(data).to_vec(),
        }
    }

    /// RFC 2104 HMAC of `data` under `key` (keys longer than a block are
    /// hashed first, as fwknop does).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            DigestType::Md5 => run::<Hmac<Md5>>(key, data),
            DigestType::Sha1 => run::<Hmac<Sha1>>(key, data),
            DigestType::Sha256 => run::<Hmac<Sha256>>(key, data),
            DigestType::Sha384 => run::<Hmac<Sha384>>(key, data),
            DigestType::Sha512 => run::<Hmac<Sha512>>(key, data),
            DigestType::Sha3_256 => run::<Hmac<Sha3_256>>(key, data),
            DigestType::Sha3_512 => run::<Hmac<Sha3_512>>(key, data),
        }
    }
}

impl fmt::Display for DigestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestType {
    type Err = UnknownDigest;

    /// Case-insensitive; `sha3-256` is accepted for `sha3_256`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
        ALL_DIGESTS
            .into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| UnknownDigest(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_spec() {
        let lens: Vec<usize> = ALL_DIGESTS.iter().map(|d| d.b64_len()).collect();
        assert_eq!(lens, [22, 27, 43, 64, 86, 43, 86]);
        for d in ALL_DIGESTS {
            assert_eq!(d.hash(b"x").len(), d.output_len());
            assert_eq!(d.hmac(b"k", b"x").len(), d.output_len());
            assert!(DigestType::candidates_for_b64_len(d.b64_len()).contains(&d));
            assert_eq!(d.name().parse::<DigestType>().unwrap(), d);
        }
        assert!("sha257".parse::<DigestType>().is_err());
        assert_eq!(
            "SHA3-512".parse::<DigestType>().unwrap(),
            DigestType::Sha3_512
        );
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = DigestType::Sha256.hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
