//! `POST /api/teller/webhook`: Teller's events, signed with
//! `Teller-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::clock::unix_now;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;

/// How far a signature's timestamp may be from now.
const TOLERANCE_SECS: u64 = 180;

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
    let Some(signed_at) = verify(secret.as_bytes(), header, &body, unix_now()) else {
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
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(signed_at));
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

/// The `t` of `header` (unix seconds) when it is within the tolerance of
/// `now` and one of its `v1` values is the HMAC of `"<t>.<body>"` (compared
/// in constant time); `None` otherwise.
fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Option<u64> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok().map(|n| (t, n)),
            Some(("v1", v)) => signatures.extend(hex(v)),
            _ => {}
        }
    }
    let (t, at) = timestamp?;
    // `at` is the sender's: any i64, so no arithmetic that can overflow.
    if now.abs_diff(at) > TOLERANCE_SECS {
        return None;
    }
    let signed = signatures.iter().any(|signature| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    });
    u64::try_from(at).ok().filter(|_| signed)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn signatures_verify_only_when_fresh_and_right() {
        let (secret, body, now) = (b"whsec", br#"{"type":"x"}"#, 1_800_000_000);
        let good = sign(secret, now, body);
        let cases = [
            (format!("t={now},v1={good}"), true),
            (format!("t={now},v1={},v1={good}", "00".repeat(32)), true),
            (format!("t={},v1={good}", now), true),
            (
                format!("t={},v1={}", now - 200, sign(secret, now - 200, body)),
                false,
            ),
            (format!("t={now},v1={}", sign(b"other", now, body)), false),
            (format!("v1={good}"), false),
            (format!("t={now}"), false),
            (String::new(), false),
            (format!("t={now},v1=zz{}", &good[2..]), false),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(secret, &header, body, now).is_some(),
                expected,
                "{header}"
            );
        }
        assert_eq!(
            verify(secret, &format!("t={now},v1={good}"), body, now),
            Some(now as u64)
        );
        assert!(
            verify(secret, &format!("t={},v1={good}", i64::MIN), body, now).is_none(),
            "an extreme timestamp is refused, not overflowed"
        );
        assert!(
            verify(
                secret,
                &format!("t={now},v1={good}"),
                b"{\"type\":\"y\"}",
                now
            )
            .is_none()
        );
    }
}
