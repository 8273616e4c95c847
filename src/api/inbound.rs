//! What Telegram's webhook and Slack's events share: the outbox of inbound
//! messages (`GET /v1/inbound`), the forward of each new row to
//! `INBOUND_FORWARD_URL` after the provider got its answer, and the audit
//! row of a message that could not be handled.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use model::Integration;
use providers::slack::SlackClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::{InboundMessage, NewInbound};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Caller;
use super::body::Params;
use super::error::ApiError;
use super::rules;

/// Where new outbox rows are forwarded.
pub struct InboundConfig {
    forward_url: Option<String>,
    forward_secret: Option<Zeroizing<String>>,
    http: reqwest::Client,
    /// Slack, for the replies to its events (over the same HTTP client).
    pub slack: SlackClient,
}

impl InboundConfig {
    /// From `INBOUND_FORWARD_URL`, `INBOUND_FORWARD_SECRET` and Slack's
    /// ([`SlackClient::from_env`]).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self {
            forward_url: var("INBOUND_FORWARD_URL"),
            forward_secret: var("INBOUND_FORWARD_SECRET").map(Zeroizing::new),
            slack: SlackClient::from_env(http.clone()),
            http,
        })
    }
}

/// `GET /v1/inbound?after=`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    /// The last `seq` already consumed; 0 for all.
    #[serde(default)]
    #[schemars(schema_with = "rules::int64")]
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    #[schemars(schema_with = "rules::int64")]
    pub limit: Option<i64>,
}

#[derive(Serialize, JsonSchema)]
pub struct InboundPage {
    pub messages: Vec<InboundMessage>,
    /// Pass as `after` for the next page.
    pub next_cursor: i64,
}

pub async fn inbound(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<InboundQuery>,
) -> Result<Json<InboundPage>, ApiError> {
    let (after, limit) = super::body::page(query.after, query.limit);
    let messages = state.store.inbound(&caller.0, after, limit).await?;
    let next_cursor = messages.last().map_or(after, |m| m.seq);
    Ok(Json(InboundPage {
        messages,
        next_cursor,
    }))
}

/// Writes `new` into the outbox and forwards the row in a task of its own,
/// after the provider got its answer; `false` when the provider redelivered
/// a message already written.
pub async fn write(state: &AppState, new: &NewInbound) -> anyhow::Result<bool> {
    let Some(written) = state.store.add_inbound(new).await? else {
        return Ok(false);
    };
    if state.inbound.forward_url.is_some() {
        let state = state.clone();
        tokio::spawn(async move { forward(&state, &written).await });
    }
    Ok(true)
}

/// POSTs an outbox row to `INBOUND_FORWARD_URL`, signed like outbound
/// webhooks, bounded by the client's 15-second timeout; a forward that
/// fails is logged, and the row stays in the outbox (`GET /v1/inbound`).
async fn forward(state: &AppState, message: &InboundMessage) {
    let Some(url) = &state.inbound.forward_url else {
        return;
    };
    let body = serde_json::to_vec(message).unwrap_or_default();
    let timestamp = model::clock::unix_now().max(0) as u64;
    let mut request = state
        .inbound
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &state.inbound.forward_secret {
        match providers::signature::sign_standard(secret, &message.id, timestamp, &body) {
            Ok(signature) => request = request.header("webhook-signature", signature),
            Err(e) => tracing::warn!(error = %e, "INBOUND_FORWARD_SECRET is not usable"),
        }
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(
            status = r.status().as_u16(),
            "the inbound forward was refused"
        ),
        Err(e) => tracing::warn!(error = %e.without_url(), "the inbound forward failed"),
    }
}

/// Keeps a message that was not handled in the audit log of `row`'s user,
/// where operators look (`server` is `telegram` or `slack`): the provider
/// was told 200 whatever happened, so this is the only trace besides the log.
pub async fn record_failure(
    state: &AppState,
    row: Option<&Integration>,
    server: &'static str,
    error: &str,
) {
    let Some(row) = row else { return };
    let identity = model::Identity {
        user_id: row.user_id.clone(),
        profile_id: String::new(),
        session_id: None,
    };
    let entry = model::AuditEntry {
        identity: &identity,
        server,
        tool: "webhook_update",
        integration_id: Some(&row.id),
        decision: model::Decision::Error,
        detail: Some(error),
        duration: Duration::ZERO,
    };
    if let Err(e) = state.notifier.store().audit(&entry).await {
        tracing::warn!(error = %e, "the failed message could not be recorded");
    }
}
