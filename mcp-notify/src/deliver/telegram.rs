//! Telegram: `sendMessage` to the chat that linked the bot, in HTML parse
//! mode (plain text if Telegram cannot parse it), split into messages of at
//! most 4,096 characters, with thread-claim buttons on the last one.

use providers::telegram::TelegramError;
use serde_json::{Value, json};

use store::ThreadAnchor;
use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, Urgency};
use crate::markdown;

/// Telegram's limit on one message's text.
const MAX_CHARS: usize = 4096;

pub(super) async fn send(
    p: &Providers,
    deadline: Instant,
    token: &str,
    chat: &str,
    out: &Outgoing,
) -> Result<Delivered, Failure> {
    let chat_id: Value = chat
        .parse::<i64>()
        .map_or_else(|_| json!(chat), |id| json!(id));
    let mut text = String::new();
    if out.urgency == Urgency::High {
        text.push_str("🚨 ");
    }
    if let Some(title) = &out.title {
        text.push_str(&format!("**{title}**\n"));
    }
    text.push_str(&out.message);
    let pieces = markdown::split(&text, MAX_CHARS, markdown::to_telegram_html);
    let buttons = out.claim_thread.as_ref().map(|_| {
        json!({"inline_keyboard": [[
            {"text": "📎 Reply here", "callback_data": format!("claim:{}", out.id)},
            {"text": "💬 Keep my chat", "callback_data": format!("keep:{}", out.id)},
        ]]})
    });
    let mut attempts = 0;
    let mut last_id = None;
    for (n, piece) in pieces.iter().enumerate() {
        let mut body = json!({
            "chat_id": chat_id,
            "text": markdown::to_telegram_html(piece),
            "parse_mode": "HTML",
            "disable_notification": out.urgency == Urgency::Low,
            "link_preview_options": {"is_disabled": true},
        });
        if n + 1 == pieces.len()
            && let Some(buttons) = &buttons
        {
            body["reply_markup"] = buttons.clone();
        }
        let sent = match retrying(deadline, "Telegram", || async {
            judge(p.telegram.send_message(token, &body).await)
        })
        .await
        {
            Err(f) if f.message.contains("can't parse entities") => {
                body["text"] = json!(markdown::to_plain(piece));
                body.as_object_mut().map(|b| b.remove("parse_mode"));
                retrying(deadline, "Telegram", || async {
                    judge(p.telegram.send_message(token, &body).await)
                })
                .await
            }
            other => other,
        };
        match sent {
            Ok((message, tries)) => {
                attempts += tries;
                last_id = message["message_id"].as_i64();
            }
            Err(mut f) => {
                if n > 0 {
                    f.message = format!("sent {n} of {} parts, then: {}", pieces.len(), f.message);
                }
                f.attempts += attempts;
                return Err(f);
            }
        }
    }
    Ok(Delivered {
        provider_message_id: last_id.map(|id| id.to_string()),
        attempts: attempts.max(1),
        thread: out
            .claim_thread
            .as_ref()
            .and(last_id)
            .map(|id| (chat.to_string(), ThreadAnchor::Telegram(id))),
    })
}

/// `getMe`: whether Telegram still takes the bot's token.
pub(super) async fn check(p: &Providers, deadline: Instant, token: &str) -> Result<(), Failure> {
    retrying(deadline, "Telegram", || async {
        judge(p.telegram.call(token, "getMe", &json!({})).await)
    })
    .await
    .map(|_| ())
}

/// `deleteWebhook`: the bot stops sending us updates; `Ok(false)` when the
/// token is already dead (there is no API to revoke a bot token).
pub(super) async fn delete_webhook(
    p: &Providers,
    deadline: Instant,
    token: &str,
) -> Result<bool, Failure> {
    match retrying(deadline, "Telegram", || async {
        judge(p.telegram.delete_webhook(token).await)
    })
    .await
    {
        Ok(_) => Ok(true),
        Err(f) if f.reauth => Ok(false),
        Err(f) => Err(f),
    }
}

/// What one Bot API call's outcome means for a delivery: a message is
/// sent again only when Telegram surely did not take it.
fn judge(sent: Result<Value, TelegramError>) -> Attempt<Value> {
    let (status, error_code, description, retry_after) = match sent {
        Ok(result) => return Attempt::Done(result),
        Err(TelegramError::NoAnswer(e)) if e.is_connect() => {
            return Attempt::Retry {
                after: None,
                why: e.to_string(),
            };
        }
        Err(TelegramError::NoAnswer(e)) => {
            return Attempt::Fail(Failure::new(format!(
                "Telegram {e}; the message may have been delivered, so it was not sent again"
            )));
        }
        Err(TelegramError::Unreadable { status } | TelegramError::Refused { status, .. })
            if status.is_server_error() =>
        {
            return Attempt::Fail(Failure::new(format!(
                "Telegram answered {status}; the message may have been delivered, so it was not sent again"
            )));
        }
        Err(e @ TelegramError::Unreadable { .. }) => {
            return Attempt::Fail(Failure::new(e.to_string()));
        }
        Err(TelegramError::Refused {
            status,
            error_code,
            description,
            retry_after,
        }) => (status, error_code, description, retry_after),
    };
    let description = description.unwrap_or_else(|| "no description".into());
    match error_code.unwrap_or(status.as_u16().into()) {
        429 => Attempt::Retry {
            after: retry_after,
            why: "is rate limiting (429)".into(),
        }, // A token Telegram does not know: 401, or 404 when malformed.
        401 | 404 => Attempt::Fail(Failure::reauth(
            "Telegram refused the bot's token: the user must reconnect the bot in Settings → Integrations",
        )),
        403 if description.contains("blocked") => Attempt::Fail(Failure::new(
            "the user blocked the Telegram bot: they must unblock it (open the bot and press Restart) before it can notify them",
        )),
        _ if description.contains("chat not found") => Attempt::Fail(Failure::new(
            "Telegram does not know the linked chat any more: the user must send /link <code> to the bot again",
        )),
        _ => Attempt::Fail(Failure::new(format!(
            "Telegram refused the message: {description}"
        ))),
    }
}
