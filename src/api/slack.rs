//! Slack as a chat surface: `POST /api/slack/events`, Slack's Events API.
//! The user who connected Slack writes to the bot in its direct messages,
//! or mentions it in a channel; each message is routed to a profile
//! (`resolver::route`) into the outbox, a reply in a notification's thread
//! carrying its session.
//!
//! The work per event is bounded and fast, for Slack's 3 seconds: the
//! signature's headers are checked before the body is read, the signature
//! before the body is parsed, the row is one indexed read of the one row
//! that holds the team and user as its identity (`Store::slack_user`), and
//! the forward to
//! `INBOUND_FORWARD_URL` and any reply to the user run after the answer.

use model::sealing::Sealer;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use model::{Integration, IntegrationType};
use providers::slack::SlackError;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{NewInbound, Origin};
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;
use super::inbound;

/// The Slack app's settings for its events.
pub struct SlackConfig {
    signing_secret: Option<Zeroizing<String>>,
}

impl SlackConfig {
    /// From `SLACK_SIGNING_SECRET` (the app's "Signing Secret").
    pub fn from_env() -> Self {
        Self {
            signing_secret: std::env::var("SLACK_SIGNING_SECRET")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Zeroizing::new),
        }
    }
}

/// What Slack POSTs: the fields we read, of every type of payload.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    team_id: Option<String>,
    event_id: Option<String>,
    #[serde(default)]
    authorizations: Vec<Authorization>,
    event: Option<Event>,
}

#[derive(Deserialize)]
struct Authorization {
    /// Our bot's user, in the workspace of the event.
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    channel_type: Option<String>,
    channel: Option<String>,
    user: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
    bot_id: Option<String>,
    subtype: Option<String>,
}

/// A user's message to the bot, as routing needs it.
struct Message<'a> {
    team: &'a str,
    event_id: &'a str,
    user: &'a str,
    channel: &'a str,
    text: &'a str,
    ts: &'a str,
    thread_ts: Option<&'a str>,
    /// Our bot's user, as the payload's authorizations name it.
    bot: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// The message of an `event_callback`, if it is one we hear: a `message`
    /// in the bot's direct messages or an `app_mention`, by a person (no
    /// `bot_id`, no `subtype`: edits, joins and bots' posts, ours included,
    /// are not heard, so nothing loops).
    fn of(payload: &'a Payload) -> Option<Self> {
        let event = payload.event.as_ref()?;
        let heard = match event.kind.as_str() {
            "message" => event.channel_type.as_deref() == Some("im"),
            "app_mention" => true,
            _ => false,
        };
        if !heard || event.bot_id.is_some() || event.subtype.is_some() {
            return None;
        }
        let user = event.user.as_deref()?;
        let bot = payload
            .authorizations
            .first()
            .and_then(|a| a.user_id.as_deref());
        if bot == Some(user) {
            return None;
        }
        Some(Self {
            team: payload.team_id.as_deref()?,
            event_id: payload.event_id.as_deref()?,
            user,
            channel: event.channel.as_deref()?,
            text: event.text.as_deref()?,
            ts: event.ts.as_deref()?,
            thread_ts: event.thread_ts.as_deref(),
            bot,
        })
    }
}

/// A Slack request's signature headers, well-formed and fresh
/// ([`providers::signature::slack_headers`]): checked before its body is read,
/// so that a stranger without them is refused at once.
pub struct Signed {
    slack: Arc<SlackConfig>,
    timestamp: String,
    signature: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.slack.signing_secret.is_none() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_CONFIGURED",
                "Slack events are not configured on this server (SLACK_SIGNING_SECRET)",
            ));
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (timestamp, signature) = (
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
        );
        if providers::signature::slack_headers(&timestamp, &signature, model::clock::unix_now())
            .is_none()
        {
            return Err(unsigned());
        }
        Ok(Self {
            slack: Arc::clone(&state.slack),
            timestamp,
            signature,
        })
    }
}

impl Signed {
    /// Whether `body` is what was signed.
    fn verifies(&self, body: &[u8]) -> bool {
        self.slack.signing_secret.as_deref().is_some_and(|secret| {
            providers::signature::verify_slack(
                secret.as_bytes(),
                &self.timestamp,
                &self.signature,
                body,
                model::clock::unix_now(),
            )
        })
    }
}

fn unsigned() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "the X-Slack-Signature does not verify (or its timestamp is more than 5 minutes away)",
    )
}

/// `POST /api/slack/events`. A request without well-formed, fresh signature
/// headers is 401 before its body is read, one whose signature does not
/// verify 401 before its body is parsed; `url_verification` is answered
/// with its challenge; every event is answered 200 once handled (or
/// ignored: an unknown team or user, a disabled integration, a bot's
/// message), and 500 when the store failed, so that Slack delivers it again.
pub async fn events(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if !signed.verifies(&body) {
        return Err(unsigned());
    }
    let payload: Payload = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("the payload is not the JSON Slack sends"))?;
    match payload.kind.as_str() {
        "url_verification" => match payload.challenge {
            Some(challenge) => Ok(Json(json!({"challenge": challenge}))),
            None => Err(ApiError::invalid(
                "a url_verification without its challenge",
            )),
        },
        "event_callback" => {
            if let Some(message) = Message::of(&payload) {
                let retry = headers
                    .get("x-slack-retry-num")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::debug!(event = message.event_id, retry, "a Slack message");
                handle(&state, &message).await.map_err(ApiError::internal)?;
            }
            Ok(Json(json!({"ok": true})))
        }
        _ => Ok(Json(json!({"ok": true}))),
    }
}

/// Routes `message` into the outbox, if its team and user are those of a
/// connected, enabled Slack integration.
async fn handle(state: &AppState, message: &Message<'_>) -> anyhow::Result<()> {
    let Some(row) = state
        .store
        .slack_user(message.team, message.user)
        .await?
        .filter(|row| row.enabled)
    else {
        return Ok(());
    };
    let routed = route(state, &row, message).await;
    if let Err(e) = &routed {
        inbound::record_failure(state, Some(&row), "slack", &format!("{e:#}")).await;
    }
    routed
}

async fn route(state: &AppState, row: &Integration, message: &Message<'_>) -> anyhow::Result<()> {
    let config = state.keyring.open_config(row)?;
    let field = |name: &str| config.get(IntegrationType::Slack, name).ok().flatten();
    let bot = field("bot_user_id");
    let text = without_mention(
        message.text,
        bot.as_deref().map(|b| b.as_str()).or(message.bot),
    );
    match resolver::route(&state.store, &row.id, text).await {
        Ok(route) => {
            let new = NewInbound {
                user_id: row.user_id.clone(),
                profile_id: route.profile_id,
                integration_id: row.id.clone(),
                chat_id: message.channel.to_string(),
                text: route.text,
                command: None,
                origin: Origin::Slack {
                    event_id: message.event_id.to_string(),
                    ts: message.ts.to_string(),
                    thread_ts: message.thread_ts.map(str::to_string),
                },
            };
            inbound::write(state, &new).await?;
        }
        Err(resolver::RouteError::Store(e)) => return Err(e.into()),
        Err(e) => {
            if let Some(token) = field("bot_token") {
                // In the message's thread: a mention in a channel is
                // answered there, not in the channel.
                let reply = json!({
                    "channel": message.channel,
                    "thread_ts": message.thread_ts.unwrap_or(message.ts),
                    "text": format!("This message was not delivered: {e}."),
                });
                let state = state.clone();
                tokio::spawn(async move { say(&state, &token, reply).await });
            }
        }
    }
    Ok(())
}

/// `text` without the bot's mention (`<@BOT>` or `<@BOT|name>`) in front.
fn without_mention<'a>(text: &'a str, bot_user_id: Option<&str>) -> &'a str {
    let trimmed = text.trim_start();
    let Some((mention, rest)) = trimmed
        .strip_prefix("<@")
        .and_then(|rest| rest.split_once('>'))
    else {
        return text;
    };
    let user = mention.split('|').next().unwrap_or_default();
    if bot_user_id.is_some_and(|bot| bot == user) {
        rest.trim_start()
    } else {
        text
    }
}

/// `chat.postMessage` as the bot, after Slack got its answer; a failure is
/// logged.
async fn say(state: &AppState, token: &str, body: Value) {
    match state
        .inbound
        .slack
        .call(token, "chat.postMessage", &body)
        .await
    {
        Ok(_) => {}
        Err(SlackError::Refused { code }) => tracing::warn!(
            error = code.as_deref().unwrap_or("unknown"),
            "a reply to Slack was refused"
        ),
        Err(SlackError::NoAnswer(e)) => {
            tracing::warn!(error = %e.detail(), "a reply to Slack was not sent")
        }
        Err(e) => tracing::warn!(error = %e, "a reply to Slack was not read"),
    }
}

#[cfg(test)]
mod tests {
    use super::without_mention;

    #[test]
    fn only_the_bots_own_mention_is_taken_off() {
        for (text, expected) in [
            ("<@UBOT1> do this", "do this"),
            ("  <@UBOT1|vz>   @coding fix it", "@coding fix it"),
            ("<@UBOT1>", ""),
            ("<@UOTHER> do this", "<@UOTHER> do this"),
            ("do this <@UBOT1>", "do this <@UBOT1>"),
            ("<@UBOT1 no end", "<@UBOT1 no end"),
        ] {
            assert_eq!(without_mention(text, Some("UBOT1")), expected, "{text}");
        }
        assert_eq!(without_mention("<@UBOT1> hi", None), "<@UBOT1> hi");
    }
}
