//! What the API and the CLI both do to an integration beyond its row: show
//! it redacted, test it, revoke it at its provider, send a platform
//! notification.

pub mod notify;
pub mod output;
pub mod probe;
pub mod revoke;
