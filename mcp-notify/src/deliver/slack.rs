//! Slack: a DM to the user who connected the app (`conversations.open`, then
//! `chat.postMessage`), in mrkdwn with a colour bar for the urgency; with
//! `claim_thread`, a footer that asks for replies in its thread.

use providers::slack::SlackError;
use serde_json::{Value, json};

use store::ThreadAnchor;
use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, Urgency};
use crate::markdown;

const DEAD_TOKEN: &[&str] = &[
    "invalid_auth",
    "token_revoked",
    "account_inactive",
    "not_authed",
];

pub(super) async fn send(
    p: &Providers,
    deadline: Instant,
    token: &str,
    user: &str,
    out: &Outgoing,
) -> Result<Delivered, Failure> {
    let open = json!({ "users": user });
    let (opened, _) = retrying(deadline, "Slack", || {
        call(p, token, "conversations.open", &open, true)
    })
    .await?;
    let Some(channel) = opened["channel"]["id"].as_str().map(str::to_string) else {
        return Err(Failure::new(
            "Slack did not open a direct message with the user",
        ));
    };
    let (prefix, color) = match out.urgency {
        Urgency::High => (":rotating_light: *Urgent* ", "#d93025"),
        Urgency::Normal => ("", "#1a73e8"),
        Urgency::Low => ("", "#9aa0a6"),
    };
    let title = out
        .title
        .as_deref()
        .map(|t| format!("*{}*\n", markdown::to_slack(t)))
        .unwrap_or_default();
    let text = format!("{prefix}{title}{}", markdown::to_slack(&out.message));
    let fallback = format!(
        "{}{}",
        if out.urgency == Urgency::High {
            "Urgent: "
        } else {
            ""
        },
        out.title
            .as_deref()
            .map_or_else(|| markdown::to_plain(&out.message), markdown::to_plain)
    );
    let mut attachment =
        json!({"color": color, "text": text, "mrkdwn_in": ["text"], "fallback": fallback});
    if let Some(label) = &out.claim_thread {
        attachment["footer"] = json!(match label {
            Some(label) => format!("Reply in this thread to continue: {label}"),
            None => "Reply in this thread to continue with this agent".to_string(),
        });
    }
    let body = json!({
        "channel": channel,
        "text": fallback.chars().take(300).collect::<String>(),
        "attachments": [attachment],
        "unfurl_links": false,
    });
    // `attempts` counts the posts; opening the DM is a preliminary.
    let (posted, posting) = retrying(deadline, "Slack", || {
        call(p, token, "chat.postMessage", &body, false)
    })
    .await?;
    let ts = posted["ts"].as_str().map(str::to_string);
    Ok(Delivered {
        thread: out
            .claim_thread
            .as_ref()
            .and(ts.clone())
            .map(|ts| (channel, ThreadAnchor::Slack(ts))),
        provider_message_id: ts,
        attempts: posting,
    })
}

/// `auth.test`: whether Slack still takes the app's token.
pub(super) async fn check(p: &Providers, deadline: Instant, token: &str) -> Result<(), Failure> {
    let body = json!({});
    retrying(deadline, "Slack", || {
        call(p, token, "auth.test", &body, true)
    })
    .await
    .map(|_| ())
}

/// `auth.revoke`; `Ok(false)` when the token was already dead.
pub(super) async fn revoke(p: &Providers, deadline: Instant, token: &str) -> Result<bool, Failure> {
    let body = json!({});
    match retrying(deadline, "Slack", || {
        call(p, token, "auth.revoke", &body, true)
    })
    .await
    {
        Ok(_) => Ok(true),
        Err(f) if f.reauth => Ok(false),
        Err(f) => Err(f),
    }
}

/// One Web API call. `idempotent` calls are retried after a 5xx or a
/// timeout; a post is retried only when Slack surely did not take it.
async fn call(
    p: &Providers,
    token: &str,
    method: &str,
    body: &Value,
    idempotent: bool,
) -> Attempt<Value> {
    match p.slack.call(token, method, body).await {
        Ok(answer) => Attempt::Done(answer),
        Err(SlackError::NoAnswer(e)) if e.is_connect() || (idempotent && e.is_timeout()) => {
            Attempt::Retry {
                after: None,
                why: e.to_string(),
            }
        }
        Err(SlackError::NoAnswer(e)) => Attempt::Fail(Failure::new(format!(
            "Slack {e}; the message may have been delivered, so it was not sent again"
        ))),
        Err(SlackError::RateLimited { retry_after }) => Attempt::rate_limited(retry_after),
        Err(SlackError::Failing {
            status,
            retry_after,
        }) => {
            if idempotent {
                Attempt::failing(status, retry_after)
            } else {
                Attempt::Fail(Failure::new(format!(
                    "Slack answered {status}; the message may have been delivered, so it was not sent again"
                )))
            }
        }
        Err(e @ SlackError::Unreadable { .. }) => Attempt::Fail(Failure::new(e.to_string())),
        Err(SlackError::Refused { code }) => {
            let code = code.as_deref().unwrap_or("unknown_error");
            if code == "ratelimited" {
                return Attempt::Retry {
                    after: None,
                    why: "is rate limiting".into(),
                };
            }
            if DEAD_TOKEN.contains(&code) {
                return Attempt::Fail(Failure::reauth(format!(
                    "Slack refused the app's token ({code}): the user must reconnect Slack in Settings → Integrations"
                )));
            }
            Attempt::Fail(Failure::new(format!("Slack refused the message ({code})")))
        }
    }
}
