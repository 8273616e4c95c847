//! `integrations test` and `integrations notify`: platform notifications
//! through the same delivery library as `notify_user`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use mcp_notify::deliver::Urgency;
use model::Identity;
use store::Store;
use vault::Keyring;

use integrations::ops::notify::{Platform, send};

use super::NotifyArgs;

/// Tests integration `id`: a test notification through a channel, an
/// authenticated read for Gmail and Teller.
pub async fn test(store: &Store, url: &str, id: &str) -> anyhow::Result<ExitCode> {
    let integration = super::integration::existing(store, id).await?;
    let notifier = integrations::ops::probe::notifier(url, Arc::new(vault::Keyring::from_env()?))?;
    let done =
        integrations::ops::probe::run(&notifier, &Keyring::from_env()?, &integration).await?;
    println!("{done}");
    Ok(ExitCode::SUCCESS)
}

/// `integrations notify`: one platform notification to each channel, in
/// parallel (as `POST /v1/notifications`); fails when every channel failed.
pub async fn notify(url: &str, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let urgency: Urgency = serde_json::from_value(serde_json::Value::String(args.urgency.clone()))
        .context("--urgency must be low, normal or high")?;
    let notifier = Arc::new(integrations::ops::probe::notifier(
        url,
        Arc::new(vault::Keyring::from_env()?),
    )?);
    let who = Identity {
        user_id: args.user,
        profile_id: args.profile,
        session_id: None,
    };
    let asked = args
        .channels
        .clone()
        .unwrap_or_else(|| vec!["default".into()]);
    let platform = Platform {
        message: args.message,
        title: args.title,
        urgency,
        channels: args.channels,
        idempotency_key: None,
    };
    let outcomes = send(notifier, who, platform, false).await;
    for (asked, outcome) in asked.iter().zip(&outcomes) {
        match (&outcome.error, &outcome.notification_id) {
            (None, Some(id)) => println!("{asked}: sent via {} ({id})", outcome.channel),
            (error, _) => println!("{asked}: failed: {}", error.as_deref().unwrap_or_default()),
        }
    }
    Ok(if outcomes.iter().all(|o| o.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
