//! The way to Gmail for one tool call: the user's grant opened (when this
//! profile may use it), its access token kept fresh (refreshed from Google,
//! written back encrypted, a dead grant marked `needs_reauth`), and Gmail
//! called with one retry on a refused token, its failures turned into
//! sentences.

use std::sync::Arc;

use futures::future::BoxFuture;
use model::sealing::Sealer;
use model::{Identity, IntegrationType, ReauthReason};
use sidecar::Backing;
use sidecar::call::{ToolError, note, quoted};
use store::{GrantError, SidecarStore};
use tokio::sync::OnceCell;
use vault::Keyring;
use zeroize::Zeroizing;

use crate::grant::{Access, OpenedGrant};
use providers::gmail::{GmailClient, GmailError};
use providers::google::{self as oauth, OAuthConfig, OAuthError};

/// The store, the keyring and the clients of Google's two services, each
/// opened on first use.
pub struct Upstream {
    backing: Backing,
    gmail: OnceCell<GmailClient>,
    oauth: OnceCell<(reqwest::Client, OAuthConfig)>,
}

/// A failed step of a tool: Gmail's answer, or our own refusal.
pub enum Failure {
    Gmail(GmailError),
    Tool(ToolError),
}

impl From<GmailError> for Failure {
    fn from(e: GmailError) -> Self {
        Self::Gmail(e)
    }
}

impl From<ToolError> for Failure {
    fn from(e: ToolError) -> Self {
        Self::Tool(e)
    }
}

/// Refuses an id that is not shaped like Gmail's: ids go into the request
/// path, where `../` or `?` would reach another endpoint.
pub fn valid_id(name: &str, id: &str) -> Result<(), ToolError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ToolError::deny(format!(
            "{name} {} is not a Gmail id; use the ids gmail_search and gmail_read_message return.",
            quoted(id)
        )))
    }
}

impl Upstream {
    /// Nothing is opened until the first call.
    pub fn new(backing: Backing) -> Self {
        Self {
            backing,
            gmail: OnceCell::new(),
            oauth: OnceCell::new(),
        }
    }

    pub async fn store(&self) -> Result<&SidecarStore, ToolError> {
        self.backing.store().await
    }

    async fn keyring(&self) -> Result<&Keyring, ToolError> {
        self.backing.keyring().await.map(Arc::as_ref)
    }

    async fn gmail(&self) -> &GmailClient {
        self.gmail
            .get_or_init(|| async { GmailClient::from_env() })
            .await
    }

    async fn oauth(&self) -> Result<&(reqwest::Client, OAuthConfig), ToolError> {
        let timeout = self.gmail().await.timeout();
        self.oauth
            .get_or_try_init(|| async {
                Ok((oauth::http_client(timeout)?, OAuthConfig::from_env()))
            })
            .await
            .map_err(|e: OAuthError| ToolError::error(format!("mcp-gmail is misconfigured: {e}.")))
    }

    /// The user's Gmail integration if it is granted to this profile and
    /// allows `access`, opened; the same answer whether it exists or not.
    pub async fn grant_allowing(
        &self,
        who: &Identity,
        access: Access,
    ) -> Result<OpenedGrant, ToolError> {
        let mailbox = self.granted(who).await?;
        if !mailbox.allows(access) {
            return Err(ToolError::deny(access.missing()));
        }
        Ok(mailbox)
    }

    /// The user's Gmail integration if it is granted to this profile, opened.
    pub async fn granted(&self, who: &Identity) -> Result<OpenedGrant, ToolError> {
        let store = self.store().await?;
        let keyring = self.keyring().await?;
        let opened = store
            .open_granted(keyring, who, IntegrationType::Gmail, |_| true)
            .await;
        let mailbox = match opened {
            Ok(Some((integration, config))) => OpenedGrant::new(integration, config),
            Ok(None) => {
                return Err(ToolError::deny(
                    "No Gmail account is available to this agent. The user can connect Gmail in Settings → Integrations and grant it to this agent.",
                ));
            }
            Err(GrantError::Open(e)) => {
                note(|n| n.integration_id = Some(e.integration_id().to_string()));
                return Err(ToolError::error(
                    "The stored Gmail credentials cannot be read; ask the operator to check the keyring.",
                )
                .with_detail(e));
            }
            Err(GrantError::Store(e)) => {
                return Err(ToolError::error(
                    "The integrations store is not answering; try again shortly.",
                )
                .with_detail(e));
            }
        };
        note(|n| n.integration_id = Some(mailbox.integration.id.clone()));
        Ok(mailbox)
    }

    /// The access token for this call: the stored one while fresh; else (or
    /// when `renew`) a new one from Google, written back encrypted.
    async fn token(
        &self,
        mailbox: &mut OpenedGrant,
        renew: bool,
    ) -> Result<Arc<Zeroizing<String>>, ToolError> {
        if !renew && let Some(token) = mailbox.fresh_token() {
            return Ok(Arc::new(token));
        }
        let refresh_token = mailbox.refresh_token().ok_or_else(|| {
            ToolError::error(
                "This Gmail connection has no refresh token; the user must reconnect Gmail.",
            )
        })?;
        let (http, config) = self.oauth().await?;
        let grant = match oauth::refresh(http, config, &refresh_token).await {
            Ok(grant) => grant,
            Err(OAuthError::InvalidGrant) => {
                return Err(self.dead_grant(mailbox, "invalid_grant").await);
            }
            Err(e @ OAuthError::Misconfigured(_)) => {
                return Err(ToolError::error(format!(
                    "mcp-gmail is misconfigured: {e}."
                )));
            }
            Err(e) => {
                return Err(ToolError::error(
                    "Google's sign-in service is not answering; try again later.",
                )
                .with_detail(e));
            }
        };
        self.write_back(mailbox, &grant).await;
        Ok(Arc::new(grant.access_token))
    }

    /// Keeps a refreshed token in the store for the next call, unless another
    /// writer changed the row first (its token is as good as ours).
    async fn write_back(&self, mailbox: &mut OpenedGrant, grant: &oauth::Grant) {
        let (Ok(store), Ok(keyring)) = (self.store().await, self.keyring().await) else {
            return;
        };
        let Some(config) = mailbox.with_grant(grant) else {
            return;
        };
        let i = &mailbox.integration;
        let sealed = keyring.seal_config(&i.id, &i.user_id, IntegrationType::Gmail, &config);
        match store.swap_config(&i.id, &i.sealed, &sealed).await {
            Ok(true) => {
                mailbox.integration.sealed = sealed;
                mailbox.config = config;
            }
            Ok(false) => {
                tracing::debug!(integration = %i.id, "the grant changed meanwhile; the refreshed token is not stored")
            }
            Err(e) => {
                tracing::warn!(integration = %i.id, error = %e, "could not store the refreshed token")
            }
        }
    }

    /// Marks the grant `needs_reauth` and tells the agent so.
    async fn dead_grant(&self, mailbox: &OpenedGrant, why: &str) -> ToolError {
        if let Ok(store) = self.store().await
            && let Err(e) = store
                .mark_needs_reauth(
                    &mailbox.integration.id,
                    &mailbox.integration.sealed,
                    ReauthReason::ProviderRefused,
                    why,
                )
                .await
        {
            tracing::warn!(integration = %mailbox.integration.id, error = %e, "could not mark the integration needs_reauth");
        }
        ToolError::error(format!(
            "The Gmail connection of {} is no longer valid: the user must reconnect Gmail in Settings → Integrations.",
            mailbox.email
        ))
        .with_detail(why)
    }

    /// Runs `call` against Gmail for the granted mailbox, with one refresh
    /// and one retry when Gmail refuses the token; `item` names what a 404
    /// was about.
    /// `call` gets the client, the token and the mailbox's address.
    pub async fn with_gmail<'c, T>(
        &self,
        who: &Identity,
        access: Access,
        item: String,
        call: impl Fn(GmailClient, Arc<Zeroizing<String>>, String) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<(OpenedGrant, T), ToolError> {
        let mut mailbox = self.grant_allowing(who, access).await?;
        let gmail = self.gmail().await;
        let token = self.token(&mut mailbox, false).await?;
        // One deadline for all of the tool's requests (a search's fetches).
        let email = mailbox.email.clone();
        let bounded = async |token| {
            tokio::time::timeout(gmail.timeout(), call(gmail.clone(), token, email.clone()))
                .await
                .unwrap_or(Err(Failure::Gmail(GmailError::Timeout)))
        };
        let result = match bounded(token).await {
            Err(Failure::Gmail(GmailError::Unauthorized)) => {
                let token = self.token(&mut mailbox, true).await?;
                bounded(token).await
            }
            other => other,
        };
        match result {
            Ok(value) => Ok((mailbox, value)),
            Err(Failure::Tool(e)) => Err(e),
            Err(Failure::Gmail(e)) => Err(Self::gmail_failure(&item, e)),
        }
    }

    /// Turns a Gmail failure into a sentence the agent can act on.
    fn gmail_failure(item: &str, e: GmailError) -> ToolError {
        let message = match &e {
            GmailError::Unauthorized => {
                "Gmail refused a freshly issued access token; try again later.".into()
            }
            GmailError::RateLimited { retry_after } => format!(
                "Gmail is rate limiting requests; try again in {} seconds.",
                retry_after.unwrap_or(30)
            ),
            GmailError::NotFound => {
                return ToolError::deny(format!(
                    "Gmail has no {item}; call gmail_search to find message and thread ids."
                ))
                .with_detail(e);
            }
            GmailError::Rejected(why) => {
                return ToolError::deny(format!("Gmail rejected the request: {why}"))
                    .with_detail(e);
            }
            GmailError::Forbidden(why) => format!("Gmail refused the request: {why}"),
            GmailError::Upstream(status) => {
                format!("Gmail is not answering right now (HTTP {status}); try again later.")
            }
            GmailError::Timeout => "Gmail did not answer in time; try again later.".into(),
            GmailError::Connect(_) => "Gmail could not be reached; try again later.".into(),
            GmailError::BadResponse => {
                "Gmail sent a response that could not be read; try again later.".into()
            }
        };
        ToolError::error(message).with_detail(e)
    }
}
