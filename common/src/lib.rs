//! Shared mechanics of the integrations layer: ids, the model, scope rules,
//! channel parsing, the encryption envelope and keyring, per-type config
//! validation and redaction, and the store (SQLite or PostgreSQL).
//!
//! Every other crate depends on this one and nothing else of the workspace.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use common::{crypto::Keyring, store::Store};
//! let store = Store::connect("sqlite://integrations.db?mode=rwc").await?;
//! let keyring = Keyring::from_env()?;
//! for integration in store.integrations("user_1", None).await? {
//!     let config = keyring.open_config(&integration)?;
//!     println!("{} {}", integration.id, config.redacted(integration.kind)?);
//! }
//! # Ok(()) }
//! ```

pub mod channel;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod fair;
pub mod ids;
pub mod logging;
pub mod model;
pub mod retry;
pub mod scope;
pub mod sidecar;
pub mod signature;
pub mod store;
