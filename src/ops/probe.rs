//! Testing one integration: a test notification through a channel, or for
//! Gmail and Teller a cheap authenticated read that proves the credentials;
//! and checking one without sending anything ([`check`], the health
//! keeper's).

use anyhow::{Context, anyhow};
use mcp_notify::deliver::{Providers, Source};
use mcp_notify::{Notifier, NotifyError, Request};
use model::Identity;
use model::config::DecryptedConfig;
use model::sealing::Sealer;
use model::{Integration, IntegrationType};
use providers::gmail::{GmailClient, GmailError};
use providers::google::{self as oauth, OAuthConfig};
use providers::teller::{TellerClient, TellerConfig, TellerError};
use std::sync::Arc;
use store::SidecarStore;
use vault::Keyring;
use zeroize::Zeroizing;

/// Tests `integration`, sending through `notifier` for a channel; says what
/// was done, or why it failed (never a secret).
pub async fn run(
    notifier: &Notifier,
    keyring: &Keyring,
    integration: &Integration,
) -> anyhow::Result<String> {
    match integration.kind {
        IntegrationType::Gmail => gmail(&keyring.open_config(integration)?).await,
        IntegrationType::Teller => teller(&keyring.open_config(integration)?, integration).await,
        _ => notify(notifier, integration).await,
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The provider takes the credentials.
    Healthy,
    /// The provider refused them (its words, no secret): the user must
    /// reconnect.
    Refused(String),
    /// No verdict: the provider could not be reached, failed, or the row
    /// could not be read (why).
    Unknown(String),
}

/// Checks `integration`'s credentials at its provider, sending nothing
/// anyone sees: Gmail's refresh (which keeps a grant alive), Teller's
/// accounts, and for a channel what [`Providers::check`] does.
pub async fn check(providers: &Providers, keyring: &Keyring, integration: &Integration) -> Verdict {
    let config = match keyring.open_config(integration) {
        Ok(config) => config,
        Err(e) => return Verdict::Unknown(e.to_string()),
    };
    match integration.kind {
        IntegrationType::Gmail => match refreshed(&config, &GmailClient::from_env()).await {
            Ok(_) => Verdict::Healthy,
            Err(e) if matches!(e.downcast_ref(), Some(oauth::OAuthError::InvalidGrant)) => {
                Verdict::Refused(e.to_string())
            }
            Err(e) => Verdict::Unknown(e.to_string()),
        },
        IntegrationType::Teller => match teller(&config, integration).await {
            Ok(_) => Verdict::Healthy,
            Err(e)
                if e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<TellerError>(),
                        Some(TellerError::Unauthorized { .. } | TellerError::Disconnected { .. })
                    )
                }) =>
            {
                Verdict::Refused(e.to_string())
            }
            Err(e) => Verdict::Unknown(e.to_string()),
        },
        _ => match providers.check(integration, &config).await {
            Ok(()) => Verdict::Healthy,
            Err(failure) if failure.reauth => Verdict::Refused(failure.message),
            Err(failure) => Verdict::Unknown(failure.message),
        },
    }
}

/// Whether a test failed because the provider could not be reached or
/// answered as a service that is down (a notification channel, Gmail,
/// Google's OAuth, Teller), rather than refusing what it was sent.
pub fn unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<NotifyError>(),
            Some(NotifyError::Delivery { failure, .. }) if failure.unavailable
        ) || cause
            .downcast_ref::<TellerError>()
            .is_some_and(TellerError::is_unavailable)
            || cause
                .downcast_ref::<oauth::OAuthError>()
                .is_some_and(oauth::OAuthError::is_unavailable)
            || cause
                .downcast_ref::<GmailError>()
                .is_some_and(GmailError::is_unavailable)
    })
}

/// The notifier the platform's own notifications go through, opening
/// configs with `keyring`.
pub fn notifier(url: &str, keyring: std::sync::Arc<Keyring>) -> anyhow::Result<Notifier> {
    Ok(Notifier::new(
        SidecarStore::open(url, 1)?,
        keyring,
        Providers::from_env(),
    ))
}

async fn notify(notifier: &Notifier, integration: &Integration) -> anyhow::Result<String> {
    let who = Identity {
        user_id: integration.user_id.clone(),
        profile_id: String::new(),
        session_id: None,
    };
    let request = Request {
        message: "This is a test notification: this integration can reach you.".into(),
        title: Some("Test notification".into()),
        ..Request::default()
    };
    let sent = notifier
        .send(integration, &who, &request, Source::Platform)
        .await?;
    Ok(format!(
        "sent via {} ({})",
        sent.channel,
        sent.provider_message_id
            .as_deref()
            .unwrap_or(&sent.notification_id)
    ))
}

/// A fresh access token from the refresh token, then the mailbox's profile.
async fn gmail(config: &DecryptedConfig) -> anyhow::Result<String> {
    let client = GmailClient::from_env();
    let token = Arc::new(refreshed(config, &client).await?.access_token);
    let profile = client.profile(&token).await?;
    Ok(format!(
        "Gmail answered for {}",
        profile.email_address.unwrap_or_default()
    ))
}

/// A fresh grant from the Gmail `config`'s refresh token (which keeps the
/// grant alive).
async fn refreshed(config: &DecryptedConfig, client: &GmailClient) -> anyhow::Result<oauth::Grant> {
    let refresh_token = config
        .get(IntegrationType::Gmail, "refresh_token")?
        .context("the config has no refresh token")?;
    let http = oauth::http_client(client.timeout())?;
    Ok(oauth::refresh(&http, &OAuthConfig::from_env(), &refresh_token).await?)
}

/// The enrollment's accounts: free on every Teller tier.
async fn teller(config: &DecryptedConfig, integration: &Integration) -> anyhow::Result<String> {
    let token: Zeroizing<String> = config
        .get(IntegrationType::Teller, "access_token")?
        .ok_or_else(|| anyhow!("the config has no access token"))?;
    let accounts = TellerClient::new(&TellerConfig::from_env())?
        .accounts(&token)
        .await?;
    Ok(format!(
        "Teller listed {} account(s) of {}",
        accounts.len(),
        integration.label
    ))
}
