//! Connecting the integrations that a plain POST cannot create: Slack
//! (`slack`) and Gmail (`gmail`) through OAuth (a single-use `state` bound to
//! the user and, by a cookie, to the browser that started the flow; PKCE for
//! Google), and Teller (`teller`) through Teller Connect (a single-use nonce
//! and an Ed25519 signature, and a token that shows the enrollment's
//! accounts). What the flows share is here: the settings, the OAuth state
//! and its binding cookie, the landing page, and storing a grant.

pub mod gmail;
pub mod slack;
pub mod teller;

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use model::IntegrationType;
use model::config::{DecryptedConfig, FieldValue};
use providers::gmail::GmailClient;
use providers::google::OAuthConfig;
use providers::slack::SlackClient;
use providers::teller::{TellerClient, TellerConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::{Purpose, SpentState};
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;

/// How long a `state` or a nonce may wait for its callback.
const KEY_TTL: Duration = Duration::from_secs(10 * 60);
/// The cookie that binds an OAuth flow to the browser that started it.
const BINDING_COOKIE: &str = "integrations_connect";

/// The connect flows' settings, from the environment.
pub struct ConnectConfig {
    /// Where the callbacks are reachable (`PUBLIC_BASE_URL`).
    public_base_url: Option<String>,
    /// Where the browser goes after a callback (`DASHBOARD_URL`, default the
    /// Settings page).
    dashboard_url: String,
    slack_client_id: Option<String>,
    slack_client_secret: Option<Zeroizing<String>>,
    /// Slack's consent page.
    slack_authorize_url: String,
    /// Exchanges a Slack consent for the app's token, and checks it.
    slack: SlackClient,
    /// Base64 of Teller's raw 32-byte Ed25519 signing key.
    teller_signing_key: Option<Vec<u8>>,
    teller_environment: String,
    /// The platform's Teller application, for Teller Connect in the page.
    teller_application_id: Option<String>,
    /// Where the page loads Teller Connect's script from.
    teller_connect_url: String,
    /// Google's OAuth client and endpoints, its consent page included.
    google: OAuthConfig,
    /// Reads the connected mailbox's address.
    gmail: GmailClient,
    /// Checks a Teller Connect token, or why it cannot (a missing certificate).
    teller: Result<TellerClient, String>,
    http: reqwest::Client,
}

impl ConnectConfig {
    /// From `PUBLIC_BASE_URL`, `DASHBOARD_URL`, `SLACK_CLIENT_ID`,
    /// `SLACK_CLIENT_SECRET`, `TELLER_SIGNING_PUBKEY`, `TELLER_ENVIRONMENT`,
    /// `TELLER_APPLICATION_ID`, and the providers' clients' settings
    /// (`SLACK_AUTHORIZE_URL`, `SLACK_API_BASE`, `TELLER_CONNECT_URL`,
    /// [`OAuthConfig::from_env`], [`GmailClient::from_env`]).
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            public_base_url: var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
            dashboard_url: var("DASHBOARD_URL").unwrap_or_else(|| super::page::PATH.into()),
            slack_client_id: var("SLACK_CLIENT_ID"),
            slack_client_secret: var("SLACK_CLIENT_SECRET").map(Zeroizing::new),
            slack_authorize_url: providers::slack::authorize_url_from_env(),
            slack: SlackClient::from_env(http.clone()),
            teller_signing_key,
            teller_environment: var("TELLER_ENVIRONMENT").unwrap_or_else(|| "sandbox".into()),
            teller_application_id: var("TELLER_APPLICATION_ID"),
            teller_connect_url: providers::teller::connect_url_from_env()?,
            google: OAuthConfig::from_env(),
            gmail: GmailClient::from_env(),
            teller: TellerClient::new(&TellerConfig::from_env()).map_err(|e| e.to_string()),
            http,
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
