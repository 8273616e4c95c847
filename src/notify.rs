//! `integrations test` and `integrations notify`: platform notifications
//! through the same delivery library as `notify_user`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use common::crypto::Keyring;
use common::sidecar::Identity;
use common::store::Store;
use mcp_notify::Request;
use mcp_notify::deliver::{Source, Urgency};

use crate::cli::NotifyArgs;

/// Tests integration `id`: a test notification through a channel, an
/// authenticated read for Gmail and Teller.
pub async fn test(store: &Store, url: &str, id: &str) -> anyhow::Result<ExitCode> {
    let integration = crate::integrations::existing(store, id).await?;
    let notifier = crate::probe::notifier(url)?;
    let done = crate::probe::run(&notifier, &Keyring::from_env()?, &integration).await?;
    println!("{done}");
    Ok(ExitCode::SUCCESS)
}

/// Sends one platform notification to each channel, in parallel; fails
/// when every channel failed.
pub async fn notify(url: &str, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let urgency: Urgency = serde_json::from_value(serde_json::Value::String(args.urgency.clone()))
        .context("--urgency must be low, normal or high")?;
    let notifier = Arc::new(crate::probe::notifier(url)?);
    let who = Arc::new(Identity {
        user_id: args.user,
        profile_id: args.profile,
        session_id: None,
    });
    let channels: Vec<Option<String>> = match args.channels {
        Some(list) => list.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut sends = tokio::task::JoinSet::new();
    for (n, channel) in channels.into_iter().enumerate() {
        let request = Request {
            message: args.message.clone(),
            channel: channel.clone(),
            urgency,
            title: args.title.clone(),
            ..Request::default()
        };
        let (notifier, who) = (Arc::clone(&notifier), Arc::clone(&who));
        sends.spawn(async move {
            let result = notifier.notify(&who, &request, Source::Platform).await;
            (n, channel.unwrap_or_else(|| "default".into()), result)
        });
    }
    let mut results = sends.join_all().await;
    results.sort_by_key(|(n, ..)| *n);
    let mut sent = 0;
    for (_, channel, result) in &results {
        match result {
            Ok(s) => {
                sent += 1;
                println!("{channel}: sent via {} ({})", s.channel, s.notification_id);
            }
            Err(e) => println!("{channel}: failed: {e}"),
        }
    }
    Ok(if sent == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
