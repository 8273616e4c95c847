//! The Slack Web API client: `POST <SLACK_API_BASE>/<method>` with the
//! bot's token as a bearer, Slack's `{"ok": false, "error": "<code>"}`
//! refusals and its 429s mapped to [`SlackError`]. One call is one request:
//! whether a failed call may be sent again is the caller's to decide.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::http::{NoAnswer, base_url, env_url, retry_after};

const API_BASE: &str = "https://slack.com/api";
const AUTHORIZE_URL: &str = "https://slack.com/oauth/v2/authorize";

/// Slack's consent page for an app (`SLACK_AUTHORIZE_URL`, default
/// Slack's), where a user installs it.
pub fn authorize_url_from_env() -> String {
    env_url("SLACK_AUTHORIZE_URL", AUTHORIZE_URL)
}

/// Why a Web API call did not succeed. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// No answer came (nothing was sent if [`NoAnswer::is_connect`]).
    #[error("Slack {0}")]
    NoAnswer(NoAnswer),
    /// HTTP 429, with the wait Slack asked for.
    #[error("Slack is rate limiting (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx, with the wait Slack asked for, if any.
    #[error("Slack is failing ({status})")]
    Failing {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// An answer that is not the JSON Slack sends.
    #[error("Slack answered {status} with a body that is not JSON")]
    Unreadable { status: StatusCode },
    /// `{"ok": false}`, with its `error` code if it gave one.
    #[error("Slack refused the call ({})", code.as_deref().unwrap_or("no reason given"))]
    Refused { code: Option<String> },
}

/// What `oauth.v2.access` hands out for a user's consent; the token goes
/// straight into a zeroizing buffer, and fields not named here are never
/// kept.
#[derive(Deserialize)]
pub struct Access {
    pub access_token: Zeroizing<String>,
    pub bot_user_id: Option<String>,
    pub team: Option<Team>,
    pub authed_user: Option<AuthedUser>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Access(<redacted>, bot_user_id={:?})", self.bot_user_id)
    }
}

/// The workspace an app was installed in.
#[derive(Debug, Deserialize)]
pub struct Team {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// The user who installed the app.
#[derive(Debug, Deserialize)]
pub struct AuthedUser {
    pub id: Option<String>,
}

/// `oauth.v2.access`'s answer as read: `ok` and `error` beside the grant.
#[derive(Deserialize)]
struct AccessAnswer {
    #[serde(default)]
    ok: bool,
    error: Option<String>,
    access_token: Option<Zeroizing<String>>,
    bot_user_id: Option<String>,
    team: Option<Team>,
    authed_user: Option<AuthedUser>,
}

/// A Slack Web API client; cheap to clone.
#[derive(Debug, Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
}

impl SlackClient {
    /// A client for `SLACK_API_BASE` (default Slack's) over `http`, whose
    /// settings (timeout, user agent) every call takes.
    pub fn from_env(http: reqwest::Client) -> Self {
        Self {
            http,
            base: base_url("SLACK_API_BASE", API_BASE),
        }
    }

    /// Calls `method` as `token` with the JSON `body`: Slack's answer, `ok`
    /// included.
    pub async fn call(&self, token: &str, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self.request(method).bearer_auth(token).json(body);
        judged(answer(request).await?)
    }

    /// `auth.test` as `token`, without a body: who the token is.
    pub async fn auth_test(&self, token: &str) -> Result<Value, SlackError> {
        judged(answer(self.request("auth.test").bearer_auth(token)).await?)
    }

    /// `oauth.v2.access`: exchanges a consent's `code` (with the
    /// `redirect_uri` it was sent to) for the app's grant.
    pub async fn oauth_access(
        &self,
        client_id: &str,
        client_secret: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Access, SlackError> {
        let request = self.request("oauth.v2.access").form(&[
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ]);
        let (status, bytes) = answer(request).await?;
        let answer: AccessAnswer =
            serde_json::from_slice(&bytes).map_err(|_| SlackError::Unreadable { status })?;
        match (answer.ok, answer.access_token) {
            (true, Some(access_token)) => Ok(Access {
                access_token,
                bot_user_id: answer.bot_user_id,
                team: answer.team,
                authed_user: answer.authed_user,
            }),
            _ => Err(SlackError::Refused { code: answer.error }),
        }
    }

    fn request(&self, method: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/{method}", self.base))
    }
}

/// Sends `request`: the status and body of an answer that is neither a 429
/// nor a 5xx.
async fn answer(request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), SlackError> {
    let response = request
        .send()
        .await
        .map_err(|e| SlackError::NoAnswer(e.into()))?;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(SlackError::RateLimited {
            retry_after: retry_after(response.headers()),
        });
    }
    if status.is_server_error() {
        return Err(SlackError::Failing {
            status,
            retry_after: retry_after(response.headers()),
        });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|_| SlackError::Unreadable { status })?;
    Ok((status, bytes.to_vec()))
}

/// An answer's JSON when `ok` is true, else Slack's refusal.
fn judged((status, bytes): (StatusCode, Vec<u8>)) -> Result<Value, SlackError> {
    let answer: Value =
        serde_json::from_slice(&bytes).map_err(|_| SlackError::Unreadable { status })?;
    if answer["ok"] == true {
        Ok(answer)
    } else {
        Err(SlackError::Refused {
            code: answer["error"].as_str().map(str::to_string),
        })
    }
}
