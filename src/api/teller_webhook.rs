//! `POST /api/teller/webhook`: Teller's events, signed with
//! `Teller-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::clock::unix_now;
use common::signature;
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

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let secret = state.teller_webhook_secret.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_CONFIGURED",
            "Teller webhooks are not configured on this server",
        )
    })?;
    let header = headers
        .get("teller-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(signed_at) = signature::verify_teller(secret.as_bytes(), header, &body, unix_now())
    else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the Teller-Signature does not verify",
        ));
    };
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
