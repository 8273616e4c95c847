//! `/v1/notifications`: platform notifications (a playbook's `notify_on`)
//! sent for one of the caller's profiles, through the same code path as
//! `integrations notify`, and the caller's notification log read back.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mcp_notify::deliver::Urgency;
use model::Identity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::LoggedRow;

use super::AppState;
use super::auth::Caller;
use super::body::{Params, Payload};
use super::error::{ApiError, bounded};
use super::rules;
use crate::ops::notify::{ChannelOutcome, Platform};

/// The channels one request may name.
const MAX_CHANNELS: usize = 10;

/// `POST /v1/notifications`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNotification {
    /// One of your profiles: each channel must be granted to it.
    #[schemars(schema_with = "rules::ident")]
    pub profile_id: String,
    /// Markdown, at most 20,000 characters.
    #[schemars(length(min = 1, max = 20_000), regex(pattern = r"\S"))]
    pub message: String,
    /// At most 200 characters.
    #[schemars(length(max = 200))]
    pub title: Option<String>,
    /// `low`, `normal` (default) or `high`.
    pub urgency: Option<Urgency>,
    /// `slack`, `telegram`, `telegram:<integration_id>`, `email` or
    /// `webhook`, each once; none: the profile's default channel.
    #[schemars(
        length(min = 1, max = MAX_CHANNELS),
        inner(length(min = 1, max = 64)),
        extend("uniqueItems" = true)
    )]
    pub channels: Option<Vec<String>>,
    /// Repeating a request with the same key within 24 hours sends nothing
    /// again and answers the first results.
    #[schemars(length(min = 1, max = 128))]
    pub idempotency_key: Option<String>,
}

/// What each channel did.
#[derive(Serialize, JsonSchema)]
pub struct NotificationSent {
    pub results: Vec<ChannelOutcome>,
}

/// `GET /v1/notifications?profile_id=&after=`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this profile's notifications.
    #[serde(default)]
    #[schemars(schema_with = "rules::ident_or_null")]
    pub profile_id: Option<String>,
    /// The last `seq` already read; 0 for all.
    #[serde(default)]
    #[schemars(schema_with = "rules::int64")]
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    #[schemars(schema_with = "rules::int64")]
    pub limit: Option<i64>,
}

#[derive(Serialize, JsonSchema)]
pub struct LogPage {
    pub notifications: Vec<LoggedRow>,
    /// Pass it as `after` for the next page.
    pub next_cursor: i64,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<CreateNotification>,
) -> Result<Json<NotificationSent>, ApiError> {
    if body.idempotency_key.as_ref().is_some_and(|k| k.len() > 128) {
        return Err(ApiError::invalid(
            "idempotency_key must be 1 to 128 characters",
        ));
    }
    if let Some(channels) = &body.channels {
        let mut seen = std::collections::HashSet::new();
        if channels.is_empty() || channels.len() > MAX_CHANNELS {
            return Err(ApiError::invalid(format!(
                "channels must name 1 to {MAX_CHANNELS} channels, or be left out for the default"
            )));
        }
        if let Some(again) = channels.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(ApiError::invalid(format!(
                "channel '{}' is named twice",
                bounded(again)
            )));
        }
    }
    let owned = state
        .store
        .profile(&body.profile_id)
        .await?
        .is_some_and(|p| p.user_id == caller.0);
    if !owned {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "PROFILE_NOT_FOUND",
            format!(
                "profile '{}' is not one of your profiles",
                bounded(&body.profile_id)
            ),
        ));
    }
    let platform = Platform {
        message: body.message,
        title: body.title,
        urgency: body.urgency.unwrap_or_default(),
        channels: body.channels,
        idempotency_key: body.idempotency_key,
    };
    let probe = mcp_notify::Request {
        message: platform.message.clone(),
        title: platform.title.clone(),
        idempotency_key: platform.idempotency_key.clone(),
        ..Default::default()
    };
    mcp_notify::validate(&probe).map_err(|e| ApiError::invalid(e.to_string()))?;
    let who = Identity {
        user_id: caller.0,
        profile_id: body.profile_id,
        session_id: None,
    };
    let results = crate::ops::notify::send(Arc::clone(&state.notifier), who, platform, true).await;
    Ok(Json(NotificationSent { results }))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    if let Some(profile) = &query.profile_id {
        model::ids::validate_ident("profile_id", profile).map_err(ApiError::invalid)?;
    }
    let (after, limit) = super::body::page(query.after, query.limit);
    let notifications = state
        .store
        .notification_log(&caller.0, query.profile_id.as_deref(), after, limit)
        .await?;
    let next_cursor = notifications.last().map_or(after, |n| n.seq);
    Ok(Json(LogPage {
        notifications,
        next_cursor,
    }))
}
