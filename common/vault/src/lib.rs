//! The encryption envelope and the keyring: the one implementation of
//! [`Sealer`], so the only crate that can seal or open a value.
//!
//! A sealed value is `v1.<kid>.<base64url nonce>.<base64url ciphertext+tag>`,
//! AES-256-GCM with a fresh random 96-bit nonce per write. The associated
//! data binds a value to its row (`user_integrations|<id>|<user_id>|<type>`
//! for a config, `user_secrets|<id>|<user_id>` for a user secret), so a
//! ciphertext copied into another row does not open.

use std::fmt;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use model::Secret;
use model::config::DecryptedConfig;
use model::ids::{random_bytes, random_token};
use model::sealing::{CONNECT_KEY_ROW, OpenError, Sealer, config_aad, secret_aad, verifier_aad};
use model::{Integration, IntegrationType, SealedConfig};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
/// What a key's lookup key is derived with.
const LOOKUP_LABEL: &[u8] = b"integrations lookup hash v1";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Why a keyring could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "no keyring: set INTEGRATIONS_KEYS or INTEGRATIONS_KEYS_FILE (create an entry with `integrations keys generate`)"
    )]
    Missing,
    #[error("cannot read INTEGRATIONS_KEYS_FILE {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keyring entry {index} is not kid=base64(32 bytes): {reason}")]
    Entry { index: usize, reason: &'static str },
    #[error("keyring lists key id '{0}' twice")]
    DuplicateKid(String),
}

struct KeyEntry {
    kid: String,
    cipher: Aes256Gcm,
    /// HMAC-SHA256 of the key with a fixed label: the key of
    /// [`Keyring::lookup_hash`], never the sealing key itself.
    lookup: Zeroizing<[u8; 32]>,
}

/// The keys that open sealed configs; the first one seals.
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 32
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Keyring {
    /// Parses entries `kid=base64(32 bytes)` separated by commas or newlines;
    /// blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<KeyEntry> = Vec::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let index = i + 1;
            let bad = |reason| KeyringError::Entry { index, reason };
            let (kid, encoded) = entry.split_once('=').ok_or(bad("no '='"))?;
            let kid = kid.trim();
            if !valid_kid(kid) {
                return Err(bad("the key id must be 1 to 32 letters, digits, _ or -"));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad("the key is not valid base64"))?,
            );
            if bytes.len() != 32 {
                return Err(bad("the key does not decode to 32 bytes"));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(KeyringError::DuplicateKid(kid.to_string()));
            }
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            let mut lookup = Zeroizing::new([0u8; 32]);
            lookup.copy_from_slice(&hmac_sha256(&bytes, LOOKUP_LABEL));
            keys.push(KeyEntry {
                kid: kid.to_string(),
                cipher,
                lookup,
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Missing);
        }
        Ok(Self { keys })
    }

    /// Loads the keyring from `INTEGRATIONS_KEYS`, else from the file named
    /// by `INTEGRATIONS_KEYS_FILE`.
    pub fn from_env() -> Result<Self, KeyringError> {
        if let Some(inline) = std::env::var("INTEGRATIONS_KEYS")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            return Self::parse(&Zeroizing::new(inline));
        }
        let path = std::env::var_os("INTEGRATIONS_KEYS_FILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or(KeyringError::Missing)?;
        warn_if_readable_by_others(&path);
        let text = std::fs::read_to_string(&path)
            .map(Zeroizing::new)
            .map_err(|source| KeyringError::File {
                path: path.clone(),
                source,
            })?;
        Self::parse(&text)
    }

    /// A new random keyring entry, `k<random>=<base64 of 32 random bytes>`.
    pub fn generate_entry() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut());
        Zeroizing::new(format!(
            "k{}={}",
            random_token(8),
            STANDARD.encode(key.as_ref())
        ))
    }

    fn seal(&self, aad: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        format!(
            "{VERSION}.{}.{}.{}",
            key.kid,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(ciphertext)
        )
    }

    fn open(&self, id: &str, aad: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let malformed = || OpenError::Malformed { id: id.to_string() };
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(kid), Some(nonce), Some(ciphertext), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| malformed())?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| malformed())?;
        if nonce.len() != NONCE_LEN {
            return Err(malformed());
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| OpenError::UnknownKey {
                id: id.to_string(),
                kid: kid.to_string(),
            })?;
        key.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Rejected { id: id.to_string() })
    }

    fn open_text(&self, id: &str, aad: &str, sealed: &str) -> Result<Zeroizing<String>, OpenError> {
        let mut bytes = self.open(id, aad, sealed)?;
        // Moves the buffer into the string (no copy); bytes that are not
        // UTF-8 are zeroized on their way out.
        String::from_utf8(std::mem::take(&mut *bytes))
            .map(Zeroizing::new)
            .map_err(|e| {
                drop(Zeroizing::new(e.into_bytes()));
                OpenError::Malformed { id: id.to_string() }
            })
    }
}

impl Sealer for Keyring {
    fn primary_kid(&self) -> &str {
        &self.keys[0].kid
    }

    fn lookup_hash(&self, value: &str) -> String {
        let key = &self.keys[0];
        let mac = hmac_sha256(key.lookup.as_ref(), value.as_bytes());
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}.{hex}", key.kid)
    }

    fn seal_config(
        &self,
        id: &str,
        user_id: &str,
        kind: IntegrationType,
        config: &DecryptedConfig,
    ) -> SealedConfig {
        SealedConfig::from_stored(self.seal(&config_aad(id, user_id, kind), config.as_bytes()))
    }

    fn open_config(&self, integration: &Integration) -> Result<DecryptedConfig, OpenError> {
        let aad = config_aad(&integration.id, &integration.user_id, integration.kind);
        self.open(&integration.id, &aad, integration.sealed.as_stored())
            .map(DecryptedConfig::from_trusted)
    }

    fn seal_secret(&self, id: &str, user_id: &str, value: &str) -> SealedConfig {
        SealedConfig::from_stored(self.seal(&secret_aad(id, user_id), value.as_bytes()))
    }

    fn open_secret(&self, secret: &Secret) -> Result<Zeroizing<String>, OpenError> {
        let aad = secret_aad(&secret.id, &secret.user_id);
        self.open_text(&secret.id, &aad, secret.sealed.as_stored())
    }

    fn seal_verifier(&self, key_sha256: &str, user_id: &str, verifier: &str) -> String {
        self.seal(&verifier_aad(key_sha256, user_id), verifier.as_bytes())
    }

    fn open_verifier(
        &self,
        key_sha256: &str,
        user_id: &str,
        sealed: &str,
    ) -> Result<Zeroizing<String>, OpenError> {
        self.open_text(CONNECT_KEY_ROW, &verifier_aad(key_sha256, user_id), sealed)
    }

    fn reseal(
        &self,
        id: &str,
        aad: &str,
        sealed: &SealedConfig,
    ) -> Result<Option<SealedConfig>, OpenError> {
        if sealed.kid() == Some(self.primary_kid()) {
            return Ok(None);
        }
        let plaintext = self.open(id, aad, sealed.as_stored())?;
        Ok(Some(SealedConfig::from_stored(self.seal(aad, &plaintext))))
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the keyring file is readable by group or others; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &std::path::Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Scope, Status};

    fn keyring() -> Keyring {
        Keyring::parse(&Keyring::generate_entry()).unwrap()
    }

    fn row(id: &str, user: &str, kind: IntegrationType, sealed: SealedConfig) -> Integration {
        Integration {
            id: id.into(),
            user_id: user.into(),
            kind,
            external_id: None,
            label: String::new(),
            sealed,
            enabled: true,
            is_default: false,
            scope: Scope::All,
            profile_ids: vec![],
            bound_profile_id: None,
            status: Status::Active,
            status_note: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn config() -> DecryptedConfig {
        DecryptedConfig::from_trusted(Zeroizing::new(br#"{"url":"https://h/x"}"#.to_vec()))
    }

    #[test]
    fn a_sealed_config_opens_only_in_its_own_row() {
        let k = keyring();
        let sealed = k.seal_config("int_a", "u1", IntegrationType::Webhook, &config());
        let opened = k
            .open_config(&row(
                "int_a",
                "u1",
                IntegrationType::Webhook,
                sealed.clone(),
            ))
            .unwrap();
        assert_eq!(opened.as_bytes(), config().as_bytes());
        for (id, user, kind) in [
            ("int_b", "u1", IntegrationType::Webhook),
            ("int_a", "u2", IntegrationType::Webhook),
            ("int_a", "u1", IntegrationType::Slack),
        ] {
            let err = k
                .open_config(&row(id, user, kind, sealed.clone()))
                .unwrap_err();
            assert_eq!(err, OpenError::Rejected { id: id.into() });
        }
    }

    fn secret(id: &str, user: &str, sealed: SealedConfig) -> Secret {
        Secret {
            id: id.into(),
            user_id: user.into(),
            name: "API_KEY".into(),
            scope: Scope::All,
            profile_ids: vec![],
            created_at: String::new(),
            updated_at: String::new(),
            sealed,
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_in_its_own_row_and_never_as_a_config() {
        let k = keyring();
        let sealed = k.seal_secret("sec_a", "u1", "s3cr3t");
        let opened = k
            .open_secret(&secret("sec_a", "u1", sealed.clone()))
            .unwrap();
        assert_eq!(opened.as_str(), "s3cr3t");
        for (id, user) in [("sec_b", "u1"), ("sec_a", "u2")] {
            let err = k
                .open_secret(&secret(id, user, sealed.clone()))
                .unwrap_err();
            assert_eq!(err, OpenError::Rejected { id: id.into() });
            assert!(
                err.to_string()
                    .starts_with(&format!("secret {id}: its value"))
            );
        }
        // The associated data differs from a config's: no cross-table reuse.
        let as_config = row("sec_a", "u1", IntegrationType::Webhook, sealed);
        assert!(k.open_config(&as_config).is_err());
    }

    #[test]
    fn every_write_uses_a_fresh_nonce() {
        let k = keyring();
        let a = k.seal_config("int_a", "u1", IntegrationType::Webhook, &config());
        let b = k.seal_config("int_a", "u1", IntegrationType::Webhook, &config());
        assert_ne!(a, b);
        assert_eq!(a.kid(), Some(k.primary_kid()));
        let nonce = a.as_stored().split('.').nth(2).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(nonce).unwrap().len(), NONCE_LEN);
    }

    #[test]
    fn wrong_key_flipped_byte_and_garbage_fail_with_the_row_id() {
        let k = keyring();
        let sealed = k.seal_config("int_a", "u1", IntegrationType::Webhook, &config());
        let other = keyring();
        let err = other
            .open_config(&row(
                "int_a",
                "u1",
                IntegrationType::Webhook,
                sealed.clone(),
            ))
            .unwrap_err();
        assert!(matches!(err, OpenError::UnknownKey { ref id, .. } if id == "int_a"));

        let same_kid_other_bytes = Keyring::parse(&format!(
            "{}={}",
            k.primary_kid(),
            STANDARD.encode([7u8; 32])
        ))
        .unwrap();
        let err = same_kid_other_bytes
            .open_config(&row(
                "int_a",
                "u1",
                IntegrationType::Webhook,
                sealed.clone(),
            ))
            .unwrap_err();
        assert_eq!(err, OpenError::Rejected { id: "int_a".into() });

        let mut bytes = URL_SAFE_NO_PAD
            .decode(sealed.as_stored().rsplit('.').next().unwrap())
            .unwrap();
        bytes[0] ^= 1;
        let mut parts: Vec<String> = sealed.as_stored().split('.').map(String::from).collect();
        parts[3] = URL_SAFE_NO_PAD.encode(bytes);
        let flipped = SealedConfig::from_stored(parts.join("."));
        let err = k
            .open_config(&row("int_a", "u1", IntegrationType::Webhook, flipped))
            .unwrap_err();
        assert_eq!(err, OpenError::Rejected { id: "int_a".into() });

        for garbage in [
            "",
            "v1",
            "v2.k.a.b",
            "v1.k.!!.b",
            "v1.k.AAAA.AAAA",
            "v1.a.b.c.d",
        ] {
            let err = k
                .open_config(&row(
                    "int_a",
                    "u1",
                    IntegrationType::Webhook,
                    SealedConfig::from_stored(garbage.into()),
                ))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    OpenError::Malformed { .. } | OpenError::UnknownKey { .. }
                ),
                "{garbage}: {err:?}"
            );
        }
    }

    #[test]
    fn keyring_parsing_accepts_commas_newlines_comments_and_rejects_bad_entries() {
        let a = Keyring::generate_entry();
        let b = Keyring::generate_entry();
        let both = Keyring::parse(&format!("# keys\n{}\n\n{}", *a, *b)).unwrap();
        assert_eq!(both.primary_kid(), a.split('=').next().unwrap());
        assert!(Keyring::parse(&format!("{},{}", *a, *b)).is_ok());

        let kid = a.split('=').next().unwrap();
        let key = a.split_once('=').unwrap().1;
        for (text, needle) in [
            ("", "no keyring"),
            ("justtext", "entry 1"),
            ("k1=notbase64!!", "not valid base64"),
            ("k1=AAAA", "32 bytes"),
            (&format!("bad.kid={key}"), "key id"),
            (&format!("{kid}={key},{kid}={key}"), "twice"),
        ] {
            let err = Keyring::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains(key), "key material in error: {err}");
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let entry = Keyring::generate_entry();
        let k = Keyring::parse(&entry).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains(k.primary_kid()));
        assert!(!shown.contains(entry.split_once('=').unwrap().1));
    }
}
