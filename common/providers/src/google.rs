//! Google OAuth over reqwest, for Gmail's grants: refreshing an access token and revoking a
//! grant, against `GOOGLE_TOKEN_URL` and `GOOGLE_REVOKE_URL`.

use std::time::Duration;

use model::clock::unix_now;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::env_url;

const AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";

/// An access token is refreshed this long before Google says it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Where and as whom we talk to Google's OAuth endpoints.
pub struct OAuthConfig {
    /// The consent page a user is sent to.
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl OAuthConfig {
    /// From `GOOGLE_AUTHORIZE_URL`, `GOOGLE_TOKEN_URL`, `GOOGLE_REVOKE_URL`,
    /// `GMAIL_CLIENT_ID` and `GMAIL_CLIENT_SECRET`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            authorize_url: env_url("GOOGLE_AUTHORIZE_URL", AUTHORIZE_URL),
            token_url: var("GOOGLE_TOKEN_URL").unwrap_or_else(|| TOKEN_URL.into()),
            revoke_url: var("GOOGLE_REVOKE_URL").unwrap_or_else(|| REVOKE_URL.into()),
            client_id: var("GMAIL_CLIENT_ID"),
            client_secret: var("GMAIL_CLIENT_SECRET").map(Zeroizing::new),
        }
    }
}

/// A fresh access token and when it expires (unix seconds).
pub struct Grant {
    pub access_token: Zeroizing<String>,
    pub expires_at: i64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grant(<redacted>, expires_at={})", self.expires_at)
    }
}

/// Why Google did not hand out or revoke a token. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("Google says the grant is expired or revoked (invalid_grant)")]
    InvalidGrant,
    #[error("{0}")]
    Misconfigured(String),
    #[error("Google's OAuth endpoint refused the request ({0})")]
    Refused(String),
    #[error("Google's OAuth endpoint answered HTTP {0}")]
    Upstream(u16),
    #[error("Google's OAuth endpoint did not answer in time")]
    Timeout,
    #[error("Google's OAuth endpoint could not be reached: {0}")]
    Connect(String),
    #[error("Google's OAuth endpoint sent a response that could not be read")]
    BadResponse,
}

impl OAuthError {
    /// Whether Google could not be reached or answered as a service that is
    /// down (rather than refusing the request).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Upstream(status) => *status >= 500 || *status == 429,
            other => matches!(other, Self::Timeout | Self::Connect(_) | Self::BadResponse),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Zeroizing<String>,
    expires_in: i64,
}

/// What a user's consent gave: the grant itself (a refresh token, which
/// Google omits when the app already holds one), a first access token, and
/// the scopes granted.
#[derive(Deserialize)]
pub struct Consent {
    pub refresh_token: Option<Zeroizing<String>>,
    pub access_token: Zeroizing<String>,
    pub expires_in: i64,
    #[serde(default)]
    pub scope: String,
}

impl std::fmt::Debug for Consent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Consent(<redacted>, scope={:?})", self.scope)
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// Whether a token expiring at `expires_at` is still good to use now.
pub fn is_fresh(expires_at: i64) -> bool {
    expires_at - EXPIRY_MARGIN.as_secs() as i64 > unix_now()
}

/// Exchanges `refresh_token` for a new access token.
pub async fn refresh(
    http: &reqwest::Client,
    config: &OAuthConfig,
    refresh_token: &str,
) -> Result<Grant, OAuthError> {
    let token: TokenResponse = grant(
        http,
        config,
        &[
            ("refresh_token", refresh_token),
            ("grant_type", "refresh_token"),
        ],
    )
    .await?;
    Ok(Grant {
        access_token: token.access_token,
        expires_at: unix_now() + token.expires_in,
    })
}

/// Exchanges an authorization `code` with its PKCE `verifier` at the token
/// endpoint (`redirect_uri` as sent to the authorize page).
pub async fn exchange_code(
    http: &reqwest::Client,
    config: &OAuthConfig,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Consent, OAuthError> {
    let fields = [
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", redirect_uri),
        ("grant_type", "authorization_code"),
    ];
    grant(http, config, &fields).await
}

/// One grant at the token endpoint: the client's credentials and `fields`.
async fn grant<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    config: &OAuthConfig,
    fields: &[(&str, &str)],
) -> Result<T, OAuthError> {
    let (client_id, client_secret) = client(config)?;
    let mut form = vec![("client_id", client_id), ("client_secret", client_secret)];
    form.extend_from_slice(fields);
    let response = http
        .post(&config.token_url)
        .form(&form)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?;
    if status == 200 {
        return serde_json::from_slice(&body).map_err(|_| OAuthError::BadResponse);
    }
    Err(token_error(status, &body))
}

fn client(config: &OAuthConfig) -> Result<(&str, &str), OAuthError> {
    match (&config.client_id, &config.client_secret) {
        (Some(id), Some(secret)) => Ok((id.as_str(), secret.as_str())),
        _ => Err(OAuthError::Misconfigured(
            "set GMAIL_CLIENT_ID and GMAIL_CLIENT_SECRET".into(),
        )),
    }
}

/// A token endpoint's refusal.
fn token_error(status: u16, body: &[u8]) -> OAuthError {
    let code = serde_json::from_slice::<ErrorResponse>(body).map(|e| e.error);
    match (status, code.as_deref()) {
        (400, Ok("invalid_grant")) => OAuthError::InvalidGrant,
        (401, Ok("invalid_client" | "unauthorized_client")) => OAuthError::Misconfigured(
            "Google refused the OAuth client; check GMAIL_CLIENT_ID and GMAIL_CLIENT_SECRET".into(),
        ),
        (400..=499, Ok(code)) => OAuthError::Refused(bounded(code)),
        _ => OAuthError::Upstream(status),
    }
}

/// Revokes `token` (the refresh token revokes the whole grant): `Ok(true)`
/// when Google revoked it, `Ok(false)` when it was already dead.
pub async fn revoke(
    http: &reqwest::Client,
    config: &OAuthConfig,
    token: &str,
) -> Result<bool, OAuthError> {
    let response = http
        .post(&config.revoke_url)
        .form(&[("token", token)])
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?;
    let code = serde_json::from_slice::<ErrorResponse>(&body).map(|e| e.error);
    match (status, code.as_deref()) {
        (200, _) => Ok(true),
        (400, Ok("invalid_token" | "invalid_grant")) => Ok(false),
        (400..=499, Ok(code)) => Err(OAuthError::Refused(bounded(code))),
        _ => Err(OAuthError::Upstream(status)),
    }
}

/// An HTTP client for the OAuth endpoints, with `timeout` per request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, OAuthError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("mcp-gmail/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OAuthError::Misconfigured(format!("the HTTP client could not be built: {e}")))
}

fn transport(e: reqwest::Error) -> OAuthError {
    if e.is_timeout() {
        OAuthError::Timeout
    } else {
        OAuthError::Connect(e.without_url().to_string())
    }
}

/// An error code from Google, kept short and printable.
fn bounded(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}
