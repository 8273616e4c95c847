//! What the providers' clients share: where a provider is (its base URL,
//! read once here), a request that got no answer ([`NoAnswer`]), and the
//! wait a provider asks for (`Retry-After`).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The URL in the environment variable `name` (`SLACK_AUTHORIZE_URL`,
/// ...), else `default`.
pub(crate) fn env_url(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The base URL in the environment variable `name` (`SLACK_API_BASE`, ...),
/// else `default`, without a trailing `/`.
pub(crate) fn base_url(name: &str, default: &str) -> String {
    env_url(name, default).trim_end_matches('/').to_string()
}

/// `Retry-After` in seconds, if `headers` hold one (an HTTP date is not
/// honoured: the caller's backoff applies). Not bounded here: the caller's
/// [`model::retry::Backoff`] gives up on a wait that would pass its deadline.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    model::retry::retry_after(headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()))
}

/// A request that got no answer: whether it could not connect or timed
/// out, and reqwest's reason without the URL (a Telegram URL holds the bot's
/// token, a webhook's may hold a capability). Displays as a phrase that
/// follows the provider's name ("Slack could not be reached").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.phrase())]
pub struct NoAnswer {
    connect: bool,
    timeout: bool,
    detail: String,
}

impl NoAnswer {
    /// Whether the connection was not made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        self.connect
    }

    /// Whether the request or its connection timed out.
    pub fn is_timeout(&self) -> bool {
        self.timeout
    }

    /// reqwest's reason, without the URL.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn phrase(&self) -> String {
        if self.timeout {
            "did not answer in time".into()
        } else if self.connect {
            "could not be reached".into()
        } else {
            format!("request failed ({})", self.detail)
        }
    }
}

impl From<reqwest::Error> for NoAnswer {
    fn from(e: reqwest::Error) -> Self {
        Self {
            connect: e.is_connect(),
            timeout: e.is_timeout(),
            detail: e.without_url().to_string(),
        }
    }
}
