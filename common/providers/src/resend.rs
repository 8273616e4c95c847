//! The Resend client: `POST <RESEND_API_BASE>/emails` with the API key as a
//! bearer and an `Idempotency-Key`, Resend's `{"name", "message"}` refusals
//! and its 429s mapped to [`ResendError`]. One call is one request; with
//! the same key, sending it again never sends the email twice.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::http::{NoAnswer, base_url, retry_after};

const API_BASE: &str = "https://api.resend.com";

/// Why an email was not accepted. Never holds the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResendError {
    /// No answer came.
    #[error("Resend {0}")]
    NoAnswer(NoAnswer),
    /// HTTP 429, with the wait Resend asked for.
    #[error("Resend is rate limiting (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx, with the wait Resend asked for, if any.
    #[error("Resend is failing ({status})")]
    Failing {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// An answer that is not JSON.
    #[error("Resend answered {status} with a body that is not JSON")]
    Unreadable { status: StatusCode },
    /// Another refusal: its status, and the error's `name` and `message`
    /// (`error` and empty when absent).
    #[error("Resend refused the email ({status} {name}: {message})")]
    Refused {
        status: StatusCode,
        name: String,
        message: String,
    },
}

/// A Resend client; cheap to clone.
#[derive(Debug, Clone)]
pub struct ResendClient {
    http: reqwest::Client,
    base: String,
}

impl ResendClient {
    /// A client for `RESEND_API_BASE` (default Resend's) over `http`, whose
    /// settings (timeout, user agent: Resend requires one) every call takes.
    pub fn from_env(http: reqwest::Client) -> Self {
        Self {
            http,
            base: base_url("RESEND_API_BASE", API_BASE),
        }
    }

    /// `POST /emails` of `email` (`from`, `to`, `subject`, ...) with `key`;
    /// the id Resend gave it, if its answer has one.
    pub async fn send(
        &self,
        key: &str,
        idempotency_key: &str,
        email: &Value,
    ) -> Result<Option<String>, ResendError> {
        let response = self
            .http
            .post(format!("{}/emails", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(email)
            .send()
            .await
            .map_err(|e| ResendError::NoAnswer(e.into()))?;
        let answer = refusal_or_answer(response).await?;
        Ok(answer["id"].as_str().map(str::to_string))
    }

    /// Whether `key` is a key Resend knows, sending nothing: `GET /domains`,
    /// which a full-access key may read and a sending-only key is refused
    /// as `restricted_api_key` (a key Resend knows all the same).
    pub async fn check_key(&self, key: &str) -> Result<(), ResendError> {
        let response = self
            .http
            .get(format!("{}/domains", self.base))
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| ResendError::NoAnswer(e.into()))?;
        match refusal_or_answer(response).await {
            Ok(_) => Ok(()),
            Err(ResendError::Refused { name, .. }) if name == "restricted_api_key" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A JSON answer of 2xx, or Resend's refusal of it.
async fn refusal_or_answer(response: reqwest::Response) -> Result<Value, ResendError> {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(ResendError::RateLimited {
            retry_after: retry_after(response.headers()),
        });
    }
    if status.is_server_error() {
        return Err(ResendError::Failing {
            status,
            retry_after: retry_after(response.headers()),
        });
    }
    let Ok(answer) = response.json::<Value>().await else {
        return Err(ResendError::Unreadable { status });
    };
    if status.is_success() {
        return Ok(answer);
    }
    Err(ResendError::Refused {
        status,
        name: answer["name"].as_str().unwrap_or("error").to_string(),
        message: answer["message"].as_str().unwrap_or("").to_string(),
    })
}
