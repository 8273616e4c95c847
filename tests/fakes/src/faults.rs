//! Request recording and fault injection, shared by every fake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A request as a fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The `Idempotency-Key` (Resend) or `webhook-id` header, as sent: what
    /// must stay the same across the retries of one message.
    pub message_key: Option<String>,
}

/// What an injected fault does.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status, JSON body and optional `Retry-After` seconds.
    Status {
        status: u16,
        body: Value,
        retry_after: Option<u64>,
    },
    /// Wait this long before handling the request normally.
    Delay(Duration),
    /// Answer 200 with a body that is not JSON.
    NotJson,
}

/// A fault applied to the next `times` requests whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: String,
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    /// One response with `status` and `body` to the next request on `path`.
    pub fn status(path: &str, status: u16, body: Value) -> Self {
        Self {
            path: path.into(),
            times: 1,
            kind: FaultKind::Status {
                status,
                body,
                retry_after: None,
            },
        }
    }

    /// Applies to the next `times` matching requests instead of one.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Adds a `Retry-After` header (seconds) to a status fault.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        if let FaultKind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Delays the next request on `path`.
    pub fn delay(path: &str, delay: Duration) -> Self {
        Self {
            path: path.into(),
            times: 1,
            kind: FaultKind::Delay(delay),
        }
    }

    /// Answers the next request on `path` with a body that is not JSON.
    pub fn not_json(path: &str) -> Self {
        Self {
            path: path.into(),
            times: 1,
            kind: FaultKind::NotJson,
        }
    }
}

/// The recorded requests and pending faults of one fake.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<(Vec<Recorded>, Vec<Fault>)>>,
}

impl Faults {
    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.inner.lock().unwrap().1.push(fault);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().0.clone()
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.inner.lock().unwrap().1.clear();
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.lock().unwrap().0.clear();
    }

    fn take(&self, request: Recorded) -> Option<FaultKind> {
        let mut inner = self.inner.lock().unwrap();
        let fault = inner
            .1
            .iter_mut()
            .find(|f| f.times > 0 && request.path.contains(&f.path))
            .map(|f| {
                f.times -= 1;
                f.kind.clone()
            });
        inner.1.retain(|f| f.times > 0);
        inner.0.push(request);
        fault
    }
}

/// Middleware: records the request, then applies the first matching fault.
pub(crate) async fn layer(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let recorded = Recorded {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(String::from),
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        message_key: ["idempotency-key", "webhook-id"]
            .iter()
            .find_map(|h| request.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    match faults.take(recorded) {
        None => next.run(request).await,
        Some(FaultKind::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(FaultKind::NotJson) => (
            [("content-type", "application/json")],
            Body::from("<html><body>502 Bad Gateway</body></html>"),
        )
            .into_response(),
        Some(FaultKind::Status {
            status,
            body,
            retry_after,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, axum::Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(seconds));
            }
            response
        }
    }
}
