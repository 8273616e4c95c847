//! `/v1/sessions`: capability tokens for running agents, for an orchestrator
//! that is not the `resolver` binary. The plan answered is the resolver's, in
//! Claude Code's form, each server an HTTP endpoint of this service.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::store::{DEFAULT_TTL, MAX_TTL};
use resolver::{PlanRequest, ResolveError, SidecarEnv};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::TokenCaller;
use super::body::Payload;
use super::error::{ApiError, bounded};

/// `POST /v1/sessions`: mints the capability token of one running agent.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// One of your profiles.
    #[schemars(schema_with = "super::openapi::rules::ident")]
    pub profile_id: String,
    /// The running agent's session; `DELETE /v1/sessions/{id}` revokes it.
    #[schemars(schema_with = "super::openapi::rules::ident")]
    pub session_id: String,
    /// How long the token is valid; default 43200 (12 hours), at most 30 days.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schemars(schema_with = "super::openapi::rules::ttl_seconds_or_null")]
    pub ttl_seconds: Option<u64>,
}

/// A whole number of seconds, written as an integer or as a float with no
/// fraction (`3600.0`), as JSON Schema's `integer` allows; null for none.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = n.as_u64() {
        return Ok(Some(n));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(D::Error::custom(
            "ttl_seconds must be a whole number of seconds",
        )),
    }
}

/// A minted session: its plan holds the token, shown once.
#[derive(Serialize, JsonSchema)]
pub struct SessionCreated {
    pub session_id: String,
    /// RFC 3339.
    pub expires_at: String,
    /// `{"mcpServers": {"<name>": {"type": "http", "url", "headers": {"Authorization": "Bearer <token>"}}}}`.
    pub plan: serde_json::Value,
}

/// `DELETE /v1/sessions/{id}`.
#[derive(Serialize, JsonSchema)]
pub struct SessionRevoked {
    /// `revoked`.
    pub status: &'static str,
    pub session_id: String,
    /// How many live tokens were revoked.
    pub revoked: u64,
}

pub async fn create(
    State(state): State<AppState>,
    caller: TokenCaller,
    Payload(body): Payload<CreateSession>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    let ttl = match body.ttl_seconds {
        None => DEFAULT_TTL,
        Some(s) if (1..=MAX_TTL.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "ttl_seconds must be between 1 and {}",
                MAX_TTL.as_secs()
            )));
        }
    };
    let request = PlanRequest {
        user_id: &caller.0,
        profile_id: &body.profile_id,
        session_id: Some(&body.session_id),
        bin_dir: std::path::Path::new(""),
    };
    // Over HTTP the agent gets no sidecar environment at all.
    let env = SidecarEnv::from_vars("", std::iter::empty());
    let minted = async {
        let plan = resolver::plan(&state.store, &env, &request).await?;
        resolver::mint(&state.store, plan, &state.mcp_url, ttl).await
    };
    let plan = minted.await.map_err(|e| match e {
        ResolveError::ProfileNotFound { profile_id, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "PROFILE_NOT_FOUND",
            format!(
                "profile '{}' is not one of your profiles",
                bounded(&profile_id)
            ),
        ),
        ResolveError::Invalid(message) => ApiError::invalid(message),
        ResolveError::Store(e) => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            session_id: body.session_id,
            expires_at: plan.expires_at.clone(),
            plan: plan.claude_code(),
        }),
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: TokenCaller,
    Path(id): Path<String>,
) -> Result<Json<SessionRevoked>, ApiError> {
    let revoked = state.store.revoke_session(Some(&caller.0), &id).await?;
    Ok(Json(SessionRevoked {
        status: "revoked",
        session_id: id,
        revoked,
    }))
}
