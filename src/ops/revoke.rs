//! Revoking an integration at its provider before its row is deleted.

use anyhow::{Context, bail};
use model::sealing::Sealer;
use model::{Integration, IntegrationType};
use providers::google as oauth;
use providers::teller::{TellerClient, TellerConfig, TellerError};
use vault::Keyring;

/// What a downstream revocation did.
pub struct Revoked {
    /// The provider confirmed it revoked the grant just now.
    pub now: bool,
    /// What happened, for the operator.
    pub message: String,
}

impl Revoked {
    fn now(message: &str) -> Self {
        Self {
            now: true,
            message: message.into(),
        }
    }

    fn not(message: impl Into<String>) -> Self {
        Self {
            now: false,
            message: message.into(),
        }
    }
}

/// Revokes `integration` downstream where the provider allows it, and says
/// what happened. Fails (so the row is kept) when the provider did not
/// confirm and the grant may still be alive.
pub async fn downstream(keyring: &Keyring, integration: &Integration) -> anyhow::Result<Revoked> {
    match integration.kind {
        IntegrationType::Teller => revoke_teller(keyring, integration).await,
        IntegrationType::Slack | IntegrationType::Telegram => {
            revoke_bot(keyring, integration).await
        }
        IntegrationType::Gmail => revoke_gmail(keyring, integration).await,
        _ => Ok(Revoked::not(format!(
            "{} has no downstream revocation",
            integration.kind
        ))),
    }
}

async fn revoke_teller(keyring: &Keyring, integration: &Integration) -> anyhow::Result<Revoked> {
    let config = keyring.open_config(integration).context(
        "cannot read the access token to revoke it (use --local-only to delete the row anyway)",
    )?;
    let token = config
        .get(IntegrationType::Teller, "access_token")?
        .context("the config has no access token (use --local-only to delete the row anyway)")?;
    let client = TellerClient::new(&TellerConfig::from_env())?;
    match client.revoke_enrollment(&token).await {
        Ok(()) => Ok(Revoked::now("enrollment revoked at Teller")),
        Err(
            TellerError::Unauthorized { .. }
            | TellerError::Disconnected { .. }
            | TellerError::NotFound,
        ) => Ok(Revoked::not(
            "Teller says the access token was already dead; nothing left to revoke",
        )),
        Err(e) => bail!(
            "Teller did not confirm the revocation ({e}); the integration is kept: try again, or use --local-only"
        ),
    }
}

/// Google: the refresh token posted to `GOOGLE_REVOKE_URL` ends the grant.
async fn revoke_gmail(keyring: &Keyring, integration: &Integration) -> anyhow::Result<Revoked> {
    let config = keyring.open_config(integration).context(
        "cannot read the refresh token to revoke it (use --local-only to delete the row anyway)",
    )?;
    let token = config
        .get(IntegrationType::Gmail, "refresh_token")?
        .context("the config has no refresh token (use --local-only to delete the row anyway)")?;
    let http = oauth::http_client(std::time::Duration::from_secs(20))?;
    match oauth::revoke(&http, &oauth::OAuthConfig::from_env(), &token).await {
        Ok(true) => Ok(Revoked::now("grant revoked at Google")),
        Ok(false) => Ok(Revoked::not(
            "Google says the grant was already dead; nothing left to revoke",
        )),
        Err(e) => bail!(
            "Google did not confirm the revocation ({e}); the integration is kept: try again, or use --local-only"
        ),
    }
}

/// Slack: `auth.revoke`; Telegram: `deleteWebhook` (a bot token cannot be
/// revoked through the API; the row, and with it the token, is forgotten).
async fn revoke_bot(keyring: &Keyring, integration: &Integration) -> anyhow::Result<Revoked> {
    let config = keyring.open_config(integration).context(
        "cannot read the token to revoke it (use --local-only to delete the row anyway)",
    )?;
    if integration.kind == IntegrationType::Telegram
        && config
            .get(IntegrationType::Telegram, "owner")?
            .as_deref()
            .map(|o| o.as_str())
            == Some("platform")
    {
        // The platform's bot serves every user: its webhook stays.
        return Ok(Revoked::not(
            "the platform's shared bot keeps its webhook; this user's pairing is forgotten with the row",
        ));
    }
    let provider = match integration.kind {
        IntegrationType::Slack => "Slack",
        _ => "Telegram",
    };
    match mcp_notify::deliver::Providers::from_env()
        .revoke(integration, &config)
        .await
    {
        Ok(true) if integration.kind == IntegrationType::Slack => {
            Ok(Revoked::now("token revoked at Slack"))
        }
        Ok(true) => Ok(Revoked::now(
            "webhook deleted at Telegram; the bot token is forgotten with the row",
        )),
        Ok(false) => Ok(Revoked::not(format!(
            "{provider} says the token was already dead; nothing left to revoke"
        ))),
        Err(e) => bail!(
            "{provider} did not confirm the revocation ({e}); the integration is kept: try again, or use --local-only"
        ),
    }
}
