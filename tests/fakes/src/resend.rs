//! A fake Resend API: `POST /emails` with a Bearer key, a required
//! `User-Agent`, `Idempotency-Key` replay, and Resend's error shape
//! `{"statusCode", "name", "message"}`; `GET /domains`, which the fake's
//! key, a sending-only one, is refused as `restricted_api_key`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::faults::{self, Faults};
use crate::http::{Served, serve};

/// An API key the fake accepts: a sending-only one.
pub const API_KEY: &str = "re_test_key_0001";

/// An email the fake accepted (sent once, whatever the retries).
#[derive(Debug, Clone)]
pub struct Email {
    pub id: String,
    pub body: Value,
    pub idempotency_key: Option<String>,
    pub user_agent: String,
}

#[derive(Default)]
struct Outbox {
    sent: Vec<Email>,
    /// Idempotency key → (request body, the id answered).
    keys: HashMap<String, (Value, String)>,
}

type Shared = Arc<Mutex<Outbox>>;

/// A running fake Resend on loopback.
pub struct FakeResend {
    served: Served,
    outbox: Shared,
    faults: Faults,
}

impl FakeResend {
    pub async fn start() -> anyhow::Result<Self> {
        let outbox = Shared::default();
        let faults = Faults::default();
        let app = Router::new()
            .route("/emails", post(send))
            .route("/domains", axum::routing::get(domains))
            .with_state(outbox.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                faults::layer,
            ));
        Ok(Self {
            served: serve(app).await?,
            outbox,
            faults,
        })
    }

    /// Where to point `RESEND_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The emails sent so far, oldest first.
    pub fn sent(&self) -> Vec<Email> {
        self.outbox.lock().unwrap().sent.clone()
    }
}

/// Resend's error body.
pub fn error(status: u16, name: &str, message: &str) -> Value {
    json!({"statusCode": status, "name": name, "message": message})
}

fn fail(status: u16, name: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (code, axum::Json(error(status, name, message))).into_response()
}

/// Resend's refusal of a request without [`API_KEY`]; `None` with it.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Some(fail(
            401,
            "missing_api_key",
            "Missing API key in the authorization header.",
        )),
        Some(v) if v != format!("Bearer {API_KEY}") => {
            Some(fail(403, "invalid_api_key", "API key is invalid."))
        }
        Some(_) => None,
    }
}

/// `GET /domains`: [`API_KEY`] may only send.
async fn domains(headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    fail(
        401,
        "restricted_api_key",
        "This API key is restricted to only send emails.",
    )
}

async fn send(
    State(outbox): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let Some(user_agent) = header("user-agent") else {
        return fail(
            403,
            "missing_user_agent",
            "A User-Agent header is required.",
        );
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return fail(400, "validation_error", "The body is not valid JSON.");
    };
    for field in ["from", "to", "subject"] {
        if body[field].is_null() {
            return fail(
                422,
                "missing_required_field",
                &format!("Missing `{field}` field."),
            );
        }
    }
    if body["html"].is_null() && body["text"].is_null() {
        return fail(
            422,
            "missing_required_field",
            "Missing `html` or `text` field.",
        );
    }
    let key = header("idempotency-key");
    let mut outbox = outbox.lock().unwrap();
    if let Some(key) = &key
        && let Some((first, id)) = outbox.keys.get(key)
    {
        return if *first == body {
            axum::Json(json!({"id": id})).into_response()
        } else {
            fail(
                409,
                "invalid_idempotent_request",
                "Same idempotency key used with a different request payload.",
            )
        };
    }
    let id = format!("4ef9a417-02e9-4d39-ad75-{:012}", outbox.sent.len() + 1);
    if let Some(key) = &key {
        outbox.keys.insert(key.clone(), (body.clone(), id.clone()));
    }
    outbox.sent.push(Email {
        id: id.clone(),
        body,
        idempotency_key: key,
        user_agent,
    });
    axum::Json(json!({"id": id})).into_response()
}
