//! The runtime every MCP sidecar shares: where a call's identity comes from
//! ([`IdentitySource`]), the audit row of every tool call ([`call`]), lenient
//! arguments and output schemas, a stdio transport that answers malformed
//! lines, the HTTP gate with its limits ([`http`], [`connections`],
//! [`fair`]), and the relay that serves stdio from the HTTP service. The
//! grant check before every read of a secret is the store's
//! ([`store::SidecarStore`]).

mod backing;
mod budget;
pub mod call;
pub mod connections;
pub mod fair;
pub mod http;
mod kept;
pub mod lenient;
mod relay;
pub mod schema;
pub mod standalone;
mod stdio;

use model::Identity;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

pub use backing::Backing;
pub use stdio::{guard, guarded_stdio};

/// Where a sidecar's handler takes the running agent's identity from: the
/// transport decides, the handler is the same.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// Fixed at spawn, from the environment (stdio, `call`).
    Spawned(Identity),
    /// Each HTTP request's capability token, verified by [`http`] before the
    /// request reaches the handler.
    Token,
}

impl IdentitySource {
    /// The identity of the request in `context`.
    pub fn identity(&self, context: &RequestContext<RoleServer>) -> Result<Identity, ErrorData> {
        match self {
            Self::Spawned(identity) => Ok(identity.clone()),
            Self::Token => context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Identity>())
                .cloned()
                .ok_or_else(|| {
                    ErrorData::internal_error("the request carries no verified identity", None)
                }),
        }
    }
}

/// An id the agent sent, quoted and bounded for an error sentence.
pub fn quoted(id: &str) -> String {
    format!(
        "'{}'",
        id.chars().take(64).collect::<String>().escape_debug()
    )
}
