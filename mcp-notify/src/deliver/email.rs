//! Email through Resend: an HTML part rendered from the markdown (raw HTML
//! escaped) and a plain-text part, sent with the notification id as the
//! `Idempotency-Key` so that a retry never sends twice.

use providers::resend::ResendError;
use serde_json::json;

use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, Urgency};
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
    let (id, attempts) = retrying(deadline, "Resend", || async {
        judge(p.resend.send(key, &out.id, &body).await)
    })
    .await?;
    Ok(Delivered {
        provider_message_id: id,
        attempts,
        thread: None,
    })
}

/// The title, else the message's first line; prefixed when urgent.
pub(super) fn subject(out: &Outgoing) -> String {
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

/// Whether Resend still takes the API key, sending nothing.
pub(super) async fn check(p: &Providers, deadline: Instant, key: &str) -> Result<(), Failure> {
    retrying(deadline, "Resend", || async {
        judge(p.resend.check_key(key).await.map(|()| None))
    })
    .await
    .map(|_| ())
}

/// What one send's outcome means for a delivery.
fn judge(sent: Result<Option<String>, ResendError>) -> Attempt<Option<String>> {
    match sent {
        Ok(id) => Attempt::Done(id),
        // The idempotency key makes every retry safe, whatever happened.
        Err(ResendError::NoAnswer(e)) => Attempt::Retry {
            after: None,
            why: e.to_string(),
        },
        Err(ResendError::RateLimited { retry_after }) => Attempt::rate_limited(retry_after),
        Err(ResendError::Failing {
            status,
            retry_after,
        }) => Attempt::failing(status, retry_after),
        // The first request with this key is still running at Resend.
        Err(ResendError::Refused { status, name, .. })
            if status.as_u16() == 409 && name == "concurrent_idempotent_requests" =>
        {
            Attempt::Retry {
                after: None,
                why: "is still handling the first attempt".into(),
            }
        }
        Err(ResendError::Refused { status, name, .. })
            if matches!(status.as_u16(), 401 | 403) && name.contains("api_key") =>
        {
            Attempt::Fail(Failure::reauth(format!(
                "Resend refused the API key ({name}): the user must update the Email integration in Settings → Integrations"
            )))
        }
        // "Resend answered <status> with a body that is not JSON", "Resend
        // refused the email (<status> <name>: <message>)".
        Err(e @ (ResendError::Unreadable { .. } | ResendError::Refused { .. })) => {
            Attempt::Fail(Failure::new(e.to_string()))
        }
    }
}
