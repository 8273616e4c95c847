//! The API's one error shape, `{"error": {"code", "message"}}`, with stable
//! codes, and how store and body errors map onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::scope::ScopeError;
use schemars::JsonSchema;
use serde::Serialize;
use store::StoreError;

/// A failed request: its status, stable code and a sentence saying what is wrong.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (a 429).
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// One of UNAUTHORIZED, NOT_FOUND, VALIDATION_FAILED, PROFILE_NOT_FOUND,
    /// CONFLICT, UNSUPPORTED_TYPE, DELIVERY_FAILED, PROVIDER_UNAVAILABLE,
    /// PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT, RATE_LIMITED, INTERNAL.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 429 `RATE_LIMITED`, with `Retry-After: <seconds>`.
    pub fn rate_limited(message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "send a valid API token as 'Authorization: Bearer <token>', or sign in to the Settings page again",
        )
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} '{}' does not exist", bounded(id)),
        )
    }

    /// A 502 `PROVIDER_UNAVAILABLE`: the provider could not be reached or
    /// answered as a service that is down; nothing the caller sent is wrong.
    pub fn provider_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "PROVIDER_UNAVAILABLE", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", message)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the server could not complete the request; try again",
        )
    }
}

/// An id from the request, bounded and printable, for an error sentence.
pub fn bounded(id: &str) -> String {
    id.chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::not_found(what, &id),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "CONFLICT", message),
            StoreError::Invalid(message) => Self::invalid(message),
            StoreError::TooManyMints(e) => Self::rate_limited(e.to_string(), e.retry_after),
            StoreError::Scope(ScopeError::ProfileNotFound(id)) => Self::new(
                StatusCode::BAD_REQUEST,
                "PROFILE_NOT_FOUND",
                format!("profile '{}' is not one of your profiles", bounded(&id)),
            ),
            StoreError::Scope(e) => Self::invalid(e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
