//! A webhook receiver: accepts any `POST`, records its headers and body, and
//! answers 200 (or what the fault injection says). [`Delivery::verify`]
//! checks a delivery's signature the way a receiver of either format does.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;

use crate::faults::{self, Faults};
use crate::http::{Served, serve};

/// A delivery the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The signature formats a receiver may expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// over `{id}.{timestamp}.{body}` (a `whsec_` secret is base64).
    StandardWebhooks,
    /// `X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` over a body
    /// of exactly `message`, `urgency` and `timestamp`.
    Vonzio,
}

impl Delivery {
    /// Checks this delivery as a receiver expecting `format`, signed with
    /// `secret`, would; the error says what does not hold.
    pub fn verify(&self, format: Signed, secret: &str) -> Result<(), String> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let hmac = crate::slack::events::hmac_sha256;
        match format {
            Signed::StandardWebhooks => {
                let id = self.header("webhook-id").ok_or("no webhook-id")?;
                let timestamp = self
                    .header("webhook-timestamp")
                    .ok_or("no webhook-timestamp")?;
                let key = match secret.strip_prefix("whsec_") {
                    Some(encoded) => STANDARD.decode(encoded).map_err(|e| e.to_string())?,
                    None => secret.as_bytes().to_vec(),
                };
                let mut signed = format!("{id}.{timestamp}.").into_bytes();
                signed.extend_from_slice(&self.body);
                let expected = format!("v1,{}", STANDARD.encode(hmac(&key, &signed)));
                let got = self
                    .header("webhook-signature")
                    .ok_or("no webhook-signature")?;
                if !got.split(' ').any(|s| s == expected) {
                    return Err(format!("webhook-signature {got} is not {expected}"));
                }
            }
            Signed::Vonzio => {
                let expected = format!(
                    "sha256={}",
                    hmac(secret.as_bytes(), &self.body)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                );
                let got = self.header("x-signature-256").ok_or("no X-Signature-256")?;
                if got != expected {
                    return Err(format!("X-Signature-256 {got} is not {expected}"));
                }
                let body: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&self.body).map_err(|e| e.to_string())?;
                let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
                keys.sort_unstable();
                if keys != ["message", "timestamp", "urgency"] {
                    return Err(format!("the body has the members {keys:?}"));
                }
            }
        }
        Ok(())
    }
}

type Shared = Arc<Mutex<Vec<Delivery>>>;

/// A running webhook receiver on loopback.
pub struct FakeWebhook {
    served: Served,
    received: Shared,
    faults: Faults,
}

impl FakeWebhook {
    pub async fn start() -> anyhow::Result<Self> {
        let received = Shared::default();
        let faults = Faults::default();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(received.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                faults::layer,
            ));
        Ok(Self {
            served: serve(app).await?,
            received,
            faults,
        })
    }

    /// A URL on the receiver, e.g. `url("/hooks/agent")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.served.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The deliveries that reached the handler (not those a fault answered).
    pub fn received(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(
    State(received): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    received.lock().unwrap().push(Delivery {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    "ok"
}
