//! `POST /api/teller/webhook`: Teller's events, signed with
//! `Teller-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use model::clock::unix_now;
use providers::signature;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Value,
    /// When the event happened (RFC 3339); a redelivery keeps it.
    timestamp: Option<String>,
}

/// The shared secret, from `TELLER_WEBHOOK_SECRET`.
pub fn secret_from_env() -> Option<Zeroizing<String>> {
    std::env::var("TELLER_WEBHOOK_SECRET")
        .ok()
        .filter(|v| !v.is_empty())
        .map(Zeroizing::new)
}

/// A Teller webhook's `Teller-Signature`, fresh and well-formed
/// ([`signature::TellerHeader`]): checked before its body is read, so that
/// a stranger without it is refused at once.
pub struct Signed {
    secret: Arc<Zeroizing<String>>,
    header: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = state.teller_webhook_secret.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_CONFIGURED",
                "Teller webhooks are not configured on this server",
            )
        })?;
        let header = parts
            .headers
            .get("teller-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if signature::TellerHeader::parse(header, unix_now()).is_none() {
            return Err(unsigned());
        }
        Ok(Self {
            secret,
            header: header.to_string(),
        })
    }
}

impl Signed {
    /// When `body` was signed, if it was.
    fn verify(&self, body: &[u8]) -> Option<i64> {
        signature::verify_teller(self.secret.as_bytes(), &self.header, body, unix_now())
    }
}

fn unsigned() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "the Teller-Signature does not verify",
    )
}

/// `POST /api/teller/webhook`: 401 before the body is read without a fresh,
/// well-formed signature header, 401 before it is parsed when the
/// signature does not verify; an `enrollment.disconnected` marks the
/// enrollment's rows `needs_reauth`.
pub async fn receive(
    State(state): State<AppState>,
    signed: Signed,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let signed_at = signed.verify(&body).ok_or_else(unsigned)?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("the event is not the JSON Teller sends"))?;
    if event.kind == "enrollment.disconnected" {
        let enrollment = event.payload["enrollment_id"].as_str().unwrap_or_default();
        // An event without its time is taken as happening when it was signed.
        let happened_at = event
            .timestamp
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(signed_at.max(0).unsigned_abs()));
        let marked = state
            .store
            .mark_enrollment_disconnected(enrollment, happened_at)
            .await?;
        tracing::info!(
            enrollment,
            marked,
            reason = event.payload["reason"].as_str().unwrap_or_default(),
            "Teller enrollment disconnected"
        );
    }
    Ok(Json(json!({"status": "ok"})))
}
