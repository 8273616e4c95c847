//! The Teller API client: HTTP Basic with the enrollment's access token,
//! mutual TLS with the platform's certificate, Teller's error shape mapped to
//! [`TellerError`], and bounded retries on 429 inside the call's deadline.

use std::time::{Duration, Instant};

use model::retry::Backoff;

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::http::{env_url, retry_after};

/// Where and how to reach Teller, from the environment.
#[derive(Debug, Clone)]
pub struct TellerConfig {
    /// `TELLER_API_BASE`, default `https://api.teller.io`.
    pub base: String,
    /// `TELLER_ENVIRONMENT`: `sandbox` (default), `development` or `production`.
    pub environment: String,
    /// `TELLER_CERT_PATH` and `TELLER_KEY_PATH`: the client identity (PEM).
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
    /// `TELLER_CA_PATH`: an extra CA to trust (private deployments, tests).
    pub ca_path: Option<String>,
    /// `TELLER_TIMEOUT_MS`, default 20 s: one call, its retries and their
    /// waits included.
    pub timeout: Duration,
}

impl TellerConfig {
    /// Reads the `TELLER_*` variables.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            base: var("TELLER_API_BASE").unwrap_or_else(|| "https://api.teller.io".into()),
            environment: var("TELLER_ENVIRONMENT").unwrap_or_else(|| "sandbox".into()),
            cert_path: var("TELLER_CERT_PATH"),
            key_path: var("TELLER_KEY_PATH"),
            ca_path: var("TELLER_CA_PATH"),
            timeout: Duration::from_millis(
                var("TELLER_TIMEOUT_MS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(20_000),
            ),
        }
    }
}

/// A `TELLER_CONNECT_URL` the page may not load a script from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("TELLER_CONNECT_URL must be an https:// URL (or http:// on this machine)")]
pub struct UnsafeConnectUrl;

/// Where the page loads Teller Connect's script from: `TELLER_CONNECT_URL`,
/// default Teller's. The script runs in the page with the session's
/// rights, so it is fetched over https only (or from this machine, for
/// tests).
pub fn connect_url_from_env() -> Result<String, UnsafeConnectUrl> {
    let url = env_url(
        "TELLER_CONNECT_URL",
        "https://cdn.teller.io/connect/connect.js",
    );
    let safe = reqwest::Url::parse(&url)
        .is_ok_and(|u| model::endpoint::https_or_loopback(&u) && u.has_host());
    if safe { Ok(url) } else { Err(UnsafeConnectUrl) }
}

/// What went wrong talking to Teller. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TellerError {
    #[error("Teller is not configured: {0}")]
    Config(String),
    #[error("could not reach Teller: {0}")]
    Connect(String),
    #[error("Teller did not answer in time")]
    Timeout,
    #[error("Teller is rate limiting requests")]
    RateLimited { retry_after: Option<u64> },
    /// 401/403: the access token is invalid or revoked.
    #[error("Teller refused the access token ({status})")]
    Unauthorized { status: u16 },
    /// 404 `enrollment.disconnected...`: the user must reconnect the bank.
    #[error("the enrollment is disconnected ({code})")]
    Disconnected { code: String },
    #[error("not found")]
    NotFound,
    /// 410 `account.closed`.
    #[error("the account is closed")]
    Closed,
    #[error("Teller rejected the request: {code}")]
    BadRequest { code: String },
    /// 5xx: the bank or Teller is not answering.
    #[error("Teller returned {status}")]
    Upstream { status: u16 },
    #[error("Teller sent a response that could not be read")]
    BadResponse,
}

impl TellerError {
    /// Whether Teller could not be reached or answered as a service that is
    /// down (rather than refusing the request).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Connect(_)
                | Self::Timeout
                | Self::RateLimited { .. }
                | Self::Upstream { .. }
                | Self::BadResponse
        )
    }
}

/// A Teller account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub id: String,
    pub enrollment_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: String,
    pub status: String,
    pub currency: String,
    pub last_four: String,
    pub institution: Institution,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Institution {
    pub id: String,
    pub name: String,
}

/// Balances as Teller sends them: exact decimal strings.
#[derive(Debug, Clone, Deserialize)]
pub struct Balance {
    pub account_id: String,
    pub ledger: Option<String>,
    pub available: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    pub id: String,
    pub amount: String,
    pub date: String,
    pub description: String,
    pub status: String,
    pub running_balance: Option<String>,
    #[serde(default)]
    pub details: TransactionDetails,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TransactionDetails {
    pub category: Option<String>,
    pub counterparty: Option<Counterparty>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Counterparty {
    pub name: Option<String>,
}

/// Account and routing numbers: sensitive.
#[derive(Deserialize)]
pub struct Details {
    pub account_id: String,
    pub account_number: String,
    pub routing_numbers: RoutingNumbers,
}

impl std::fmt::Debug for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Details({}, <redacted>)", self.account_id)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoutingNumbers {
    pub ach: Option<String>,
    pub wire: Option<String>,
}

/// Filters for a transactions page.
#[derive(Debug, Clone, Default)]
pub struct TransactionQuery {
    pub count: u32,
    pub from_id: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

/// A rate-limited request is retried at most this many times.
const MAX_RETRIES: u32 = 3;

/// A Teller client; cheap to clone.
#[derive(Debug, Clone)]
pub struct TellerClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl TellerClient {
    /// Builds the client. In `development` and `production` a client
    /// certificate is required; `sandbox` works without one.
    pub fn new(config: &TellerConfig) -> Result<Self, TellerError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-teller/", env!("CARGO_PKG_VERSION")));
        match (&config.cert_path, &config.key_path) {
            (Some(cert), Some(key)) => {
                let read = |path: &str| {
                    std::fs::read(path)
                        .map(Zeroizing::new)
                        .map_err(|e| TellerError::Config(format!("cannot read {path}: {e}")))
                };
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                    TellerError::Config(
                        "TELLER_CERT_PATH/TELLER_KEY_PATH do not hold a PEM certificate and key"
                            .into(),
                    )
                })?;
                builder = builder.identity(identity);
            }
            (None, None) if config.environment == "sandbox" => {}
            (None, None) => {
                return Err(TellerError::Config(format!(
                    "the {} environment needs the platform's client certificate: set TELLER_CERT_PATH and TELLER_KEY_PATH",
                    config.environment
                )));
            }
            _ => {
                return Err(TellerError::Config(
                    "set both TELLER_CERT_PATH and TELLER_KEY_PATH".into(),
                ));
            }
        }
        if let Some(ca) = &config.ca_path {
            let pem = std::fs::read(ca)
                .map_err(|e| TellerError::Config(format!("cannot read {ca}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|_| {
                TellerError::Config("TELLER_CA_PATH does not hold a PEM certificate".into())
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| TellerError::Config(e.to_string()))?;
        Ok(Self {
            http,
            base: config.base.trim_end_matches('/').to_string(),
            timeout: config.timeout,
        })
    }

    /// `GET /accounts`.
    pub async fn accounts(&self, token: &str) -> Result<Vec<Account>, TellerError> {
        self.get(token, "/accounts", &[]).await
    }

    /// `GET /accounts/:id`.
    pub async fn account(&self, token: &str, account_id: &str) -> Result<Account, TellerError> {
        self.get(token, &format!("/accounts/{}", segment(account_id)?), &[])
            .await
    }

    /// `GET /accounts/:id/balances`.
    pub async fn balance(&self, token: &str, account_id: &str) -> Result<Balance, TellerError> {
        self.get(
            token,
            &format!("/accounts/{}/balances", segment(account_id)?),
            &[],
        )
        .await
    }

    /// `GET /accounts/:id/details`.
    pub async fn details(&self, token: &str, account_id: &str) -> Result<Details, TellerError> {
        self.get(
            token,
            &format!("/accounts/{}/details", segment(account_id)?),
            &[],
        )
        .await
    }

    /// `GET /accounts/:id/transactions`, newest first.
    pub async fn transactions(
        &self,
        token: &str,
        account_id: &str,
        query: &TransactionQuery,
    ) -> Result<Vec<Transaction>, TellerError> {
        let mut params = vec![("count", query.count.to_string())];
        for (name, value) in [
            ("from_id", &query.from_id),
            ("start_date", &query.start_date),
            ("end_date", &query.end_date),
        ] {
            if let Some(v) = value {
                params.push((name, v.clone()));
            }
        }
        self.get(
            token,
            &format!("/accounts/{}/transactions", segment(account_id)?),
            &params,
        )
        .await
    }

    /// `DELETE /accounts`: revokes the whole enrollment behind `token`.
    pub async fn revoke_enrollment(&self, token: &str) -> Result<(), TellerError> {
        let response = self
            .send(|| {
                self.http
                    .delete(format!("{}/accounts", self.base))
                    .basic_auth(token, Some(""))
            })
            .await?;
        check(response).await.map(drop)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, TellerError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .send(|| self.http.get(&url).query(query).basic_auth(token, Some("")))
            .await?;
        let body = check(response).await?;
        serde_json::from_slice(&body).map_err(|_| TellerError::BadResponse)
    }

    /// Sends, retrying 429 (honouring `Retry-After`) while the call's
    /// deadline allows: `TELLER_TIMEOUT_MS` for every attempt and wait.
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TellerError> {
        let mut backoff = Backoff::until(Instant::now() + self.timeout).max_retries(MAX_RETRIES);
        loop {
            let response = tokio::time::timeout(backoff.remaining(), request().send())
                .await
                .map_err(|_| TellerError::Timeout)?
                .map_err(transport_error)?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(response);
            }
            let asked = retry_after(response.headers());
            let Some(wait) = backoff.next_wait(asked) else {
                return Err(TellerError::RateLimited {
                    retry_after: asked.map(|d| d.as_secs()),
                });
            };
            tracing::debug!(?wait, "Teller rate limited; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// An id placed in a URL path must be a plain Teller id.
fn segment(id: &str) -> Result<&str, TellerError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(TellerError::NotFound)
    }
}

fn transport_error(e: reqwest::Error) -> TellerError {
    if e.is_timeout() {
        TellerError::Timeout
    } else {
        // The URL is ours and holds no token (Basic auth travels in a header).
        TellerError::Connect(e.without_url().to_string())
    }
}

/// The body of a 2xx response, or Teller's error.
async fn check(response: reqwest::Response) -> Result<Vec<u8>, TellerError> {
    let status = response.status();
    let body = response.bytes().await.map_err(transport_error)?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        code: String,
    }
    let code = serde_json::from_slice::<Envelope>(&body)
        .map(|e| e.error.code)
        .unwrap_or_default();
    Err(match status.as_u16() {
        401 | 403 => TellerError::Unauthorized {
            status: status.as_u16(),
        },
        404 if code.starts_with("enrollment.disconnected") => TellerError::Disconnected { code },
        404 => TellerError::NotFound,
        410 => TellerError::Closed,
        429 => TellerError::RateLimited { retry_after: None },
        400..=499 => TellerError::BadRequest {
            code: if code.is_empty() {
                status.to_string()
            } else {
                code
            },
        },
        s => TellerError::Upstream { status: s },
    })
}
