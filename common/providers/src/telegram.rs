//! The Telegram Bot API: the client (`POST
//! <TELEGRAM_API_BASE>/bot<token>/<method>`, Telegram's `{"ok": false,
//! "error_code", "description"}` refusals mapped to [`TelegramError`]), the
//! shape of a bot's token and id, and the webhook's side: an update as the
//! webhook reads it ([`Update::parse`]) and a message's command
//! ([`command_of`]), which the fuzz targets call too.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{NoAnswer, base_url};

const API_BASE: &str = "https://api.telegram.org";

/// The most digits a bot id has.
const MAX_BOT_ID_DIGITS: usize = 20;
/// How long the secret half of a bot token is.
const TOKEN_SECRET_LEN: std::ops::RangeInclusive<usize> = 20..=100;

/// Why a Bot API call did not succeed. Never holds the token (which is in
/// the URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// No answer came (nothing was sent if [`NoAnswer::is_connect`]).
    #[error("Telegram {0}")]
    NoAnswer(NoAnswer),
    /// An answer that is not the JSON Telegram sends.
    #[error("Telegram answered {status} with a body that is not JSON")]
    Unreadable { status: StatusCode },
    /// `{"ok": false}`: the HTTP status, and what the answer says.
    #[error("Telegram refused the call ({status})")]
    Refused {
        status: StatusCode,
        /// `error_code`, if the answer has one.
        error_code: Option<u64>,
        /// `description`, if the answer has one.
        description: Option<String>,
        /// `parameters.retry_after`, the wait a 429 asks for.
        retry_after: Option<Duration>,
    },
}

/// A bot as `getMe` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub id: i64,
    pub username: String,
}

/// A Bot API client; cheap to clone.
#[derive(Debug, Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    base: String,
}

impl TelegramClient {
    /// A client for `TELEGRAM_API_BASE` (default Telegram's) over `http`,
    /// whose settings (timeout, user agent) every call takes.
    pub fn from_env(http: reqwest::Client) -> Self {
        Self {
            http,
            base: base_url("TELEGRAM_API_BASE", API_BASE),
        }
    }

    /// Calls the method `method` as `token` with the JSON `body`: its
    /// `result`.
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        body: &Value,
    ) -> Result<Value, TelegramError> {
        let response = self
            .http
            .post(format!("{}/bot{token}/{method}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| TelegramError::NoAnswer(e.into()))?;
        let status = response.status();
        let Ok(answer) = response.json::<Value>().await else {
            return Err(TelegramError::Unreadable { status });
        };
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer["result"].clone());
        }
        Err(TelegramError::Refused {
            status,
            error_code: answer["error_code"].as_u64(),
            description: answer["description"].as_str().map(str::to_string),
            retry_after: answer["parameters"]["retry_after"]
                .as_u64()
                .map(Duration::from_secs),
        })
    }

    /// `getMe`: the bot's id and username; `None` when Telegram's answer
    /// lacks them.
    pub async fn get_me(&self, token: &str) -> Result<Option<Me>, TelegramError> {
        let me = self.call(token, "getMe", &json!({})).await?;
        Ok(match (me["id"].as_i64(), me["username"].as_str()) {
            (Some(id), Some(username)) => Some(Me {
                id,
                username: username.to_string(),
            }),
            _ => None,
        })
    }

    /// `setWebhook`: the bot's updates of the kinds `allowed_updates` are
    /// POSTed to `url`, each with `secret` in
    /// `X-Telegram-Bot-Api-Secret-Token`.
    pub async fn set_webhook(
        &self,
        token: &str,
        url: &str,
        secret: &str,
        allowed_updates: &[&str],
    ) -> Result<Value, TelegramError> {
        let body = json!({"url": url, "secret_token": secret, "allowed_updates": allowed_updates});
        self.call(token, "setWebhook", &body).await
    }

    /// `deleteWebhook`: the bot stops sending updates.
    pub async fn delete_webhook(&self, token: &str) -> Result<Value, TelegramError> {
        self.call(token, "deleteWebhook", &json!({})).await
    }

    /// `sendMessage` of `body` (`chat_id`, `text`, ...): the Message sent.
    pub async fn send_message(&self, token: &str, body: &Value) -> Result<Value, TelegramError> {
        self.call(token, "sendMessage", body).await
    }
}

/// Whether `id` is shaped like a bot's id (digits).
pub fn valid_bot_id(id: &str) -> bool {
    (1..=MAX_BOT_ID_DIGITS).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `token` is shaped like a token from @BotFather:
/// `<bot id>:<secret>`.
pub fn valid_token_shape(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    valid_bot_id(id)
        && TOKEN_SECRET_LEN.contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id of the bot a token is for: the part before the colon.
pub fn bot_id_of(token: &str) -> Option<&str> {
    token.split(':').next()
}

/// Whether `username` is one of a bot's usernames: 5 to 32 letters, digits
/// or `_` (anything else would move the host of a `t.me` link).
pub fn valid_username(username: &str) -> bool {
    (5..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The JSON Schema of a bot id, as the webhook's path holds it.
pub fn bot_id_schema() -> Value {
    json!({"type": "string", "pattern": format!("^[0-9]{{1,{MAX_BOT_ID_DIGITS}}}$")})
}

/// The JSON Schema of a bot token [`valid_token_shape`] accepts (surrounding
/// whitespace, which is trimmed, left out).
pub fn token_schema() -> Value {
    json!({"type": "string", "pattern": format!(
        "^[0-9]{{1,{MAX_BOT_ID_DIGITS}}}:[A-Za-z0-9_-]{{{},{}}}$",
        TOKEN_SECRET_LEN.start(),
        TOKEN_SECRET_LEN.end()
    )})
}

/// An update as the webhook reads it, leniently: a field of another type
/// than Telegram's reads as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// `update_id`.
    pub id: Option<i64>,
    /// The chat it comes from: a message's, else a tapped message's.
    pub chat: Option<i64>,
    pub event: Event,
}

/// What an update asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `callback_query`: a tap on an inline button.
    Tap(Tap),
    /// A text message in a private chat.
    Message { chat: i64, text: String },
    /// Anything else (another chat's message, one without text, another
    /// kind of update): not heard.
    Ignored,
}

/// A tap on an inline button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// The callback query's id, to answer it (empty when absent).
    pub id: String,
    /// Who tapped.
    pub from: Option<i64>,
    /// The chat of the message tapped.
    pub chat: Option<i64>,
    /// The message tapped.
    pub message_id: Option<i64>,
    /// The button's `callback_data` (empty when absent).
    pub data: String,
}

impl Tap {
    /// The button's action and its argument: `claim:<id>` is `("claim",
    /// "<id>")`; data without a colon is all action.
    pub fn action(&self) -> (&str, &str) {
        self.data.split_once(':').unwrap_or((&self.data, ""))
    }
}

impl Update {
    /// Reads an update's body; `None` when it is not JSON.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let update = serde_json::from_slice::<Value>(body).ok()?;
        let chat = update["message"]["chat"]["id"]
            .as_i64()
            .or(update["callback_query"]["message"]["chat"]["id"].as_i64());
        let event = if let Some(query) = update.get("callback_query") {
            Event::Tap(Tap {
                id: query["id"].as_str().unwrap_or_default().to_string(),
                from: query["from"]["id"].as_i64(),
                chat: query["message"]["chat"]["id"].as_i64(),
                message_id: query["message"]["message_id"].as_i64(),
                data: query["data"].as_str().unwrap_or_default().to_string(),
            })
        } else {
            match update.get("message") {
                Some(message) if message["chat"]["type"].as_str() == Some("private") => {
                    match (message["chat"]["id"].as_i64(), message["text"].as_str()) {
                        (Some(chat), Some(text)) => Event::Message {
                            chat,
                            text: text.to_string(),
                        },
                        _ => Event::Ignored,
                    }
                }
                _ => Event::Ignored,
            }
        };
        Some(Self {
            id: update["update_id"].as_i64(),
            chat,
            event,
        })
    }
}

/// A bot command (`/name` or `/name@bot`, the name in lower case) and its
/// argument; text that is no command is all argument.
pub fn command_of(text: &str) -> (Option<String>, &str) {
    let Some(rest) = text.strip_prefix('/') else {
        return (None, text);
    };
    let (word, argument) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = word
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    (Some(name), argument.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_with_their_argument() {
        assert_eq!(command_of("/start abc"), (Some("start".into()), "abc"));
        assert_eq!(
            command_of("/Link@MyBot  code "),
            (Some("link".into()), "code")
        );
        assert_eq!(command_of("hello"), (None, "hello"));
    }

    #[test]
    fn updates_are_read_as_the_webhook_reads_them() {
        let message =
            br#"{"update_id":7,"message":{"chat":{"id":5,"type":"private"},"text":"hi"}}"#;
        let update = Update::parse(message).unwrap();
        assert_eq!((update.id, update.chat), (Some(7), Some(5)));
        assert_eq!(
            update.event,
            Event::Message {
                chat: 5,
                text: "hi".into()
            }
        );
        let group = br#"{"message":{"chat":{"id":5,"type":"group"},"text":"hi"}}"#;
        assert_eq!(Update::parse(group).unwrap().event, Event::Ignored);
        let tap =
            br#"{"callback_query":{"id":"q","data":"claim:ntf_1","message":{"chat":{"id":9}}}}"#;
        let update = Update::parse(tap).unwrap();
        assert_eq!(update.chat, Some(9));
        let Event::Tap(tap) = update.event else {
            panic!("a tap")
        };
        assert_eq!(tap.action(), ("claim", "ntf_1"));
        assert!(Update::parse(b"not json").is_none());
    }
}
