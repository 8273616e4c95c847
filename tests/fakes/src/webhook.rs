//! A webhook receiver: accepts any `POST`, records its headers and body, and
//! answers 200 (or what the fault injection says).

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
