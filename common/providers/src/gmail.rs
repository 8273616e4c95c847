//! The Gmail API through `google-gmail1`, pointed at `GMAIL_API_BASE`: our
//! bearer token, our retry policy, and Google's errors as [`GmailError`].
//! Its message types are `google-gmail1`'s, re-exported as [`api`].

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_gmail1::Gmail;
pub use google_gmail1::api;
use google_gmail1::api::{
    Draft, Label, ListMessagesResponse, Message, MessagePartBody, Profile, Thread,
};
use google_gmail1::common::{self, Delegate, GetToken, Retry};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use model::retry::Backoff;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::http::retry_after;

const API_BASE: &str = "https://gmail.googleapis.com/";
/// The mailbox of the token's owner.
const ME: &str = "me";
/// How long one Gmail call may take, retries included, unless
/// `GMAIL_TIMEOUT_MS` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Rate-limited requests are retried at most this many times, and never
/// wait past the call's deadline.
const MAX_RETRIES: u32 = 3;

type Connector = HttpsConnector<HttpConnector>;

/// Why a Gmail call failed. Holds Google's reason and message, never a token.
#[derive(Debug, thiserror::Error)]
pub enum GmailError {
    #[error("Gmail refused the access token (401)")]
    Unauthorized,
    #[error("Gmail is rate limiting requests")]
    RateLimited { retry_after: Option<u64> },
    #[error("Gmail found no such item (404)")]
    NotFound,
    #[error("Gmail rejected the request: {0}")]
    Rejected(String),
    #[error("Gmail refused: {0}")]
    Forbidden(String),
    #[error("Gmail answered HTTP {0}")]
    Upstream(u16),
    #[error("Gmail did not answer in time")]
    Timeout,
    #[error("Gmail could not be reached: {0}")]
    Connect(String),
    #[error("Gmail sent a response that could not be read")]
    BadResponse,
}

impl GmailError {
    /// Whether Gmail could not be reached or answered as a service that is
    /// down (rather than refusing the request).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Upstream(status) => *status >= 500,
            other => matches!(
                other,
                Self::RateLimited { .. } | Self::Timeout | Self::Connect(_) | Self::BadResponse
            ),
        }
    }
}

/// A Gmail API client; one per sidecar, its connections reused.
#[derive(Clone)]
pub struct GmailClient {
    http: common::Client<Connector>,
    api_base: String,
    timeout: Duration,
}

/// Our [`GetToken`]: the access token of the current call, handed to the
/// hub for its `Authorization` header and zeroized when the call ends.
#[derive(Clone)]
struct Bearer(Arc<Zeroizing<String>>);

impl GetToken for Bearer {
    fn get_token<'a>(
        &'a self,
        _scopes: &'a [&str],
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(async move { Ok(Some(self.0.as_str().to_owned())) })
    }
}

/// Our retry policy, applied by the hub as its [`Delegate`]: a
/// rate-limited request waits for `Retry-After` (or the next step of
/// [`Backoff`]) while the call's deadline allows.
struct RateLimits {
    waits: Backoff,
    /// The last `Retry-After` Gmail sent, for the report when we give up.
    retry_after: Option<u64>,
}

impl RateLimits {
    /// The retries of one call that may take `timeout` in all.
    fn new(timeout: Duration) -> Self {
        Self {
            waits: Backoff::until(Instant::now() + timeout).max_retries(MAX_RETRIES),
            retry_after: None,
        }
    }
}

impl Delegate for RateLimits {
    fn http_failure(&mut self, response: &common::Response, error: Option<&Value>) -> Retry {
        let status = response.status().as_u16();
        if !is_rate_limit(status, error) {
            return Retry::Abort;
        }
        let asked = retry_after(response.headers());
        self.retry_after = asked.map(|d| d.as_secs());
        match self.waits.next_wait(asked) {
            Some(wait) => Retry::After(wait),
            None => Retry::Abort,
        }
    }
}

fn is_rate_limit(status: u16, error: Option<&Value>) -> bool {
    let reason = error
        .and_then(|e| e["error"]["errors"][0]["reason"].as_str())
        .unwrap_or_default();
    status == 429
        || (status == 403 && matches!(reason, "rateLimitExceeded" | "userRateLimitExceeded"))
}

impl GmailClient {
    /// A client for `GMAIL_API_BASE` (default Google's), with
    /// `GMAIL_TIMEOUT_MS` per call.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut api_base = var("GMAIL_API_BASE").unwrap_or_else(|| API_BASE.into());
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        let timeout = var("GMAIL_TIMEOUT_MS")
            .and_then(|ms| ms.parse().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            http,
            api_base,
            timeout,
        }
    }

    /// How long one call may take, retries included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn hub(&self, token: &Arc<Zeroizing<String>>) -> Gmail<Connector> {
        let mut hub = Gmail::new(self.http.clone(), Bearer(Arc::clone(token)));
        hub.base_url(self.api_base.clone());
        hub.root_url(self.api_base.clone());
        hub.user_agent(concat!("mcp-gmail/", env!("CARGO_PKG_VERSION")).into());
        hub
    }

    /// One page of the message ids matching `query`.
    pub async fn search(
        &self,
        token: &Arc<Zeroizing<String>>,
        query: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<ListMessagesResponse, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let mut call = hub
            .users()
            .messages_list(ME)
            .q(query)
            .max_results(max_results)
            .delegate(&mut limits);
        if let Some(page) = page_token {
            call = call.page_token(page);
        }
        let result = self.bounded(call.doit()).await;
        finish(result, &limits)
    }

    /// One message: `format` is `full` or `metadata` (with only `headers`).
    pub async fn message(
        &self,
        token: &Arc<Zeroizing<String>>,
        id: &str,
        format: &str,
        headers: &[&str],
    ) -> Result<Message, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let mut call = hub
            .users()
            .messages_get(ME, id)
            .format(format)
            .delegate(&mut limits);
        for header in headers {
            call = call.add_metadata_headers(header);
        }
        let result = self.bounded(call.doit()).await;
        finish(result, &limits)
    }

    /// A whole thread, oldest message first, in `format` as for [`Self::message`].
    pub async fn thread(
        &self,
        token: &Arc<Zeroizing<String>>,
        id: &str,
        format: &str,
        headers: &[&str],
    ) -> Result<Thread, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let mut call = hub
            .users()
            .threads_get(ME, id)
            .format(format)
            .delegate(&mut limits);
        for header in headers {
            call = call.add_metadata_headers(header);
        }
        let result = self.bounded(call.doit()).await;
        finish(result, &limits)
    }

    /// Every label of the mailbox.
    pub async fn labels(&self, token: &Arc<Zeroizing<String>>) -> Result<Vec<Label>, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let call = hub.users().labels_list(ME).delegate(&mut limits);
        let result = self.bounded(call.doit()).await;
        finish(result, &limits).map(|list| list.labels.unwrap_or_default())
    }

    /// One attachment's bytes.
    pub async fn attachment(
        &self,
        token: &Arc<Zeroizing<String>>,
        message_id: &str,
        attachment_id: &str,
    ) -> Result<MessagePartBody, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let call = hub
            .users()
            .messages_attachments_get(ME, message_id, attachment_id)
            .delegate(&mut limits);
        let result = self.bounded(call.doit()).await;
        finish(result, &limits)
    }

    /// Sends an RFC 2822 message through the upload form.
    pub async fn send(
        &self,
        token: &Arc<Zeroizing<String>>,
        raw: Vec<u8>,
        thread_id: Option<String>,
    ) -> Result<Message, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let request = Message {
            thread_id,
            ..Message::default()
        };
        let call = hub.users().messages_send(request, ME).delegate(&mut limits);
        let result = self.bounded(call.upload(Cursor::new(raw), rfc822())).await;
        finish(result, &limits)
    }

    /// Saves an RFC 2822 message as a draft through the upload form.
    pub async fn draft(
        &self,
        token: &Arc<Zeroizing<String>>,
        raw: Vec<u8>,
        thread_id: Option<String>,
    ) -> Result<Draft, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let request = Draft {
            message: Some(Message {
                thread_id,
                ..Message::default()
            }),
            ..Draft::default()
        };
        let call = hub.users().drafts_create(request, ME).delegate(&mut limits);
        let result = self.bounded(call.upload(Cursor::new(raw), rfc822())).await;
        finish(result, &limits)
    }

    /// The mailbox's address: a cheap call that proves a token works.
    pub async fn profile(&self, token: &Arc<Zeroizing<String>>) -> Result<Profile, GmailError> {
        let hub = self.hub(token);
        let mut limits = RateLimits::new(self.timeout);
        let call = hub.users().get_profile(ME).delegate(&mut limits);
        let result = self.bounded(call.doit()).await;
        finish(result, &limits)
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = common::Result<(common::Response, T)>>,
    ) -> Result<common::Result<(common::Response, T)>, GmailError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call).await;
        tracing::debug!(elapsed = ?started.elapsed(), "gmail call");
        result.map_err(|_| GmailError::Timeout)
    }
}

fn rfc822() -> mime::Mime {
    "message/rfc822".parse().expect("a valid MIME type")
}

/// The value of a finished call, or what went wrong.
fn finish<T: DeserializeOwned>(
    result: Result<common::Result<(common::Response, T)>, GmailError>,
    limits: &RateLimits,
) -> Result<T, GmailError> {
    match result? {
        Ok((_, value)) => Ok(value),
        Err(common::Error::JsonDecodeError(body, _)) => {
            repadded(&body).ok_or(GmailError::BadResponse)
        }
        Err(common::Error::BadRequest(error)) => Err(from_google(&error, limits)),
        Err(common::Error::Failure(response)) => {
            Err(from_status(response.status().as_u16(), limits))
        }
        Err(common::Error::HttpError(e)) => Err(GmailError::Connect(transport_message(&e))),
        Err(common::Error::UploadSizeLimitExceeded(..)) => Err(GmailError::Rejected(
            "the message is larger than Gmail accepts (35 MB)".into(),
        )),
        Err(_) => Err(GmailError::BadResponse),
    }
}

/// Decodes a response again after padding its base64url fields: Gmail may
/// omit the padding that `google-gmail1`'s decoder requires.
fn repadded<T: DeserializeOwned>(body: &str) -> Option<T> {
    fn pad(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if key == "data" || key == "raw" => {
                            let s = s.trim_end_matches('=');
                            let padding = (4 - s.len() % 4) % 4;
                            *v = Value::String(format!("{s}{}", "=".repeat(padding)));
                        }
                        _ => pad(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(pad),
            _ => {}
        }
    }
    let mut value: Value = serde_json::from_str(body).ok()?;
    pad(&mut value);
    serde_json::from_value(value).ok()
}

/// Google's JSON error `{"error": {"code", "message", "errors": [{"reason"}]}}`.
fn from_google(error: &Value, limits: &RateLimits) -> GmailError {
    let status = error["error"]["code"].as_u64().unwrap_or(0) as u16;
    if is_rate_limit(status, Some(error)) {
        return GmailError::RateLimited {
            retry_after: limits.retry_after,
        };
    }
    let message: String = error["error"]["message"]
        .as_str()
        .unwrap_or("no reason given")
        .chars()
        .take(200)
        .collect();
    match status {
        401 => GmailError::Unauthorized,
        404 => GmailError::NotFound,
        403 => GmailError::Forbidden(message),
        400..=499 => GmailError::Rejected(message),
        _ => from_status(status, limits),
    }
}

fn from_status(status: u16, limits: &RateLimits) -> GmailError {
    match status {
        401 => GmailError::Unauthorized,
        404 => GmailError::NotFound,
        429 => GmailError::RateLimited {
            retry_after: limits.retry_after,
        },
        _ => GmailError::Upstream(status),
    }
}

/// A transport error's description, without the URL it carries.
fn transport_message(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() {
        "connection refused or failed".into()
    } else {
        "the connection failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpadded_base64_fields_decode_after_repadding() {
        // "Hi!!" is 4 bytes: base64url "SGkhIQ" needs "==".
        let body = r#"{"id":"1","payload":{"body":{"size":4,"data":"SGkhIQ"},"parts":[{"body":{"data":"SGk"}}]}}"#;
        assert!(serde_json::from_str::<Message>(body).is_err());
        let message: Message = repadded(body).unwrap();
        let payload = message.payload.unwrap();
        assert_eq!(payload.body.unwrap().data.unwrap(), b"Hi!!");
        assert_eq!(
            payload.parts.unwrap()[0]
                .clone()
                .body
                .unwrap()
                .data
                .unwrap(),
            b"Hi"
        );
    }

    #[test]
    fn rate_limits_are_429_or_a_403_that_says_so() {
        let reason =
            |r: &str| serde_json::json!({"error": {"code": 403, "errors": [{"reason": r}]}});
        assert!(is_rate_limit(429, None));
        assert!(is_rate_limit(403, Some(&reason("rateLimitExceeded"))));
        assert!(is_rate_limit(403, Some(&reason("userRateLimitExceeded"))));
        assert!(!is_rate_limit(
            403,
            Some(&reason("insufficientPermissions"))
        ));
        assert!(!is_rate_limit(500, None));
    }
}
