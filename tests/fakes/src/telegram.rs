//! A fake Telegram Bot API: `POST /bot<token>/<method>` with JSON, answering
//! `{"ok": true, "result": ...}` or `{"ok": false, "error_code",
//! "description"}` with that HTTP status, as Telegram does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

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
/// The private chat of the user who owns the bot.
pub const OWNER_CHAT: i64 = 424_242;

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    pub parse_mode: Option<String>,
    pub disable_notification: bool,
    pub reply_markup: Option<Value>,
}

#[derive(Default)]
struct Telegram {
    /// token → webhook URL, if set.
    bots: HashMap<String, Option<String>>,
    chats: HashSet<i64>,
    blocked: HashSet<i64>,
    sent: Vec<Sent>,
    next_message_id: i64,
}

type Shared = Arc<Mutex<Telegram>>;

/// A running fake Telegram on loopback.
pub struct FakeTelegram {
    served: Served,
    state: Shared,
    faults: Faults,
}

impl FakeTelegram {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Shared::default();
        {
            let mut t = state.lock().unwrap();
            t.bots.insert(BOT_TOKEN.into(), None);
            t.chats.insert(OWNER_CHAT);
            t.next_message_id = 100;
        }
        let faults = Faults::default();
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                faults::layer,
            ));
        Ok(Self {
            served: serve(app).await?,
            state,
            faults,
        })
    }

    /// Where to point `TELEGRAM_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The messages sent so far, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// The user blocks the bot: sends to `chat` fail with 403.
    pub fn block(&self, chat: i64) {
        self.state.lock().unwrap().blocked.insert(chat);
    }

    /// The webhook URL set for `token`, if any.
    pub fn webhook(&self, token: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .bots
            .get(token)
            .cloned()
            .flatten()
    }

    /// Whether `token`'s bot is known to the fake (not revoked by BotFather).
    pub fn revoke_token(&self, token: &str) {
        self.state.lock().unwrap().bots.remove(token);
    }
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
    if !t.bots.contains_key(token) {
        return error(401, "Unauthorized");
    }
    let bot_id: i64 = token
        .split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    match name.as_str() {
        "getMe" => ok(json!({
            "id": bot_id, "is_bot": true, "first_name": "VZ Test", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
        })),
        "setWebhook" => match args["url"].as_str() {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                t.bots.insert(token.into(), Some(url.into()));
                ok(json!(true))
            }
            _ => error(400, "Bad Request: bad webhook: invalid URL"),
        },
        "deleteWebhook" => {
            t.bots.insert(token.into(), None);
            ok(json!(true))
        }
        "answerCallbackQuery" => ok(json!(true)),
        "sendMessage" | "editMessageText" => {
            let Some(chat_id) = args["chat_id"]
                .as_i64()
                .or_else(|| args["chat_id"].as_str().and_then(|s| s.parse().ok()))
            else {
                return error(400, "Bad Request: chat_id is empty");
            };
            let text = args["text"].as_str().unwrap_or_default();
            if text.is_empty() {
                return error(400, "Bad Request: message text is empty");
            }
            if text.chars().count() > 4096 {
                return error(400, "Bad Request: message is too long");
            }
            if !t.chats.contains(&chat_id) {
                return error(400, "Bad Request: chat not found");
            }
            if t.blocked.contains(&chat_id) {
                return error(403, "Forbidden: bot was blocked by the user");
            }
            let parse_mode = args["parse_mode"].as_str().map(str::to_string);
            if parse_mode.as_deref() == Some("HTML") && !html_parses(text) {
                return error(
                    400,
                    "Bad Request: can't parse entities: Unsupported start tag at byte offset 0",
                );
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
                return error(400, "Bad Request: BUTTON_DATA_INVALID");
            }
            let message_id = if name == "sendMessage" {
                t.next_message_id += 1;
                t.next_message_id
            } else {
                args["message_id"].as_i64().unwrap_or_default()
            };
            t.sent.push(Sent {
                chat_id,
                message_id,
                text: text.into(),
                parse_mode,
                disable_notification: args["disable_notification"].as_bool().unwrap_or(false),
                reply_markup: args.get("reply_markup").cloned(),
            });
            ok(json!({
                "message_id": message_id,
                "from": {"id": bot_id, "is_bot": true, "first_name": "VZ Test", "username": BOT_USERNAME},
                "chat": {"id": chat_id, "type": "private"},
                "date": 1_700_000_000,
                "text": text,
            }))
        }
        _ => error(404, "Not Found: method not found"),
    }
}
