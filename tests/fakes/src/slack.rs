//! A fake Slack Web API: `conversations.open`, `chat.postMessage`,
//! `auth.test`, `auth.revoke` and `oauth.v2.access`, with Bearer tokens and
//! Slack's `{"ok": false, "error": ...}` answers (HTTP 200); and Slack's
//! Events API, delivering events to an app's Request URL ([`events`]).

pub mod events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::faults::{self, Faults};
use crate::http::{Served, serve};

/// A bot token the fake accepts.
pub const SLACK_TOKEN: &str = "xoxb-test-token";
/// The workspace of [`SLACK_TOKEN`].
pub const TEAM_ID: &str = "T0TEST";
/// The user who installed the app: where DMs go.
pub const USER_ID: &str = "U0OWNER";
/// The OAuth code that `oauth.v2.access` exchanges for [`SLACK_TOKEN`].
pub const OAUTH_CODE: &str = "slack-code-ok";
/// The app's bot user in [`TEAM_ID`].
pub const BOT_USER_ID: &str = "U0BOT";
/// The app's bot.
pub const BOT_ID: &str = "B0TEST";

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub text: String,
    /// Its `ts`, the message's id in its channel.
    pub ts: String,
    /// The thread it was posted in, if any.
    pub thread_ts: Option<String>,
    /// The request's `attachments` (colour bars), if any.
    pub attachments: Option<Value>,
}

#[derive(Default)]
struct Workspace {
    /// token → revoked or why it is dead.
    tokens: HashMap<String, Option<&'static str>>,
    posted: Vec<Posted>,
    next_ts: u64,
    /// Where events go, once set ([`FakeSlack::set_request_url`]).
    request_url: Option<String>,
    next_event: u64,
}

type Shared = Arc<Mutex<Workspace>>;

/// A running fake Slack on loopback.
pub struct FakeSlack {
    served: Served,
    workspace: Shared,
    faults: Faults,
    /// What delivers events: no redirects, Slack's 3 seconds.
    client: reqwest::Client,
}

impl FakeSlack {
    pub async fn start() -> anyhow::Result<Self> {
        let workspace = Shared::default();
        workspace
            .lock()
            .unwrap()
            .tokens
            .insert(SLACK_TOKEN.into(), None);
        let faults = Faults::default();
        let app = Router::new()
            .route("/api/{method}", post(method))
            .with_state(workspace.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                faults::layer,
            ));
        Ok(Self {
            served: serve(app).await?,
            workspace,
            faults,
            client: events::client()?,
        })
    }

    /// Where to point `SLACK_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.served.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The messages posted so far, oldest first.
    pub fn posted(&self) -> Vec<Posted> {
        self.workspace.lock().unwrap().posted.clone()
    }

    /// Makes `token` answer `error` (`token_revoked`, `account_inactive`...).
    pub fn kill_token(&self, token: &str, error: &'static str) {
        self.workspace
            .lock()
            .unwrap()
            .tokens
            .insert(token.into(), Some(error));
    }

    /// Whether `token` was revoked through `auth.revoke`.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.workspace.lock().unwrap().tokens.get(token) == Some(&Some("token_revoked"))
    }
}

fn fail(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

/// Slack takes JSON or form bodies.
fn arguments(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let pairs: HashMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
        Some(json!(pairs))
    } else if body.is_empty() {
        Some(json!({}))
    } else {
        serde_json::from_slice(body).ok()
    }
}

async fn method(
    State(workspace): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(args) = arguments(&headers, &body) else {
        return fail("invalid_json");
    };
    if name == "oauth.v2.access" {
        return if args["code"] == OAUTH_CODE {
            axum::Json(json!({
                "ok": true, "access_token": SLACK_TOKEN, "token_type": "bot",
                "bot_user_id": BOT_USER_ID, "app_id": "A0TEST",
                "team": {"id": TEAM_ID, "name": "Test Workspace"},
                "authed_user": {"id": USER_ID},
            }))
            .into_response()
        } else {
            fail("invalid_code")
        };
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut ws = workspace.lock().unwrap();
    match token.as_deref().map(|t| ws.tokens.get(t)) {
        None => return fail("not_authed"),
        Some(None) => return fail("invalid_auth"),
        Some(Some(Some(dead))) => return fail(dead),
        Some(Some(None)) => {}
    }
    let token = token.unwrap_or_default();
    match name.as_str() {
        "auth.test" => axum::Json(json!({
            "ok": true, "url": "https://test.slack.com/", "team": "Test Workspace",
            "user": "notifier", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
        }))
        .into_response(),
        "auth.revoke" => {
            ws.tokens.insert(token, Some("token_revoked"));
            axum::Json(json!({"ok": true, "revoked": true})).into_response()
        }
        "conversations.open" => match args["users"].as_str() {
            Some(user) if user.starts_with('U') => {
                axum::Json(json!({"ok": true, "channel": {"id": format!("D{}", &user[1..])}}))
                    .into_response()
            }
            Some(_) => fail("user_not_found"),
            None => fail("invalid_arguments"),
        },
        "chat.postMessage" => {
            let (Some(channel), Some(text)) = (args["channel"].as_str(), args["text"].as_str())
            else {
                return fail("no_text");
            };
            // The bot's direct messages, or a channel it was mentioned in.
            if !channel.starts_with('D') && !channel.starts_with('C') {
                return fail("channel_not_found");
            }
            if text.chars().count() > 40_000 {
                return fail("msg_too_long");
            }
            ws.next_ts += 1;
            let ts = format!("1700000000.{:06}", ws.next_ts);
            ws.posted.push(Posted {
                channel: channel.into(),
                text: text.into(),
                ts: ts.clone(),
                thread_ts: args["thread_ts"].as_str().map(str::to_string),
                attachments: args.get("attachments").cloned(),
            });
            axum::Json(json!({
                "ok": true, "channel": channel, "ts": ts,
                "message": {"type": "message", "text": text, "ts": ts},
            }))
            .into_response()
        }
        _ => fail("unknown_method"),
    }
}
