//! Slack: a DM to the user who connected the app (`conversations.open`, then
//! `chat.postMessage`), in mrkdwn with a colour bar for the urgency; with
//! `claim_thread`, a footer that asks for replies in its thread.

use serde_json::{Value, json};

use store::ThreadAnchor;
use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, Urgency, transport_error};
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
    let (opened, _) = retrying(deadline, "Slack", || {
        call(
            p,
            token,
            "conversations.open",
            json!({ "users": user }),
            true,
        )
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
        call(p, token, "chat.postMessage", body.clone(), false)
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

/// `auth.revoke`; `Ok(false)` when the token was already dead.
pub(super) async fn revoke(p: &Providers, deadline: Instant, token: &str) -> Result<bool, Failure> {
    match retrying(deadline, "Slack", || {
        call(p, token, "auth.revoke", json!({}), true)
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
    body: Value,
    idempotent: bool,
) -> Attempt<Value> {
    let sent = p
        .http
        .post(format!("{}/{method}", p.slack_base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() || (idempotent && e.is_timeout()) => {
            return Attempt::Retry {
                after: None,
                why: transport_error(e),
            };
        }
        Err(e) => {
            return Attempt::Fail(Failure::new(format!(
                "Slack {}; the message may have been delivered, so it was not sent again",
                transport_error(e)
            )));
        }
    };
    let status = response.status();
    if status.as_u16() == 429 {
        return Attempt::rate_limited(&response);
    }
    if status.is_server_error() {
        return if idempotent {
            Attempt::failing(&response)
        } else {
            Attempt::Fail(Failure::new(format!(
                "Slack answered {status}; the message may have been delivered, so it was not sent again"
            )))
        };
    }
    let Ok(answer) = response.json::<Value>().await else {
        return Attempt::Fail(Failure::new(format!(
            "Slack answered {status} with a body that is not JSON"
        )));
    };
    if answer["ok"] == true {
        return Attempt::Done(answer);
    }
    let code = answer["error"]
        .as_str()
        .unwrap_or("unknown_error")
        .to_string();
    if code == "ratelimited" {
        return Attempt::Retry {
            after: None,
            why: "is rate limiting".into(),
        };
    }
    if DEAD_TOKEN.contains(&code.as_str()) {
        return Attempt::Fail(Failure::reauth(format!(
            "Slack refused the app's token ({code}): the user must reconnect Slack in Settings → Integrations"
        )));
    }
    Attempt::Fail(Failure::new(format!("Slack refused the message ({code})")))
}
