//! What a sidecar's tools stand on: the store and the keyring, each opened
//! at the first call that needs it, and a failure to open turned into the
//! sentence the agent reads. The sidecars of one service process share one
//! store (one bounded pool) and one keyring.

use std::sync::Arc;

use tokio::sync::OnceCell;

use vault::Keyring;

use super::call::ToolError;
use store::SidecarStore;

/// The store and keyring of one sidecar; clones share them.
#[derive(Clone)]
pub struct Backing {
    /// The sidecar's name, for the operator's sentence.
    name: &'static str,
    shared: Arc<Shared>,
}

struct Shared {
    db_url: String,
    /// PostgreSQL connections of the store's pool.
    connections: u32,
    store: OnceCell<SidecarStore>,
    keyring: OnceCell<Arc<Keyring>>,
}

impl Backing {
    /// For sidecar `name` over the store at `db_url`, with `connections`
    /// PostgreSQL connections at most (one for a stdio sidecar, one of
    /// thousands); nothing is opened yet.
    pub fn new(name: &'static str, db_url: String, connections: u32) -> Self {
        Self::with(name, db_url, connections, OnceCell::new())
    }

    /// For sidecar `name` over `store`, already open.
    pub fn over(name: &'static str, store: SidecarStore) -> Self {
        Self::with(name, String::new(), 0, OnceCell::new_with(Some(store)))
    }

    fn with(
        name: &'static str,
        db_url: String,
        connections: u32,
        store: OnceCell<SidecarStore>,
    ) -> Self {
        let shared = Shared {
            db_url,
            connections,
            store,
            keyring: OnceCell::new(),
        };
        Self {
            name,
            shared: Arc::new(shared),
        }
    }

    /// The same store and keyring, for sidecar `name`.
    pub fn named(&self, name: &'static str) -> Self {
        Self {
            name,
            shared: self.shared.clone(),
        }
    }

    pub async fn store(&self) -> Result<&SidecarStore, ToolError> {
        let shared = &self.shared;
        shared
            .store
            .get_or_try_init(|| async { SidecarStore::open(&shared.db_url, shared.connections) })
            .await
            .map_err(|e| {
                ToolError::error(
                    "The integrations store is not available; ask the operator to check INTEGRATIONS_DB.",
                )
                .with_detail(e)
            })
    }

    pub async fn keyring(&self) -> Result<&Arc<Keyring>, ToolError> {
        self.shared
            .keyring
            .get_or_try_init(|| async { Keyring::from_env().map(Arc::new) })
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
