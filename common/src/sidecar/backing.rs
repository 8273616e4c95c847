//! What a sidecar's tools stand on: the store and the keyring, each opened
//! at the first call that needs it, and a failure to open turned into the
//! sentence the agent reads.

use tokio::sync::OnceCell;

use crate::crypto::Keyring;

use super::call::ToolError;
use super::store::SidecarStore;

/// The store and keyring of one sidecar.
pub struct Backing {
    /// The sidecar's name, for the operator's sentence.
    name: &'static str,
    db_url: String,
    store: OnceCell<SidecarStore>,
    keyring: OnceCell<Keyring>,
}

impl Backing {
    /// For sidecar `name` over the store at `db_url`; nothing is opened yet.
    pub fn new(name: &'static str, db_url: String) -> Self {
        Self {
            name,
            db_url,
            store: OnceCell::new(),
            keyring: OnceCell::new(),
        }
    }

    pub async fn store(&self) -> Result<&SidecarStore, ToolError> {
        self.store
            .get_or_try_init(|| async { SidecarStore::open(&self.db_url) })
            .await
            .map_err(|e| {
                ToolError::error(
                    "The integrations store is not available; ask the operator to check INTEGRATIONS_DB.",
                )
                .with_detail(e)
            })
    }

    pub async fn keyring(&self) -> Result<&Keyring, ToolError> {
        self.keyring
            .get_or_try_init(|| async { Keyring::from_env() })
            .await
            .map_err(|e| {
                ToolError::error(format!(
                    "{} has no keyring; ask the operator to set INTEGRATIONS_KEYS_FILE.",
                    self.name
                ))
                .with_detail(e)
            })
    }
}
