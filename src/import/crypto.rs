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

    /// Sealed by tests/it/vonzio_seal.py (Python's `cryptography`), which
    /// tests/it/import.rs runs afresh on every PostgreSQL run.
    const CURRENT: &str = "7c6467fc832d8fe1485a154b1689ab4a:8a88feef19461c429be8c70c:739bfa884ef8ea1c2fffa810e9f56ebf83b2ddaea1a43ac0a1ad632288d3fd9fe4:d455faff44d64cb6e0407c51c0b82cbd";
    const LEGACY: &str = "c0c88fc6c7327b1bb4f9179794e40a02:d9645ecfe255cc0f678cc8d9:5d711212ec85f93a38:1614da13ed4a0fb5fc11ba18e213dfa6";

    #[test]
    fn values_sealed_by_an_independent_implementation_open() {
        let key = Passphrase(Zeroizing::new("correct horse battery staple".into()));
        assert_eq!(
            key.open(CURRENT).unwrap().as_slice(),
            br#"{"url":"https://hooks.example/x"}"#
        );
        // Written before the product's migration 20: the second info.
        assert_eq!(key.open(LEGACY).unwrap().as_slice(), b"sk-legacy");
        let wrong = Passphrase(Zeroizing::new("correct horse battery stapler".into()));
        assert!(wrong.open(CURRENT).is_err());
    }

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
