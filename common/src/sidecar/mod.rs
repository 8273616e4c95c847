//! What every sidecar shares: its identity from the spawn environment, the
//! one grant check that precedes every read of a secret ([`SidecarStore`]),
//! the audit row of every tool call, a stdio transport that answers
//! malformed lines, and the relay that serves stdio from the HTTP service.

mod backing;
mod budget;
pub mod call;
pub mod connections;
pub mod http;
pub mod lenient;
mod local;
mod notifications;
mod relay;
pub mod schema;
pub mod standalone;
mod stdio;
pub(crate) mod store;

use std::time::Duration;

use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use crate::crypto::OpenError;
use crate::store::StoreError;

pub use backing::Backing;
pub use notifications::{
    CLAIM_TIMEOUT, Claim, IDEMPOTENCY_WINDOW, LoggedNotification, NewClaim, ThreadAnchor, ThreadRow,
};
pub use relay::{https_or_loopback, token_url};
pub use stdio::{guard, guarded_stdio};
pub use store::SidecarStore;

/// The running agent, fixed at spawn. Never taken from tool arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub profile_id: String,
    pub session_id: Option<String>,
}

impl Identity {
    /// From `INTEGRATIONS_USER_ID`, `INTEGRATIONS_PROFILE_ID` and
    /// `INTEGRATIONS_SESSION_ID`; `user`/`profile` (command-line flags) win.
    pub fn from_env(user: Option<String>, profile: Option<String>) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (user.or_else(|| var("INTEGRATIONS_USER_ID")), profile.or_else(|| var("INTEGRATIONS_PROFILE_ID"))) {
            (Some(user_id), Some(profile_id)) => Ok(Self { user_id, profile_id, session_id: var("INTEGRATIONS_SESSION_ID") }),
            _ => Err("no identity: set INTEGRATIONS_USER_ID and INTEGRATIONS_PROFILE_ID (or pass --user and --profile)".into()),
        }
    }
}

/// Where a sidecar's handler takes the running agent's identity from: the
/// transport decides, the handler is the same.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Fixed at spawn, from the environment (stdio, `call`).
    Spawned(Identity),
    /// Each HTTP request's capability token, verified by [`http`] before the
    /// request reaches the handler.
    Token,
}

impl Caller {
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

/// Why a granted integration could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// How a tool call ended, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

impl Decision {
    /// The value stored in `audit_log.decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// One `audit_log` row. `detail` is the sentence the agent saw, never a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub identity: &'a Identity,
    pub server: &'a str,
    pub tool: &'a str,
    pub integration_id: Option<&'a str>,
    pub decision: Decision,
    pub detail: Option<&'a str>,
    pub duration: Duration,
}
