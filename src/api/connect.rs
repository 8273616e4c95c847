//! Connecting the integrations that a plain POST cannot create: Slack and
//! Gmail through OAuth (a single-use `state` bound to the user and, by a
//! cookie, to the browser that started the flow; PKCE for Google), and
//! Teller through Teller Connect (a single-use nonce and an Ed25519
//! signature, and a token that shows the enrollment's accounts).

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use model::IntegrationType;
use model::config::{DecryptedConfig, FieldValue};
use model::ids::random_secret;
use providers::gmail::GmailClient;
use providers::google::{self as oauth, OAuthConfig};
use providers::teller::{TellerClient, TellerConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{Purpose, SpentState};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Caller;
use super::body::Payload;
use super::error::ApiError;
use crate::ops::output::{IntegrationView, redacted_config};

/// How long a `state` or a nonce may wait for its callback.
const KEY_TTL: Duration = Duration::from_secs(10 * 60);
/// What the Slack app asks for: DMs to the user who connects it, and the
/// events of their messages to it (`message.im`, `app_mention`), as
/// `docs/slack-app-manifest.json` declares them.
const SLACK_SCOPES: &str = "chat:write,im:write,users:read,im:history,app_mentions:read";
/// The cookie that binds an OAuth flow to the browser that started it.
const BINDING_COOKIE: &str = "integrations_connect";
/// What the Gmail connection asks for: read, send and drafts.
const GMAIL_SCOPES: &str = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.compose";

/// The connect flows' settings, from the environment.
pub struct ConnectConfig {
    /// Where the callbacks are reachable (`PUBLIC_BASE_URL`).
    public_base_url: Option<String>,
    /// Where the browser goes after a callback (`DASHBOARD_URL`, default the
    /// Settings page).
    dashboard_url: String,
    slack_client_id: Option<String>,
    slack_client_secret: Option<Zeroizing<String>>,
    slack_authorize_url: String,
    slack_api_base: String,
    google_authorize_url: String,
    /// Base64 of Teller's raw 32-byte Ed25519 signing key.
    teller_signing_key: Option<Vec<u8>>,
    teller_environment: String,
    /// The platform's Teller application, for Teller Connect in the page.
    teller_application_id: Option<String>,
    /// Where the page loads Teller Connect's script from.
    teller_connect_url: String,
    /// Google's OAuth client and endpoints.
    google: OAuthConfig,
    /// Reads the connected mailbox's address.
    gmail: GmailClient,
    /// Checks a Teller Connect token, or why it cannot (a missing certificate).
    teller: Result<TellerClient, String>,
    http: reqwest::Client,
}

impl ConnectConfig {
    /// From `PUBLIC_BASE_URL`, `DASHBOARD_URL`, `SLACK_CLIENT_ID`,
    /// `SLACK_CLIENT_SECRET`, `SLACK_AUTHORIZE_URL`, `SLACK_API_BASE`,
    /// `GOOGLE_AUTHORIZE_URL`, `TELLER_SIGNING_PUBKEY`, `TELLER_ENVIRONMENT`,
    /// `TELLER_APPLICATION_ID`, `TELLER_CONNECT_URL`
    /// and Gmail's ([`OAuthConfig::from_env`], [`GmailClient::from_env`]).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let teller_signing_key = var("TELLER_SIGNING_PUBKEY")
            .map(|key| STANDARD.decode(key.trim()))
            .transpose()
            .map_err(|_| {
                anyhow::anyhow!(
                    "TELLER_SIGNING_PUBKEY must be the base64 of a 32-byte Ed25519 public key"
                )
            })?;
        anyhow::ensure!(
            teller_signing_key.as_ref().is_none_or(|k| k.len() == 32),
            "TELLER_SIGNING_PUBKEY must be the base64 of a 32-byte Ed25519 public key"
        );
        Ok(Self {
            public_base_url: var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
            dashboard_url: var("DASHBOARD_URL").unwrap_or_else(|| super::page::PATH.into()),
            slack_client_id: var("SLACK_CLIENT_ID"),
            slack_client_secret: var("SLACK_CLIENT_SECRET").map(Zeroizing::new),
            slack_authorize_url: var("SLACK_AUTHORIZE_URL")
                .unwrap_or_else(|| "https://slack.com/oauth/v2/authorize".into()),
            slack_api_base: var("SLACK_API_BASE")
                .unwrap_or_else(|| "https://slack.com/api".into())
                .trim_end_matches('/')
                .to_string(),
            google_authorize_url: var("GOOGLE_AUTHORIZE_URL")
                .unwrap_or_else(|| "https://accounts.google.com/o/oauth2/v2/auth".into()),
            teller_signing_key,
            teller_environment: var("TELLER_ENVIRONMENT").unwrap_or_else(|| "sandbox".into()),
            teller_application_id: var("TELLER_APPLICATION_ID"),
            teller_connect_url: teller_connect_url(var("TELLER_CONNECT_URL"))?,
            google: OAuthConfig::from_env(),
            gmail: GmailClient::from_env(),
            teller: TellerClient::new(&TellerConfig::from_env()).map_err(|e| e.to_string()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
        })
    }

    /// `PUBLIC_BASE_URL`, where providers reach this server.
    pub fn public_base_url(&self) -> Result<&str, ApiError> {
        self.public_base_url.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_CONFIGURED",
                "set PUBLIC_BASE_URL to where providers reach this server",
            )
        })
    }

    /// Whether browsers reach this server over https (`PUBLIC_BASE_URL`):
    /// its cookies are then `Secure`.
    pub fn is_https(&self) -> bool {
        self.public_base_url
            .as_deref()
            .is_some_and(|base| base.starts_with("https://"))
    }

    /// Whether the Slack OAuth flow can work here.
    pub fn slack_enabled(&self) -> bool {
        self.public_base_url.is_some()
            && self.slack_client_id.is_some()
            && self.slack_client_secret.is_some()
    }

    /// Whether the Gmail OAuth flow can work here.
    pub fn gmail_enabled(&self) -> bool {
        self.public_base_url.is_some() && self.google.client_id.is_some()
    }

    /// What Teller Connect in the page needs: the application id (none:
    /// Teller is not configured), the environment and the script's URL.
    pub fn teller_connect(&self) -> (Option<&str>, &str, &str) {
        let application = self
            .teller_application_id
            .as_deref()
            .filter(|_| self.teller.is_ok());
        (
            application,
            &self.teller_environment,
            &self.teller_connect_url,
        )
    }

    fn redirect_uri(&self, provider: &str) -> Result<String, ApiError> {
        Ok(format!(
            "{}/api/{provider}/callback",
            self.public_base_url()?
        ))
    }

    /// The `Set-Cookie` of the binding cookie for `provider`'s callback:
    /// `value` for 10 minutes, or (empty) removing it.
    fn binding_cookie(&self, provider: &str, value: &str) -> Option<HeaderValue> {
        let base = self.public_base_url.as_deref().unwrap_or_default();
        let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
        let prefix = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        let max_age = if value.is_empty() {
            0
        } else {
            KEY_TTL.as_secs()
        };
        let secure = if self.is_https() { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{BINDING_COOKIE}={value}; Path={prefix}/api/{provider}/callback; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok()
    }

    /// The dashboard with `?key=value` added.
    fn dashboard(&self, key: &str, value: &str) -> String {
        let sep = if self.dashboard_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{key}={}", self.dashboard_url, encode(value))
    }
}

/// `TELLER_CONNECT_URL`, whose script runs in the page with the session's
/// rights: fetched over https only (or from this machine, for tests).
fn teller_connect_url(configured: Option<String>) -> anyhow::Result<String> {
    let Some(url) = configured else {
        return Ok("https://cdn.teller.io/connect/connect.js".into());
    };
    let safe = reqwest::Url::parse(&url)
        .is_ok_and(|u| model::endpoint::https_or_loopback(&u) && u.has_host());
    anyhow::ensure!(
        safe,
        "TELLER_CONNECT_URL must be an https:// URL (or http:// on this machine)"
    );
    Ok(url)
}

fn encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

fn not_configured(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NOT_CONFIGURED",
        format!("{what} is not configured on this server"),
    )
}

/// `url` with the query `params` appended.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// `GET /v1/integrations/{slack,gmail}/authorize` with `Accept:
/// application/json`: where to send the browser.
#[derive(Serialize, JsonSchema)]
pub struct AuthorizeUrl {
    /// The provider's consent page, with this flow's `state`.
    pub url: String,
}

/// The answer of an authorize endpoint: `{"url"}` to a caller that accepts
/// JSON (a page's `fetch`), a redirect otherwise; the binding cookie either way.
fn authorize_answer(
    c: &ConnectConfig,
    provider: &str,
    binding: &str,
    headers: &HeaderMap,
    url: String,
) -> Response {
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    let mut response = if wants_json {
        Json(AuthorizeUrl { url }).into_response()
    } else {
        Redirect::to(&url).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = c.binding_cookie(provider, binding) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /v1/integrations/slack/authorize`: to Slack's consent page.
pub async fn slack_authorize(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = &state.connect;
    let client_id = c
        .slack_client_id
        .as_deref()
        .ok_or_else(|| not_configured("Slack (SLACK_CLIENT_ID)"))?;
    let redirect_uri = c.redirect_uri("slack")?;
    let binding = random_secret("", 32);
    let key = state
        .store
        .issue_oauth_state(
            &*state.keyring,
            &caller.0,
            Purpose::SlackState,
            &binding,
            None,
            KEY_TTL,
        )
        .await?;
    let url = with_query(
        &c.slack_authorize_url,
        &[
            ("client_id", client_id),
            ("scope", SLACK_SCOPES),
            ("redirect_uri", &redirect_uri),
            ("state", &key),
        ],
    );
    Ok(authorize_answer(c, "slack", &binding, &headers, url))
}

/// `GET /v1/integrations/gmail/authorize`: to Google's consent page, with
/// PKCE, offline access and a forced consent (so a refresh token comes back).
pub async fn gmail_authorize(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = &state.connect;
    let client_id = c
        .google
        .client_id
        .as_deref()
        .ok_or_else(|| not_configured("Gmail (GMAIL_CLIENT_ID)"))?;
    let redirect_uri = c.redirect_uri("gmail")?;
    let verifier = random_secret("", 64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let binding = random_secret("", 32);
    let key = state
        .store
        .issue_oauth_state(
            &*state.keyring,
            &caller.0,
            Purpose::GmailState,
            &binding,
            Some(&verifier),
            KEY_TTL,
        )
        .await?;
    let url = with_query(
        &c.google_authorize_url,
        &[
            ("client_id", client_id),
            ("redirect_uri", &redirect_uri),
            ("response_type", "code"),
            ("scope", GMAIL_SCOPES),
            ("state", &key),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
    );
    Ok(authorize_answer(c, "gmail", &binding, &headers, url))
}

/// What a provider sends back to a callback.
#[derive(Deserialize, JsonSchema)]
pub struct Callback {
    /// The authorization code, on consent.
    code: Option<String>,
    /// The single-use state this server issued with the redirect: required
    /// (a callback without it is refused with a page).
    #[schemars(required, length(min = 1, max = 128))]
    state: Option<String>,
    /// The provider's error code, when consent was not given.
    error: Option<String>,
}

/// A callback that failed: a readable page, and nothing written.
struct Refused {
    /// 400, or 502 when the provider could not be reached.
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refused {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
            message: message.into(),
        }
    }

    /// The provider could not be reached, or answered as a service that is
    /// down: 502, `?error=provider_unavailable`.
    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            ..Self::new("provider_unavailable", message)
        }
    }
}

/// Where the browser lands after a callback of `kind`: the dashboard with
/// `?connected=<kind>`, or a page saying why not; the binding cookie is
/// removed either way.
fn landing(c: &ConnectConfig, kind: &str, outcome: Result<(), Refused>) -> Response {
    let mut response = match outcome {
        Ok(()) => Redirect::to(&c.dashboard("connected", kind)).into_response(),
        Err(refused) => page(c, refused),
    };
    if let Some(cookie) = c.binding_cookie(kind, "") {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The binding cookie the browser brought back, if it brought exactly one.
fn binding_from(headers: &HeaderMap) -> Option<&str> {
    super::auth::only_cookie(headers, BINDING_COOKIE)
}

fn page(c: &ConnectConfig, refused: Refused) -> Response {
    let link = c.dashboard("error", refused.reason);
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connection failed</title></head>\
         <body><h1>The connection was not made</h1><p>{}</p><p><a href=\"{}\">Back to the dashboard</a></p></body></html>",
        escape(&refused.message),
        escape(&link)
    );
    (
        refused.status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

/// A spent OAuth state: whose flow it was, and its PKCE verifier.
struct Spent {
    user_id: String,
    verifier: Option<Zeroizing<String>>,
}

/// The state and code of a callback, with the state spent (once) by the
/// browser that started the flow.
async fn spend(
    state: &AppState,
    callback: &Callback,
    headers: &HeaderMap,
    purpose: Purpose,
    provider: &str,
) -> Result<(Spent, String), Refused> {
    let Some(key) = callback
        .state
        .as_deref()
        .filter(|k| !k.is_empty() && k.len() <= 128)
    else {
        return Err(Refused::new(
            "invalid_state",
            "The link is missing its state: start connecting again from the dashboard.",
        ));
    };
    let spent = state
        .store
        .spend_oauth_state(&*state.keyring, key, purpose, binding_from(headers))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read the connect state");
            Refused::new(
                "server_error",
                "The server could not check this link; try again.",
            )
        })?;
    let spent = match spent {
        SpentState::Spent { user_id, verifier } => Spent { user_id, verifier },
        SpentState::Unknown => {
            return Err(Refused::new(
                "invalid_state",
                "This link has expired, was already used, or was not issued here: start connecting again from the dashboard.",
            ));
        }
        SpentState::OtherBrowser => {
            return Err(Refused::new(
                "other_browser",
                format!(
                    "This {provider} consent was not started in this browser, so it was not connected: start connecting again from the dashboard, in the browser you use it in."
                ),
            ));
        }
    };
    if let Some(error) = &callback.error {
        let message = if error == "access_denied" {
            format!("{provider} access was not granted.")
        } else {
            format!(
                "{provider} reported an error ({}).",
                error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect::<String>()
            )
        };
        return Err(Refused::new("access_denied", message));
    }
    let code = callback
        .code
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Refused::new(
                "invalid_request",
                format!("{provider} sent no authorization code."),
            )
        })?;
    Ok((spent, code))
}

/// `GET /api/slack/callback`.
pub async fn slack_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let outcome = slack_connect(&state, &callback, &headers).await;
    landing(&state.connect, "slack", outcome)
}

/// Slack's `oauth.v2.access` answer; its token goes straight into a
/// zeroizing buffer, and fields not named here are never kept.
#[derive(Deserialize)]
struct SlackAccess {
    #[serde(default)]
    ok: bool,
    error: Option<String>,
    access_token: Option<Zeroizing<String>>,
    bot_user_id: Option<String>,
    team: Option<SlackTeam>,
    authed_user: Option<SlackUser>,
}

#[derive(Deserialize)]
struct SlackTeam {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: Option<String>,
}

async fn slack_connect(
    state: &AppState,
    callback: &Callback,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    let (spent, code) = spend(state, callback, headers, Purpose::SlackState, "Slack").await?;
    let c = &state.connect;
    let (Some(client_id), Some(client_secret)) = (&c.slack_client_id, &c.slack_client_secret)
    else {
        return Err(Refused::new(
            "server_error",
            "Slack is not configured on this server.",
        ));
    };
    let redirect_uri = c
        .redirect_uri("slack")
        .map_err(|e| Refused::new("server_error", e.message))?;
    let unreachable = |_| Refused::unavailable("Slack could not be reached; try again.");
    let access: SlackAccess = c
        .http
        .post(format!("{}/oauth.v2.access", c.slack_api_base))
        .form(&[
            ("code", code.as_str()),
            ("redirect_uri", &redirect_uri),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ])
        .send()
        .await
        .map_err(unreachable)?
        .json()
        .await
        .map_err(unreachable)?;
    let (true, Some(token)) = (access.ok, &access.access_token) else {
        return Err(Refused::new(
            "provider_error",
            format!(
                "Slack refused the connection ({}).",
                slack_error(access.error.as_deref())
            ),
        ));
    };
    let checked: Value = c
        .http
        .post(format!("{}/auth.test", c.slack_api_base))
        .bearer_auth(token.as_str())
        .send()
        .await
        .map_err(unreachable)?
        .json()
        .await
        .map_err(unreachable)?;
    if checked["ok"].as_bool() != Some(true) {
        return Err(Refused::new(
            "provider_error",
            format!(
                "Slack did not accept the new token ({}).",
                slack_error(checked["error"].as_str())
            ),
        ));
    }
    let team = access.team.as_ref();
    let fields = [
        ("bot_token", Some(token.as_str())),
        (
            "team_id",
            team.and_then(|t| t.id.as_deref())
                .or(checked["team_id"].as_str()),
        ),
        (
            "team_name",
            team.and_then(|t| t.name.as_deref())
                .or(checked["team"].as_str()),
        ),
        ("bot_user_id", access.bot_user_id.as_deref()),
        (
            "authed_user_id",
            access.authed_user.as_ref().and_then(|u| u.id.as_deref()),
        ),
    ]
    .map(|(name, value)| (name, value.map(FieldValue::Text)));
    connect(state, &spent.user_id, IntegrationType::Slack, &fields).await?;
    Ok(())
}

/// A provider's error code, bounded (or that none was given).
fn slack_error(code: Option<&str>) -> String {
    code.unwrap_or("no reason given").chars().take(64).collect()
}

/// Why a provider's grant was not stored.
enum NotStored {
    /// The provider's answer lacks what the config needs.
    Incomplete(String),
    /// The account is another user's.
    Conflict(String),
    /// The store failed (logged).
    Failed,
}

impl From<NotStored> for Refused {
    fn from(e: NotStored) -> Self {
        match e {
            NotStored::Incomplete(m) => Refused::new("provider_error", m),
            NotStored::Conflict(m) => Refused::new("conflict", m),
            NotStored::Failed => Refused::new(
                "server_error",
                "The connection could not be saved; try again.",
            ),
        }
    }
}

/// Validates and stores a connected account's config of `fields` (those
/// the provider did not give are left out) for `user_id`.
async fn connect(
    state: &AppState,
    user_id: &str,
    kind: IntegrationType,
    fields: &[(&str, Option<FieldValue<'_>>)],
) -> Result<(model::Integration, bool), NotStored> {
    let given: Vec<(&str, FieldValue)> = fields
        .iter()
        .filter_map(|(name, value)| Some((*name, value.clone()?)))
        .collect();
    let valid = DecryptedConfig::from_fields(kind, &given).map_err(|e| {
        NotStored::Incomplete(format!("The provider's answer was incomplete: {e}."))
    })?;
    state
        .store
        .connect_integration(&*state.keyring, user_id, kind, &valid)
        .await
        .map_err(|e| match e {
            store::StoreError::Conflict(m) => NotStored::Conflict(m),
            other => {
                tracing::error!(error = %other, "could not store a connected integration");
                NotStored::Failed
            }
        })
}

/// `GET /api/gmail/callback`.
pub async fn gmail_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let outcome = gmail_connect(&state, &callback, &headers).await;
    landing(&state.connect, "gmail", outcome)
}

async fn gmail_connect(
    state: &AppState,
    callback: &Callback,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    let (spent, code) = spend(state, callback, headers, Purpose::GmailState, "Google").await?;
    let verifier = spent
        .verifier
        .ok_or_else(|| Refused::new("invalid_state", "This link was not issued for Gmail."))?;
    let redirect_uri = state
        .connect
        .redirect_uri("gmail")
        .map_err(|e| Refused::new("server_error", e.message))?;
    let consent = oauth::exchange_code(
        &state.connect.http,
        &state.connect.google,
        &code,
        &verifier,
        &redirect_uri,
    )
    .await
    .map_err(|e| {
        let message = format!("Google did not complete the connection: {e}.");
        if e.is_unavailable() {
            Refused::unavailable(message)
        } else {
            Refused::new("provider_error", message)
        }
    })?;
    let Some(refresh_token) = consent.refresh_token else {
        return Err(Refused::new(
            "no_refresh_token",
            "Google did not hand out a lasting grant, because this app already had access: remove the app's access at https://myaccount.google.com/permissions, then connect Gmail again.",
        ));
    };
    let token = std::sync::Arc::new(consent.access_token);
    let profile = state.connect.gmail.profile(&token).await.map_err(|e| {
        let message = format!("Gmail did not answer for the new grant: {e}.");
        if e.is_unavailable() {
            Refused::unavailable(message)
        } else {
            Refused::new("provider_error", message)
        }
    })?;
    let scopes: Vec<Value> = consent.scope.split_whitespace().map(Value::from).collect();
    let fields = [
        (
            "email",
            profile.email_address.as_deref().map(FieldValue::Text),
        ),
        ("refresh_token", Some(FieldValue::Text(&refresh_token))),
        ("scopes", Some(FieldValue::Json(scopes.into()))),
        ("access_token", Some(FieldValue::Text(&token))),
        (
            "expires_at",
            Some((model::clock::unix_now() + consent.expires_in).into()),
        ),
    ];
    connect(state, &spent.user_id, IntegrationType::Gmail, &fields).await?;
    Ok(())
}

/// `POST /v1/integrations/teller/nonce`.
#[derive(Serialize, JsonSchema)]
pub struct Nonce {
    /// Pass to Teller Connect; it signs it back; single-use, 10 minutes.
    pub nonce: String,
}

pub async fn teller_nonce(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Nonce>), ApiError> {
    let nonce = state
        .store
        .issue_connect_key(&caller.0, Purpose::TellerNonce, None, KEY_TTL)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Nonce {
            nonce: nonce.to_string(),
        }),
    ))
}

/// `POST /v1/integrations/teller/callback`: Teller Connect's `onSuccess`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TellerEnrollment {
    #[schemars(with = "String")]
    pub access_token: Zeroizing<String>,
    pub user: TellerUser,
    pub enrollment: TellerEnrollmentInfo,
    /// Base64 Ed25519 signatures over `<nonce>.<accessToken>.<userId>.<enrollmentId>.<environment>`.
    #[serde(default)]
    pub signatures: Vec<String>,
    /// The nonce from `POST /v1/integrations/teller/nonce` given to Teller Connect.
    pub nonce: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerUser {
    pub id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerEnrollmentInfo {
    pub id: String,
    pub institution: TellerInstitution,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerInstitution {
    pub id: Option<String>,
    pub name: String,
}

pub async fn teller_callback(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<TellerEnrollment>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let c = &state.connect;
    if let Some(key) = &c.teller_signing_key {
        let nonce = body
            .nonce
            .as_deref()
            .ok_or_else(|| unsigned("the nonce is missing"))?;
        // It holds the access token: a zeroizing buffer.
        let message = Zeroizing::new(format!(
            "{nonce}.{}.{}.{}.{}",
            body.access_token.as_str(),
            body.user.id,
            body.enrollment.id,
            c.teller_environment
        ));
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
        let signed = body.signatures.iter().any(|s| {
            STANDARD
                .decode(s.trim())
                .is_ok_and(|sig| public.verify(message.as_bytes(), &sig).is_ok())
        });
        if !signed {
            return Err(unsigned("no signature verifies"));
        }
        let spent = state
            .store
            .spend_connect_key(nonce, Purpose::TellerNonce)
            .await?;
        if spent.is_none_or(|s| s.user_id != caller.0) {
            return Err(unsigned(
                "the nonce was not issued to you, expired, or was used",
            ));
        }
    }
    let client = c.teller.as_ref().map_err(ApiError::internal)?;
    let accounts = client.accounts(&body.access_token).await.map_err(|e| {
        if e.is_unavailable() {
            ApiError::provider_unavailable(format!(
                "Teller could not be reached ({e}); try again later"
            ))
        } else {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DELIVERY_FAILED",
                format!("Teller did not accept the enrollment's access token: {e}"),
            )
        }
    })?;
    // The token must prove the enrollment: it shows at least one of its
    // accounts and none of another's. A token that sees nothing proves
    // nothing, and would let anyone claim someone else's enrollment id.
    if accounts.is_empty()
        || accounts
            .iter()
            .any(|a| a.enrollment_id != body.enrollment.id)
    {
        return Err(ApiError::invalid(
            "the access token does not belong to that enrollment (Teller shows none of its accounts for it)",
        ));
    }
    let fields = [
        ("enrollment_id", Some(FieldValue::Text(&body.enrollment.id))),
        ("access_token", Some(FieldValue::Text(&body.access_token))),
        (
            "institution_name",
            Some(FieldValue::Text(&body.enrollment.institution.name)),
        ),
        (
            "institution_id",
            body.enrollment
                .institution
                .id
                .as_deref()
                .map(FieldValue::Text),
        ),
    ];
    let (row, created) = connect(&state, &caller.0, IntegrationType::Teller, &fields)
        .await
        .map_err(|e| match e {
            NotStored::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", m),
            NotStored::Incomplete(m) => ApiError::invalid(m),
            NotStored::Failed => ApiError::internal("the enrollment could not be stored"),
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IntegrationView::new(
            &row,
            redacted_config(&state.keyring, &row),
        )),
    ))
}

fn unsigned(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        format!("the Teller Connect enrollment is not signed for this server: {why}"),
    )
}
