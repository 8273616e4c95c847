//! A fake Telegram Bot API: `POST /bot<token>/<method>` with JSON, answering
//! `{"ok": true, "result": ...}` or `{"ok": false, "error_code",
//! "description"}` with that HTTP status, as Telegram does.
//!
//! It knows three bots ([`BOT_TOKEN`], [`BOT2_TOKEN`] and the platform's
//! shared [`PLATFORM_BOT_TOKEN`]) and two private chats ([`OWNER_CHAT`],
//! [`OTHER_CHAT`]). For a bot's server side it also plays Telegram's half of
//! a webhook: [`FakeTelegram::deliver`] POSTs an Update (see [`text_update`],
//! [`reply_update`], [`callback_update`]) to the URL the bot set with
//! `setWebhook`, echoing its `secret_token` in
//! `X-Telegram-Bot-Api-Secret-Token`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::faults::{self, Faults};
use crate::http::{Served, serve};

/// A bot token the fake accepts; its bot id is the part before the colon.
pub const BOT_TOKEN: &str = "7000000001:AAtest-bot-token-for-the-fake-0001";
/// The id of [`BOT_TOKEN`]'s bot.
pub const BOT_ID: i64 = 7_000_000_001;
/// The username of [`BOT_TOKEN`]'s bot.
pub const BOT_USERNAME: &str = "vz_test_bot";

/// A second user-owned bot the fake accepts.
pub const BOT2_TOKEN: &str = "7000000002:AAtest-bot-token-for-the-fake-0002";
/// The id of [`BOT2_TOKEN`]'s bot.
pub const BOT2_ID: i64 = 7_000_000_002;
/// The username of [`BOT2_TOKEN`]'s bot.
pub const BOT2_USERNAME: &str = "vz_second_bot";

/// The platform's shared bot.
pub const PLATFORM_BOT_TOKEN: &str = "7000000100:AAtest-platform-bot-token-fake-0100";
/// The id of [`PLATFORM_BOT_TOKEN`]'s bot.
pub const PLATFORM_BOT_ID: i64 = 7_000_000_100;
/// The username of [`PLATFORM_BOT_TOKEN`]'s bot.
pub const PLATFORM_BOT_USERNAME: &str = "vz_platform_bot";

/// The private chat of the user who owns the bot (in a private chat the chat
/// id is the user's id).
pub const OWNER_CHAT: i64 = 424_242;
/// The private chat of a stranger, who is not the bot's owner.
pub const OTHER_CHAT: i64 = 515_151;

/// The header Telegram echoes a webhook's `secret_token` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// token, id, first name, username.
const BOTS: &[(&str, i64, &str, &str)] = &[
    (BOT_TOKEN, BOT_ID, "VZ Test", BOT_USERNAME),
    (BOT2_TOKEN, BOT2_ID, "VZ Second", BOT2_USERNAME),
    (
        PLATFORM_BOT_TOKEN,
        PLATFORM_BOT_ID,
        "VZ Platform",
        PLATFORM_BOT_USERNAME,
    ),
];

/// A message the fake accepted with `sendMessage`.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    pub parse_mode: Option<String>,
    pub disable_notification: bool,
    pub reply_markup: Option<Value>,
}

/// An `editMessageText` the fake accepted.
#[derive(Debug, Clone)]
pub struct Edited {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    pub parse_mode: Option<String>,
    /// `None` when the edit left the message without buttons.
    pub reply_markup: Option<Value>,
}

/// An `answerCallbackQuery` the fake accepted.
#[derive(Debug, Clone)]
pub struct Answered {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
}

struct Bot {
    id: i64,
    first_name: &'static str,
    username: &'static str,
    webhook: Option<String>,
    secret: Option<String>,
}

impl Bot {
    fn user(&self) -> Value {
        json!({"id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username})
    }
}

/// A message a bot sent, as it now reads.
struct Stored {
    text: String,
    reply_markup: Option<Value>,
    date: i64,
}

#[derive(Default)]
struct Telegram {
    bots: HashMap<String, Bot>,
    chats: HashSet<i64>,
    blocked: HashSet<i64>,
    sent: Vec<Sent>,
    edited: Vec<Edited>,
    answered: Vec<Answered>,
    deleted_webhooks: Vec<String>,
    /// (token, chat, message id) → the bot's message.
    messages: HashMap<(String, i64, i64), Stored>,
    next_message_id: i64,
    next_update_id: i64,
}

type Shared = Arc<Mutex<Telegram>>;

/// A running fake Telegram on loopback.
pub struct FakeTelegram {
    served: Served,
    state: Shared,
    faults: Faults,
    client: reqwest::Client,
}

impl FakeTelegram {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Shared::default();
        {
            let mut t = state.lock().unwrap();
            for &(token, id, first_name, username) in BOTS {
                t.bots.insert(
                    token.into(),
                    Bot {
                        id,
                        first_name,
                        username,
                        webhook: None,
                        secret: None,
                    },
                );
            }
            t.chats.extend([OWNER_CHAT, OTHER_CHAT]);
            t.next_message_id = 100;
            t.next_update_id = 800_000_000;
        }
        let faults = Faults::default();
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                faults::layer,
            ));
        // Telegram does not follow redirects from a webhook.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            served: serve(app).await?,
            state,
            faults,
            client,
        })
    }

    /// Where to point `TELEGRAM_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The messages sent so far with `sendMessage`, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// The `editMessageText` calls accepted so far, oldest first.
    pub fn edited(&self) -> Vec<Edited> {
        self.state.lock().unwrap().edited.clone()
    }

    /// The `answerCallbackQuery` calls accepted so far, oldest first.
    pub fn answered(&self) -> Vec<Answered> {
        self.state.lock().unwrap().answered.clone()
    }

    /// The user blocks the bot: sends to `chat` fail with 403, until the
    /// user writes to the bot again (a delivered `message` from `chat`).
    pub fn block(&self, chat: i64) {
        self.state.lock().unwrap().blocked.insert(chat);
    }

    /// The webhook URL set for `token`, if any.
    pub fn webhook(&self, token: &str) -> Option<String> {
        let t = self.state.lock().unwrap();
        t.bots.get(token).and_then(|b| b.webhook.clone())
    }

    /// The `secret_token` set with `token`'s webhook, if any.
    pub fn webhook_secret(&self, token: &str) -> Option<String> {
        let t = self.state.lock().unwrap();
        t.bots.get(token).and_then(|b| b.secret.clone())
    }

    /// The tokens `deleteWebhook` was called with, in order.
    pub fn deleted_webhooks(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted_webhooks.clone()
    }

    /// Makes `token` unknown to the fake, as if revoked with BotFather: every
    /// call with it then fails with 401.
    pub fn revoke_token(&self, token: &str) {
        self.state.lock().unwrap().bots.remove(token);
    }

    /// Delivers `update` to the webhook set for `token`, as Telegram does: a
    /// JSON `POST` with `X-Telegram-Bot-Api-Secret-Token` when a secret was
    /// set. Returns the HTTP status the webhook answered.
    ///
    /// The update gets a fresh, increasing `update_id` unless it has one. A
    /// `reply_to_message` or a callback's `message` naming a message this bot
    /// sent to that chat gets that message's `from`, `text` and
    /// `reply_markup` filled in, as in Telegram's updates. A `message` makes
    /// its chat known and unblocks it (the user is writing to the bot).
    pub async fn deliver(&self, token: &str, update: Value) -> anyhow::Result<u16> {
        let secret = self.webhook_secret(token);
        self.deliver_with_secret(token, update, secret.as_deref())
            .await
    }

    /// [`deliver`](Self::deliver), with `secret` in
    /// `X-Telegram-Bot-Api-Secret-Token` (none when `None`) whatever was set:
    /// a forged delivery.
    pub async fn deliver_with_secret(
        &self,
        token: &str,
        mut update: Value,
        secret: Option<&str>,
    ) -> anyhow::Result<u16> {
        let url = {
            let mut t = self.state.lock().unwrap();
            let Some(bot) = t.bots.get(token) else {
                bail!("fake Telegram: unknown bot token {token:?}");
            };
            let Some(url) = bot.webhook.clone() else {
                bail!("fake Telegram: no webhook set for @{}", bot.username);
            };
            prepare_update(&mut t, token, &mut update)?;
            url
        };
        let mut request = self.client.post(&url).json(&update);
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("delivering an update to {url}"))?;
        Ok(response.status().as_u16())
    }
}

/// Gives `update` an `update_id` and fills in what Telegram knows about the
/// bot's own messages it refers to.
fn prepare_update(t: &mut Telegram, token: &str, update: &mut Value) -> anyhow::Result<()> {
    let Some(fields) = update.as_object_mut() else {
        bail!("an update is a JSON object");
    };
    match fields.get("update_id").and_then(Value::as_i64) {
        Some(id) => t.next_update_id = t.next_update_id.max(id),
        None => {
            t.next_update_id += 1;
            fields.insert("update_id".into(), json!(t.next_update_id));
        }
    }
    let bot = t.bots[token].user();
    for (kind, inner) in fields.iter_mut() {
        let referred = match kind.as_str() {
            "message" | "edited_message" => {
                if kind == "message"
                    && let Some(chat) = inner["chat"]["id"].as_i64()
                {
                    t.chats.insert(chat);
                    t.blocked.remove(&chat);
                }
                inner.get_mut("reply_to_message")
            }
            "callback_query" => inner.get_mut("message"),
            _ => None,
        };
        let Some(referred) = referred.and_then(Value::as_object_mut) else {
            continue;
        };
        let (Some(chat), Some(id)) = (
            referred.get("chat").and_then(|c| c["id"].as_i64()),
            referred.get("message_id").and_then(Value::as_i64),
        ) else {
            continue;
        };
        let Some(stored) = t.messages.get(&(token.to_string(), chat, id)) else {
            continue;
        };
        referred.entry("from").or_insert_with(|| bot.clone());
        referred.insert("date".into(), json!(stored.date));
        referred.entry("text").or_insert_with(|| json!(stored.text));
        if let Some(markup) = &stored.reply_markup {
            referred
                .entry("reply_markup")
                .or_insert_with(|| markup.clone());
        }
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1_700_000_000, |d| d.as_secs() as i64)
}

/// Ids for the messages users send, apart from those the fake gives bots.
static NEXT_USER_MESSAGE_ID: AtomicI64 = AtomicI64::new(50_000);
static NEXT_CALLBACK_ID: AtomicI64 = AtomicI64::new(4_382_000_000_000_000_001);

fn first_name(user: i64) -> &'static str {
    match user {
        OWNER_CHAT => "Owner",
        OTHER_CHAT => "Stranger",
        _ => "Tester",
    }
}

fn user(id: i64) -> Value {
    json!({"id": id, "is_bot": false, "first_name": first_name(id), "language_code": "en"})
}

fn private_chat(id: i64) -> Value {
    json!({"id": id, "type": "private", "first_name": first_name(id)})
}

fn user_message(chat_id: i64, from_id: i64, text: &str) -> Value {
    let mut message = json!({
        "message_id": NEXT_USER_MESSAGE_ID.fetch_add(1, Ordering::Relaxed),
        "from": user(from_id),
        "chat": private_chat(chat_id),
        "date": now(),
        "text": text,
    });
    if text.starts_with('/') {
        // `/start`, `/start@bot`: up to the first whitespace, in UTF-16 units.
        let command = text.split(char::is_whitespace).next().unwrap_or(text);
        let length = command.encode_utf16().count();
        if length > 1 {
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": length}]);
        }
    }
    message
}

/// An Update with a private-chat text `message` from `from_id` in `chat_id`;
/// a text starting with `/` carries its `bot_command` entity.
pub fn text_update(chat_id: i64, from_id: i64, text: &str) -> Value {
    json!({"message": user_message(chat_id, from_id, text)})
}

/// [`text_update`] replying to message `reply_to_message_id` (its `from`
/// and `text` are filled in on delivery when the bot sent it).
pub fn reply_update(chat_id: i64, from_id: i64, text: &str, reply_to_message_id: i64) -> Value {
    let mut message = user_message(chat_id, from_id, text);
    message["reply_to_message"] = json!({
        "message_id": reply_to_message_id,
        "chat": private_chat(chat_id),
        "date": now(),
    });
    json!({"message": message})
}

/// An Update with a `callback_query`: `from_id` tapped a button carrying
/// `data` on message `message_id` in `chat_id` (the message's `from`, `text`
/// and `reply_markup` are filled in on delivery when the bot sent it).
pub fn callback_update(chat_id: i64, from_id: i64, message_id: i64, data: &str) -> Value {
    let id = NEXT_CALLBACK_ID.fetch_add(1, Ordering::Relaxed);
    json!({"callback_query": {
        "id": id.to_string(),
        "from": user(from_id),
        "message": {"message_id": message_id, "chat": private_chat(chat_id), "date": now()},
        "chat_instance": format!("-{}007", chat_id.unsigned_abs()),
        "data": data,
    }})
}

/// Telegram's rule for a webhook's `secret_token`: 1 to 256 characters of
/// `A-Z`, `a-z`, `0-9`, `_` and `-`.
fn secret_token_ok(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(json!({"ok": false, "error_code": code, "description": description})),
    )
        .into_response()
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

/// Telegram's check of HTML entities: tags it knows, balanced, and no bare
/// `<` or `&`.
fn html_parses(text: &str) -> bool {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "blockquote",
        "tg-spoiler",
    ];
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '&']) {
        let tail = &rest[at..];
        if tail.starts_with('&') {
            let Some(end) = tail.find(';') else {
                return false;
            };
            if !matches!(&tail[..=end], "&lt;" | "&gt;" | "&amp;" | "&quot;") {
                return false;
            }
            rest = &tail[end + 1..];
            continue;
        }
        let Some(end) = tail.find('>') else {
            return false;
        };
        let tag = &tail[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            if open.pop().as_deref() != Some(name) {
                return false;
            }
        } else {
            let name = tag.split_whitespace().next().unwrap_or("");
            if !TAGS.contains(&name) {
                return false;
            }
            open.push(name.to_string());
        }
        rest = &tail[end + 1..];
    }
    open.is_empty()
}

async fn method(
    State(state): State<Shared>,
    Path((bot, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return error(404, "Not Found");
    };
    let args: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(400, "Bad Request: invalid JSON"),
        }
    };
    let mut t = state.lock().unwrap();
    let Some(bot) = t.bots.get_mut(token) else {
        return error(401, "Unauthorized");
    };
    match name.as_str() {
        "getMe" => ok(json!({
            "id": bot.id, "is_bot": true, "first_name": bot.first_name, "username": bot.username,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false,
        })),
        "getWebhookInfo" => ok(json!({
            "url": bot.webhook.clone().unwrap_or_default(),
            "has_custom_certificate": false,
            "pending_update_count": 0,
        })),
        "setWebhook" => {
            let Some(url) = args["url"]
                .as_str()
                .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            else {
                return error(400, "Bad Request: bad webhook: invalid URL");
            };
            let secret = match args.get("secret_token") {
                None | Some(Value::Null) => None,
                Some(Value::String(secret)) if secret_token_ok(secret) => Some(secret.clone()),
                Some(_) => {
                    return error(
                        400,
                        "Bad Request: secret token contains unallowed characters",
                    );
                }
            };
            bot.webhook = Some(url.into());
            bot.secret = secret;
            ok(json!(true))
        }
        "deleteWebhook" => {
            bot.webhook = None;
            bot.secret = None;
            t.deleted_webhooks.push(token.into());
            ok(json!(true))
        }
        "answerCallbackQuery" => {
            let id = match &args["callback_query_id"] {
                Value::String(id) if !id.is_empty() => id.clone(),
                Value::Number(id) => id.to_string(),
                _ => return error(400, "Bad Request: QUERY_ID_INVALID"),
            };
            t.answered.push(Answered {
                callback_query_id: id,
                text: args["text"].as_str().map(str::to_string),
                show_alert: args["show_alert"].as_bool().unwrap_or(false),
            });
            ok(json!(true))
        }
        "sendMessage" => send_message(&mut t, token, &args),
        "editMessageText" => edit_message_text(&mut t, token, &args),
        _ => error(404, "Not Found: method not found"),
    }
}

/// An integer parameter, given as a number or a string of digits.
fn int_arg(args: &Value, name: &str) -> Option<i64> {
    args[name]
        .as_i64()
        .or_else(|| args[name].as_str().and_then(|s| s.parse().ok()))
}

/// What `sendMessage` and `editMessageText` check alike: the chat, the text
/// and its entities, the buttons. Returns the chat id, or the error code
/// and description.
fn check_message(t: &Telegram, args: &Value) -> Result<i64, (u16, &'static str)> {
    let Some(chat_id) = int_arg(args, "chat_id") else {
        return Err((400, "Bad Request: chat_id is empty"));
    };
    let text = args["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        return Err((400, "Bad Request: message text is empty"));
    }
    if text.chars().count() > 4096 {
        return Err((400, "Bad Request: message is too long"));
    }
    if !t.chats.contains(&chat_id) {
        return Err((400, "Bad Request: chat not found"));
    }
    if t.blocked.contains(&chat_id) {
        return Err((403, "Forbidden: bot was blocked by the user"));
    }
    if args["parse_mode"].as_str() == Some("HTML") && !html_parses(text) {
        return Err((
            400,
            "Bad Request: can't parse entities: Unsupported start tag at byte offset 0",
        ));
    }
    if let Some(markup) = args.get("reply_markup")
        && markup["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().into_iter().flatten())
            .any(|b| {
                let data = b["callback_data"].as_str().unwrap_or_default();
                data.is_empty() || data.len() > 64
            })
    {
        return Err((400, "Bad Request: BUTTON_DATA_INVALID"));
    }
    Ok(chat_id)
}

/// The Message object Telegram returns for a bot's message.
fn bot_message(bot: &Bot, chat_id: i64, message_id: i64, stored: &Stored) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "from": bot.user(),
        "chat": private_chat(chat_id),
        "date": stored.date,
        "text": stored.text,
    });
    if let Some(markup) = &stored.reply_markup {
        message["reply_markup"] = markup.clone();
    }
    message
}

fn send_message(t: &mut Telegram, token: &str, args: &Value) -> Response {
    let chat_id = match check_message(t, args) {
        Ok(chat_id) => chat_id,
        Err((code, description)) => return error(code, description),
    };
    let text = args["text"].as_str().unwrap_or_default().to_string();
    t.next_message_id += 1;
    let message_id = t.next_message_id;
    let reply_markup = args.get("reply_markup").cloned();
    t.sent.push(Sent {
        chat_id,
        message_id,
        text: text.clone(),
        parse_mode: args["parse_mode"].as_str().map(str::to_string),
        disable_notification: args["disable_notification"].as_bool().unwrap_or(false),
        reply_markup: reply_markup.clone(),
    });
    let stored = Stored {
        text,
        reply_markup,
        date: now(),
    };
    let message = bot_message(&t.bots[token], chat_id, message_id, &stored);
    t.messages
        .insert((token.to_string(), chat_id, message_id), stored);
    ok(message)
}

fn edit_message_text(t: &mut Telegram, token: &str, args: &Value) -> Response {
    let chat_id = match check_message(t, args) {
        Ok(chat_id) => chat_id,
        Err((code, description)) => return error(code, description),
    };
    let Some(message_id) = int_arg(args, "message_id") else {
        return error(400, "Bad Request: message identifier is not specified");
    };
    let text = args["text"].as_str().unwrap_or_default().to_string();
    // Without `reply_markup` the edit removes the message's buttons.
    let reply_markup = args.get("reply_markup").cloned();
    let key = (token.to_string(), chat_id, message_id);
    let Some(stored) = t.messages.get_mut(&key) else {
        return error(400, "Bad Request: message to edit not found");
    };
    if stored.text == text && stored.reply_markup == reply_markup {
        return error(
            400,
            "Bad Request: message is not modified: specified new message content and reply \
             markup are exactly the same as a content and reply markup of the current message",
        );
    }
    stored.text = text.clone();
    stored.reply_markup = reply_markup.clone();
    let mut message = bot_message(&t.bots[token], chat_id, message_id, &t.messages[&key]);
    message["edit_date"] = json!(now());
    t.edited.push(Edited {
        chat_id,
        message_id,
        text,
        parse_mode: args["parse_mode"].as_str().map(str::to_string),
        reply_markup,
    });
    ok(message)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    /// Calls Bot API `method` as `token`: the status and the JSON body.
    async fn call(tg: &FakeTelegram, token: &str, method: &str, args: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/bot{token}/{method}", tg.base_url()))
            .json(&args)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[test]
    fn secret_tokens_follow_telegrams_rule() {
        assert!(secret_token_ok("a"));
        assert!(secret_token_ok("Abc_DEF-0123456789"));
        assert!(secret_token_ok(&"x".repeat(256)));
        assert!(!secret_token_ok(""));
        assert!(!secret_token_ok(&"x".repeat(257)));
        for bad in ["with space", "dot.ted", "slash/", "plus+", "équipe", "a=b"] {
            assert!(!secret_token_ok(bad), "{bad}");
        }
    }

    #[test]
    fn builders_shape_updates_like_telegram() {
        let start = text_update(OWNER_CHAT, OWNER_CHAT, "/start abc123");
        let m = &start["message"];
        assert!(start.get("update_id").is_none(), "given on delivery");
        assert_eq!(m["from"]["id"], OWNER_CHAT);
        assert_eq!(m["from"]["is_bot"], false);
        assert_eq!(
            m["chat"],
            json!({"id": OWNER_CHAT, "type": "private", "first_name": "Owner"})
        );
        assert_eq!(m["text"], "/start abc123");
        assert_eq!(
            m["entities"],
            json!([{"type": "bot_command", "offset": 0, "length": 6}])
        );
        let link = text_update(OTHER_CHAT, OTHER_CHAT, "/link@vz_test_bot X");
        assert_eq!(link["message"]["entities"][0]["length"], 17);
        let plain = text_update(OTHER_CHAT, OTHER_CHAT, "hello");
        assert!(plain["message"].get("entities").is_none());
        assert_ne!(
            plain["message"]["message_id"],
            link["message"]["message_id"]
        );

        let reply = reply_update(OWNER_CHAT, OWNER_CHAT, "yes", 101);
        assert_eq!(reply["message"]["reply_to_message"]["message_id"], 101);
        assert_eq!(reply["message"]["text"], "yes");

        let tap = callback_update(OWNER_CHAT, OWNER_CHAT, 101, "claim:1");
        let q = &tap["callback_query"];
        assert!(q["id"].is_string());
        assert_eq!(q["from"]["id"], OWNER_CHAT);
        assert_eq!(q["message"]["message_id"], 101);
        assert_eq!(q["message"]["chat"]["id"], OWNER_CHAT);
        assert!(q["chat_instance"].is_string());
        assert_eq!(q["data"], "claim:1");
    }

    #[tokio::test]
    async fn knows_each_bot_and_refuses_unknown_tokens() {
        let tg = FakeTelegram::start().await.unwrap();
        for (token, id, username) in [
            (BOT_TOKEN, BOT_ID, BOT_USERNAME),
            (BOT2_TOKEN, BOT2_ID, BOT2_USERNAME),
            (PLATFORM_BOT_TOKEN, PLATFORM_BOT_ID, PLATFORM_BOT_USERNAME),
        ] {
            let (status, me) = call(&tg, token, "getMe", json!({})).await;
            assert_eq!(status, 200);
            assert_eq!(me["result"]["id"], id);
            assert_eq!(me["result"]["is_bot"], true);
            assert_eq!(me["result"]["username"], username);
        }
        let (status, body) = call(&tg, "1:nope", "getMe", json!({})).await;
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        tg.revoke_token(BOT2_TOKEN);
        assert_eq!(call(&tg, BOT2_TOKEN, "getMe", json!({})).await.0, 401);
    }

    #[tokio::test]
    async fn set_webhook_checks_and_keeps_the_secret_token() {
        let tg = FakeTelegram::start().await.unwrap();
        let url = "https://hooks.example/telegram/1";
        let set = |secret: Value| json!({"url": url, "secret_token": secret});

        let (status, body) = call(&tg, BOT_TOKEN, "setWebhook", set(json!("s3cret_-X"))).await;
        assert_eq!((status, body["result"].clone()), (200, json!(true)));
        assert_eq!(tg.webhook(BOT_TOKEN).as_deref(), Some(url));
        assert_eq!(tg.webhook_secret(BOT_TOKEN).as_deref(), Some("s3cret_-X"));

        for bad in [
            json!("has space"),
            json!(""),
            json!("x".repeat(257)),
            json!(42),
        ] {
            let (status, body) = call(&tg, BOT_TOKEN, "setWebhook", set(bad)).await;
            assert_eq!(status, 400);
            assert_eq!(
                body["description"],
                "Bad Request: secret token contains unallowed characters"
            );
        }
        assert_eq!(
            tg.webhook_secret(BOT_TOKEN).as_deref(),
            Some("s3cret_-X"),
            "unchanged"
        );

        let (status, _) = call(&tg, BOT_TOKEN, "setWebhook", json!({"url": url})).await;
        assert_eq!(status, 200);
        assert_eq!(
            tg.webhook_secret(BOT_TOKEN),
            None,
            "a new setWebhook replaces it"
        );

        call(&tg, BOT2_TOKEN, "setWebhook", set(json!("two"))).await;
        let (status, _) = call(&tg, BOT2_TOKEN, "deleteWebhook", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(tg.webhook(BOT2_TOKEN), None);
        assert_eq!(tg.webhook_secret(BOT2_TOKEN), None);
        assert_eq!(tg.deleted_webhooks(), vec![BOT2_TOKEN.to_string()]);
        assert_eq!(
            tg.webhook(BOT_TOKEN).as_deref(),
            Some(url),
            "other bots keep theirs"
        );
    }

    type Inbox = Arc<Mutex<Vec<(Option<String>, Value)>>>;

    /// A bot's webhook on loopback: records each update with its secret
    /// header, and answers 401 unless the secret is `s3cret`.
    async fn receiver() -> (Served, Inbox) {
        async fn hook(
            State(inbox): State<Inbox>,
            headers: HeaderMap,
            axum::Json(update): axum::Json<Value>,
        ) -> StatusCode {
            let secret = headers
                .get(SECRET_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let good = secret.as_deref() == Some("s3cret");
            inbox.lock().unwrap().push((secret, update));
            if good {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
        let inbox = Inbox::default();
        let app = Router::new()
            .route("/telegram/webhook", post(hook))
            .with_state(inbox.clone());
        (serve(app).await.unwrap(), inbox)
    }

    #[tokio::test]
    async fn delivers_updates_to_the_webhook_like_telegram() {
        let tg = FakeTelegram::start().await.unwrap();
        let (hook, inbox) = receiver().await;
        assert!(
            tg.deliver(BOT_TOKEN, text_update(OWNER_CHAT, OWNER_CHAT, "hi"))
                .await
                .is_err(),
            "no webhook yet"
        );
        let url = format!("http://{}/telegram/webhook", hook.addr);
        let (status, _) = call(
            &tg,
            BOT_TOKEN,
            "setWebhook",
            json!({"url": url, "secret_token": "s3cret"}),
        )
        .await;
        assert_eq!(status, 200);

        let start = tg
            .deliver(
                BOT_TOKEN,
                text_update(OWNER_CHAT, OWNER_CHAT, "/start code1"),
            )
            .await
            .unwrap();
        assert_eq!(start, 200);
        let buttons = json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]});
        let (status, sent) = call(
            &tg,
            BOT_TOKEN,
            "sendMessage",
            json!({"chat_id": OTHER_CHAT, "text": "Reply here?", "reply_markup": buttons}),
        )
        .await;
        assert_eq!(status, 200);
        let message_id = sent["result"]["message_id"].as_i64().unwrap();
        assert_eq!(sent["result"]["from"]["username"], BOT_USERNAME);
        let tap = callback_update(OTHER_CHAT, OTHER_CHAT, message_id, "yes");
        assert_eq!(tg.deliver(BOT_TOKEN, tap).await.unwrap(), 200);
        let reply = reply_update(OTHER_CHAT, OTHER_CHAT, "sure", message_id);
        assert_eq!(tg.deliver(BOT_TOKEN, reply.clone()).await.unwrap(), 200);
        let forged = tg
            .deliver_with_secret(BOT_TOKEN, reply.clone(), Some("guess"))
            .await
            .unwrap();
        assert_eq!(forged, 401);
        let bare = tg
            .deliver_with_secret(BOT_TOKEN, reply, None)
            .await
            .unwrap();
        assert_eq!(bare, 401);

        let got = inbox.lock().unwrap().clone();
        assert_eq!(got.len(), 5);
        let secrets: Vec<_> = got.iter().map(|(s, _)| s.as_deref()).collect();
        assert_eq!(
            secrets,
            [
                Some("s3cret"),
                Some("s3cret"),
                Some("s3cret"),
                Some("guess"),
                None
            ]
        );
        let ids: Vec<i64> = got
            .iter()
            .map(|(_, u)| u["update_id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let start = &got[0].1["message"];
        assert_eq!(start["text"], "/start code1");
        assert_eq!(start["entities"][0]["length"], 6);
        let tapped = &got[1].1["callback_query"]["message"];
        assert_eq!(tapped["from"]["id"], BOT_ID);
        assert_eq!(tapped["text"], "Reply here?");
        assert_eq!(tapped["reply_markup"], buttons);
        let replied = &got[2].1["message"]["reply_to_message"];
        assert_eq!(replied["from"]["is_bot"], true);
        assert_eq!(replied["text"], "Reply here?");

        let query_id = got[1].1["callback_query"]["id"].as_str().unwrap();
        let (status, _) = call(
            &tg,
            BOT_TOKEN,
            "answerCallbackQuery",
            json!({"callback_query_id": query_id, "text": "Done"}),
        )
        .await;
        assert_eq!(status, 200);
        let answered = tg.answered();
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].callback_query_id, query_id);
        assert_eq!(answered[0].text.as_deref(), Some("Done"));
        assert!(!answered[0].show_alert);

        let edit = json!({"chat_id": OTHER_CHAT, "message_id": message_id, "text": "Claimed"});
        let (status, edited) = call(&tg, BOT_TOKEN, "editMessageText", edit.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(edited["result"]["text"], "Claimed");
        assert!(
            edited["result"].get("reply_markup").is_none(),
            "buttons gone"
        );
        let (status, again) = call(&tg, BOT_TOKEN, "editMessageText", edit).await;
        assert_eq!(status, 400);
        assert!(
            again["description"]
                .as_str()
                .unwrap()
                .starts_with("Bad Request: message is not modified")
        );
        let (status, other_bot) = call(
            &tg,
            BOT2_TOKEN,
            "editMessageText",
            json!({"chat_id": OTHER_CHAT, "message_id": message_id, "text": "Mine"}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            other_bot["description"],
            "Bad Request: message to edit not found"
        );
        let edits = tg.edited();
        assert_eq!(edits.len(), 1);
        assert_eq!(
            (
                edits[0].chat_id,
                edits[0].message_id,
                edits[0].text.as_str()
            ),
            (OTHER_CHAT, message_id, "Claimed")
        );
        assert_eq!(edits[0].reply_markup, None);
        assert_eq!(tg.sent().len(), 1, "edits are not sends");
    }

    #[tokio::test]
    async fn a_message_from_a_blocked_user_unblocks_the_bot() {
        let tg = FakeTelegram::start().await.unwrap();
        let (hook, _inbox) = receiver().await;
        let url = format!("http://{}/telegram/webhook", hook.addr);
        call(
            &tg,
            BOT_TOKEN,
            "setWebhook",
            json!({"url": url, "secret_token": "s3cret"}),
        )
        .await;
        tg.block(OWNER_CHAT);
        let send = json!({"chat_id": OWNER_CHAT, "text": "hello"});
        assert_eq!(
            call(&tg, BOT_TOKEN, "sendMessage", send.clone()).await.0,
            403
        );
        tg.deliver(BOT_TOKEN, text_update(OWNER_CHAT, OWNER_CHAT, "/start"))
            .await
            .unwrap();
        assert_eq!(call(&tg, BOT_TOKEN, "sendMessage", send).await.0, 200);
    }
}
