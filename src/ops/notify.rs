//! Platform notifications (`source=platform`): one to each of a profile's
//! channels at once, through the same delivery library as `notify_user`.

use std::sync::Arc;

use mcp_notify::deliver::{Source, Urgency};
use mcp_notify::{Notifier, NotifyError, Request, Sent};
use model::Identity;

/// A platform notification (`source=platform`) to one profile's channels.
pub struct Platform {
    pub message: String,
    pub title: Option<String>,
    pub urgency: Urgency,
    /// Each a channel as `notify_user` takes it; none: the profile's
    /// default among its granted channels.
    pub channels: Option<Vec<String>>,
    /// With several channels, each is sent under `<key>:<channel>`.
    pub idempotency_key: Option<String>,
}

/// How one channel of a platform notification ended.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ChannelOutcome {
    /// The channel it went through (`slack`, `telegram:<id>`, ...), or the
    /// one asked for when none could be chosen.
    pub channel: String,
    /// `sent`, `failed`, or `unknown` (the provider's connection was lost
    /// after the message was handed over: maybe delivered, never sent again).
    pub status: &'static str,
    /// Its `notification_log` row, when one was written.
    pub notification_id: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A refusal before delivery, whose log row is still to be written.
    #[serde(skip)]
    #[schemars(skip)]
    refusal: Option<NotifyError>,
}

/// Sends `platform` for `who` to each channel at once, one
/// `notification_log` row per channel that was tried; `counted` puts each
/// against the profile's per-minute limit (a user's own request).
pub async fn send(
    notifier: Arc<Notifier>,
    who: Identity,
    platform: Platform,
    counted: bool,
) -> Vec<ChannelOutcome> {
    let who = Arc::new(who);
    let several = platform.channels.is_some();
    let channels: Vec<Option<String>> = match platform.channels {
        Some(list) => list.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut sends = tokio::task::JoinSet::new();
    for (n, channel) in channels.into_iter().enumerate() {
        let asked = channel.clone().unwrap_or_else(|| "default".into());
        let request = Request {
            message: platform.message.clone(),
            channel,
            urgency: platform.urgency,
            title: platform.title.clone(),
            idempotency_key: platform.idempotency_key.as_ref().map(|key| {
                if several {
                    format!("{key}:{asked}")
                } else {
                    key.clone()
                }
            }),
            ..Request::default()
        };
        let (notifier, who) = (Arc::clone(&notifier), Arc::clone(&who));
        sends.spawn(async move {
            let result = if counted {
                notifier
                    .notify_counted(&who, &request, Source::Platform)
                    .await
            } else {
                notifier.notify(&who, &request, Source::Platform).await
            };
            let mut outcome = outcome(asked, result);
            // Refused before delivery: its row is written here.
            if let Some(refusal) = outcome.refusal.take() {
                let id = notifier
                    .log_refused(&who, &request, Source::Platform, &outcome.channel, &refusal)
                    .await;
                outcome.notification_id = Some(id);
            }
            (n, outcome)
        });
    }
    let mut outcomes = sends.join_all().await;
    outcomes.sort_by_key(|(n, _)| *n);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

fn outcome(asked: String, result: Result<Sent, NotifyError>) -> ChannelOutcome {
    let e = match result {
        Ok(sent) => {
            return ChannelOutcome {
                channel: sent.channel,
                status: "sent",
                notification_id: Some(sent.notification_id),
                error: None,
                refusal: None,
            };
        }
        Err(e) => e,
    };
    let error = Some(e.to_string());
    let status = match &e {
        NotifyError::Delivery { failure, .. } => failure.status(),
        _ => "failed",
    };
    let (channel, notification_id, refusal) = match e {
        NotifyError::Delivery {
            channel,
            notification_id,
            ..
        } => (channel, Some(notification_id), None),
        // Nothing decided yet, decided before, or the store is down: no
        // row to write.
        NotifyError::InFlight | NotifyError::MaybeSent | NotifyError::Unavailable(_) => {
            (asked, None, None)
        }
        refused => (asked, None, Some(refused)),
    };
    ChannelOutcome {
        channel,
        status,
        notification_id,
        error,
        refusal,
    }
}
