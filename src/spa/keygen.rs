//! Key generation, like `fwknop --key-gen`: a 32-byte encryption key and a
//! 64-byte HMAC key (SHA-256's block size), printed in the forms both
//! `~/.fwknoprc` and `access.conf` take, so one paste configures each side.

use super::b64;

/// A fresh key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKeys {
    /// 32 random bytes.
    pub key: [u8; 32],
    /// 64 random bytes.
    pub hmac_key: [u8; 64],
}

impl std::fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedKeys(<redacted>)")
    }
}

/// The OS has no randomness to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot generate keys: the OS random source failed")]
pub struct KeyGenError;

impl GeneratedKeys {
    /// Draws both keys from the OS random source.
    pub fn generate() -> Result<Self, KeyGenError> {
        let mut keys = GeneratedKeys {
            key: [0; 32],
            hmac_key: [0; 64],
        };
        getrandom::fill(&mut keys.key).map_err(|_| KeyGenError)?;
        getrandom::fill(&mut keys.hmac_key).map_err(|_| KeyGenError)?;
        Ok(keys)
    }

    /// The encryption key, padded base64.
    pub fn key_base64(&self) -> String {
        b64::encode_padded(&self.key)
    }

    /// The HMAC key, padded base64.
    pub fn hmac_key_base64(&self) -> String {
        b64::encode_padded(&self.hmac_key)
    }

    /// Lines for a `~/.fwknoprc` stanza.
    pub fn fwknoprc_text(&self) -> String {
        format!(
            "KEY_BASE64          {}\nHMAC_KEY_BASE64     {}\nUSE_HMAC            Y\n",
            self.key_base64(),
            self.hmac_key_base64()
        )
    }

    /// Lines for an `access.conf` stanza.
    pub fn access_conf_text(&self) -> String {
        format!(
            "SOURCE                  ANY\nKEY_BASE64              {}\nHMAC_KEY_BASE64         {}\nREQUIRE_SOURCE_ADDRESS  Y\nFW_ACCESS_TIMEOUT       30\n",
            self.key_base64(),
            self.hmac_key_base64()
        )
    }

    /// Both forms with headings: what `knock-client --keygen` prints.
    pub fn render(&self) -> String {
        format!(
            "# client: add to a stanza of ~/.fwknoprc\n{}\n# server: a stanza for access.conf (--spa-access)\n{}",
            self.fwknoprc_text(),
            self.access_conf_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spa::access_conf::{AccessConfOptions, parse_access_conf};
    use crate::spa::fwknoprc::parse_fwknoprc;

    #[test]
    fn generated_text_parses_on_both_sides() {
        let a = GeneratedKeys::generate().unwrap();
        let b = GeneratedKeys::generate().unwrap();
        assert_ne!(a.key, b.key, "two draws gave the same key");
        let conf = parse_access_conf(&a.access_conf_text(), AccessConfOptions::default()).unwrap();
        assert_eq!(conf.stanzas[0].keys.key.expose(), a.key);
        assert_eq!(
            conf.stanzas[0].keys.hmac_key.as_ref().unwrap().expose(),
            a.hmac_key
        );
        let rc = parse_fwknoprc(&format!(
            "[srv]\nSPA_SERVER 127.0.0.1\n{}",
            a.fwknoprc_text()
        ))
        .unwrap();
        let s = rc.stanza("srv").unwrap();
        assert_eq!(
            s.keys.as_ref().unwrap().hmac_key.as_ref().unwrap().expose(),
            a.hmac_key
        );
        assert!(a.render().contains(&a.key_base64()));
        assert!(!format!("{a:?}").contains(&a.key_base64()));
    }
}
