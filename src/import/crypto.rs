//! The product's envelope: hex `salt:iv:ciphertext:tag`, a key derived per
//! value with HKDF-SHA256 from the `ENCRYPTION_KEY` passphrase, AES-256-GCM
//! without associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HKDF infos the product used: the current one, then the one of values
/// written before its migration 20.
const INFOS: [&[u8]; 2] = [b"vonzio-encryption", b"reclaude-encryption"];
const SALT_LEN: usize = 16;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The product's passphrase, held in a zeroizing buffer.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// The passphrase in the environment variable `var` (never argv).
    pub fn from_env(var: &str) -> anyhow::Result<Self> {
        let value = std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "the environment variable {var} (the product's ENCRYPTION_KEY) is not set"
            )
        })?;
        anyhow::ensure!(!value.is_empty(), "the environment variable {var} is empty");
        Ok(Self(Zeroizing::new(value)))
    }

    /// Opens one stored value; the error says why, never with the value.
    pub fn open(&self, stored: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
        let mut parts = stored.trim().split(':');
        let (Some(salt), Some(iv), Some(ciphertext), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("the encrypted value is not salt:iv:ciphertext:tag");
        };
        let decode = |part: &str, len: Option<usize>| {
            hex::decode(part)
                .ok()
                .filter(|bytes| len.is_none_or(|len| bytes.len() == len))
        };
        let (Some(salt), Some(iv), Some(mut sealed), Some(tag)) = (
            decode(salt, Some(SALT_LEN)),
            decode(iv, Some(IV_LEN)),
            decode(ciphertext, None),
            decode(tag, Some(TAG_LEN)),
        ) else {
            return Err("the encrypted value has a part that is not hex of the right length");
        };
        sealed.extend_from_slice(&tag);
        for info in INFOS {
            let mut key = Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(Some(&salt), self.0.as_bytes())
                .expand(info, key.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 length");
            let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("the key is 32 bytes");
            let payload = Payload {
                msg: &sealed,
                aad: b"",
            };
            if let Ok(plain) = cipher.decrypt(Nonce::from_slice(&iv), payload) {
                return Ok(Zeroizing::new(plain));
            }
        }
        Err("the encrypted value does not open with this ENCRYPTION_KEY (wrong key or tampered)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        let key = Passphrase(Zeroizing::new("k".into()));
        assert!(key.open("").unwrap_err().contains("salt:iv"));
        assert!(key.open("00:11:22:33").unwrap_err().contains("hex"));
        let shaped = format!(
            "{}:{}:00:{}",
            "00".repeat(16),
            "00".repeat(12),
            "00".repeat(16)
        );
        assert!(key.open(&shaped).unwrap_err().contains("does not open"));
    }
}
