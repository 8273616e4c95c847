//! What seals and opens the store's values: the interface of the vault's
//! keyring, and the rules both sides share (the associated data that binds a
//! sealed value to its row, and why one did not open). The store takes a
//! [`Sealer`] where a write must seal or a read must open, so it holds no
//! key of its own; only the vault implements it.

use std::fmt;

use zeroize::Zeroizing;

use crate::config::DecryptedConfig;
use crate::{Integration, IntegrationType, SealedConfig, Secret};

/// Seals values under the first key of a keyring and opens them under any of
/// its keys, each bound to its row by its associated data.
pub trait Sealer: Send + Sync {
    /// The id of the key that seals new values.
    fn primary_kid(&self) -> &str;

    /// A keyed hash of `value` for a clear, indexed lookup column:
    /// `<kid>.<hex HMAC-SHA256>` under a key derived from the first key.
    fn lookup_hash(&self, value: &str) -> String;

    /// Seals `config` for the row `(id, user_id, kind)` under the first key.
    fn seal_config(
        &self,
        id: &str,
        user_id: &str,
        kind: IntegrationType,
        config: &DecryptedConfig,
    ) -> SealedConfig;

    /// Opens the config of `integration`, checking that it belongs to that row.
    fn open_config(&self, integration: &Integration) -> Result<DecryptedConfig, OpenError>;

    /// Seals a user secret's `value` for the row `(id, user_id)`.
    fn seal_secret(&self, id: &str, user_id: &str, value: &str) -> SealedConfig;

    /// Opens the value of `secret`, checking that it belongs to that row.
    fn open_secret(&self, secret: &Secret) -> Result<Zeroizing<String>, OpenError>;

    /// Seals the PKCE `verifier` of the connect key whose SHA-256 is
    /// `key_sha256`, issued to `user_id`.
    fn seal_verifier(&self, key_sha256: &str, user_id: &str, verifier: &str) -> String;

    /// Opens a verifier sealed by [`Sealer::seal_verifier`] for that key and
    /// user.
    fn open_verifier(
        &self,
        key_sha256: &str,
        user_id: &str,
        sealed: &str,
    ) -> Result<Zeroizing<String>, OpenError>;

    /// Re-seals `sealed`, the value of row `id` sealed with `aad`, under the
    /// first key, or `None` when it is sealed under that key already (key
    /// rotation).
    fn reseal(
        &self,
        id: &str,
        aad: &str,
        sealed: &SealedConfig,
    ) -> Result<Option<SealedConfig>, OpenError>;
}

/// The associated data of an integration's config (`kind` as the `type`
/// column stores it).
pub fn config_aad(id: &str, user_id: &str, kind: impl fmt::Display) -> String {
    format!("user_integrations|{id}|{user_id}|{kind}")
}

/// The associated data of a user secret's value.
pub fn secret_aad(id: &str, user_id: &str) -> String {
    format!("user_secrets|{id}|{user_id}")
}

/// How a connect key is named in an [`OpenError`] (never by its hash).
pub const CONNECT_KEY_ROW: &str = "connect_key";

/// The associated data of a connect key's PKCE verifier.
pub fn verifier_aad(key_sha256: &str, user_id: &str) -> String {
    format!("connect_keys|{key_sha256}|{user_id}")
}

/// Why a sealed config or secret did not open. Names the row, never the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{} {id}: its {} is encrypted under key '{kid}', which is not in the keyring",
        row_words(id).0,
        row_words(id).1
    )]
    UnknownKey { id: String, kid: String },
    #[error("{} {id}: its stored {} is not a v1 envelope", row_words(id).0, row_words(id).1)]
    Malformed { id: String },
    #[error(
        "{} {id}: its {} fails authentication (wrong key, tampered ciphertext, or a ciphertext copied from another row)",
        row_words(id).0,
        row_words(id).1
    )]
    Rejected { id: String },
}

impl OpenError {
    /// The integration (or user secret) whose sealed value did not open.
    pub fn integration_id(&self) -> &str {
        match self {
            Self::UnknownKey { id, .. } | Self::Malformed { id } | Self::Rejected { id } => id,
        }
    }
}

/// What a row is and what it seals, named from its id's prefix.
fn row_words(id: &str) -> (&'static str, &'static str) {
    if id.starts_with("sec_") {
        ("secret", "value")
    } else if id.starts_with(CONNECT_KEY_ROW) {
        ("connect key", "PKCE verifier")
    } else {
        ("integration", "config")
    }
}
