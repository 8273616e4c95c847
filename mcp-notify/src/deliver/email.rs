//! Email through Resend: an HTML part rendered from the markdown (raw HTML
//! escaped) and a plain-text part, sent with the notification id as the
//! `Idempotency-Key` so that a retry never sends twice.

use serde_json::{Value, json};

use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, Urgency, transport_error};
use crate::markdown;

/// The longest subject taken from a message's first line.
const SUBJECT_CHARS: usize = 120;

pub(super) async fn send(
    p: &Providers,
    deadline: Instant,
    key: &str,
    from: &str,
    to: &str,
    out: &Outgoing,
) -> Result<Delivered, Failure> {
    let body = json!({
        "from": from,
        "to": [to],
        "subject": subject(out),
        "html": markdown::to_email_html(&out.message),
        "text": markdown::to_plain(&out.message),
        "tags": [{"name": "urgency", "value": out.urgency.as_str()}],
    });
    let (answer, attempts) = retrying(deadline, "Resend", || call(p, key, &out.id, &body)).await?;
    Ok(Delivered {
        provider_message_id: answer["id"].as_str().map(str::to_string),
        attempts,
        thread: None,
    })
}

/// The title, else the message's first line; prefixed when urgent.
fn subject(out: &Outgoing) -> String {
    let source = match &out.title {
        Some(title) => markdown::to_plain(title),
        None => markdown::to_plain(&out.message),
    };
    let first = source
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("Notification");
    let mut subject: String = first.chars().take(SUBJECT_CHARS).collect();
    if first.chars().count() > SUBJECT_CHARS {
        subject.push('…');
    }
    if out.urgency == Urgency::High {
        subject.insert_str(0, "[Urgent] ");
    }
    subject
}

async fn call(p: &Providers, key: &str, idempotency_key: &str, body: &Value) -> Attempt<Value> {
    let sent = p
        .http
        .post(format!("{}/emails", p.resend_base))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .json(body)
        .send()
        .await;
    // The idempotency key makes every retry safe, whatever happened.
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Retry {
                after: None,
                why: transport_error(e),
            };
        }
    };
    let status = response.status();
    if status.as_u16() == 429 {
        return Attempt::rate_limited(&response);
    }
    if status.is_server_error() {
        return Attempt::failing(&response);
    }
    let Ok(answer) = response.json::<Value>().await else {
        return Attempt::Fail(Failure::new(format!(
            "Resend answered {status} with a body that is not JSON"
        )));
    };
    if status.is_success() {
        return Attempt::Done(answer);
    }
    let name = answer["name"].as_str().unwrap_or("error");
    let message = answer["message"].as_str().unwrap_or("");
    match status.as_u16() {
        // The first request with this key is still running at Resend.
        409 if name == "concurrent_idempotent_requests" => Attempt::Retry {
            after: None,
            why: "is still handling the first attempt".into(),
        },
        401 | 403 if name.contains("api_key") => Attempt::Fail(Failure::reauth(format!(
            "Resend refused the API key ({name}): the user must update the Email integration in Settings → Integrations"
        ))),
        _ => Attempt::Fail(Failure::new(format!(
            "Resend refused the email ({status} {name}: {message})"
        ))),
    }
}
