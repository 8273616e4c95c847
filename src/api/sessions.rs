//! `/v1/sessions`: capability tokens for running agents, for an orchestrator
//! that is not the `resolver` binary. The plan answered is the resolver's, in
//! Claude Code's form, each server an HTTP endpoint of this service.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use resolver::{PlanRequest, ResolveError, SidecarEnv};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::{DEFAULT_TTL, LiveSession, MAX_TTL, Minter, StoreError};

use super::AppState;
use super::auth::TokenCaller;
use super::body::Payload;
use super::error::{ApiError, bounded};

/// The longest lifetime of a token minted over REST unless
/// `MCP_MAX_TOKEN_TTL` says otherwise.
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The mints an API token may make a minute unless
/// `MCP_MAX_MINTS_PER_MINUTE` says otherwise.
const DEFAULT_MINTS_PER_MINUTE: i64 = 60;

/// What bounds the capability tokens minted over REST.
#[derive(Debug, Clone, Copy)]
pub struct MintLimits {
    /// The longest `ttl_seconds` (`MCP_MAX_TOKEN_TTL`: seconds, or a
    /// duration such as `24h`; default 24 hours, at most 30 days).
    pub max_ttl: Duration,
    /// Mints per API token a minute (`MCP_MAX_MINTS_PER_MINUTE`, default
    /// 60; 0: no limit).
    pub per_minute: Option<i64>,
}

impl MintLimits {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let max_ttl = match var("MCP_MAX_TOKEN_TTL") {
            None => DEFAULT_MAX_TTL,
            Some(v) => v
                .parse::<u64>()
                .map(Duration::from_secs)
                .or_else(|_| humantime::parse_duration(&v))
                .ok()
                .filter(|ttl| (Duration::from_secs(1)..=MAX_TTL).contains(ttl))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "MCP_MAX_TOKEN_TTL must be a number of seconds or a duration such as 24h, from 1 second to {} days",
                        MAX_TTL.as_secs() / 86_400
                    )
                })?,
        };
        let per_minute = match var("MCP_MAX_MINTS_PER_MINUTE") {
            None => Some(DEFAULT_MINTS_PER_MINUTE),
            Some(v) => match v.parse::<i64>() {
                Ok(0) => None,
                Ok(n) if n > 0 => Some(n),
                _ => anyhow::bail!(
                    "MCP_MAX_MINTS_PER_MINUTE must be a number of sessions an API token may mint a minute (0: no limit)"
                ),
            },
        };
        Ok(Self {
            max_ttl,
            per_minute,
        })
    }
}

/// `POST /v1/sessions`: mints the capability token of one running agent.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// One of your profiles.
    #[schemars(schema_with = "super::rules::ident")]
    pub profile_id: String,
    /// The running agent's session; `DELETE /v1/sessions/{id}` revokes it.
    #[schemars(schema_with = "super::rules::ident")]
    pub session_id: String,
    /// How long the token is valid; default 43200 (12 hours), at most
    /// `MCP_MAX_TOKEN_TTL` (default 86400, 24 hours): a longer one is refused.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schemars(schema_with = "super::rules::ttl_seconds_or_null")]
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

/// `GET /v1/sessions`: the caller's live capability tokens.
#[derive(Serialize, JsonSchema)]
pub struct SessionList {
    /// Newest first, at most 1000; never a token.
    pub sessions: Vec<LiveSession>,
}

/// `DELETE /v1/sessions`.
#[derive(Serialize, JsonSchema)]
pub struct SessionsEnded {
    /// `revoked`.
    pub status: &'static str,
    /// How many live tokens were revoked.
    pub revoked: u64,
}

pub async fn create(
    State(state): State<AppState>,
    caller: TokenCaller,
    Payload(body): Payload<CreateSession>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    let max_ttl = state.mint_limits.max_ttl;
    let ttl = match body.ttl_seconds {
        None => DEFAULT_TTL.min(max_ttl),
        Some(s) if (1..=max_ttl.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "ttl_seconds must be between 1 and {} (MCP_MAX_TOKEN_TTL)",
                max_ttl.as_secs()
            )));
        }
    };
    let minter = Minter::ApiToken {
        id: &caller.token_id,
        per_minute: state.mint_limits.per_minute,
    };
    let request = PlanRequest {
        user_id: &caller.user_id,
        profile_id: &body.profile_id,
        session_id: Some(&body.session_id),
        bin_dir: std::path::Path::new(""),
    };
    // Over HTTP the agent gets no sidecar environment at all.
    let env = SidecarEnv::from_vars("", std::iter::empty());
    let minted = async {
        let plan = resolver::plan(&state.store, &env, &request).await?;
        resolver::mint(&state.store, plan, &state.mcp_url, ttl, minter).await
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
        // The API token was revoked while the request ran.
        ResolveError::Store(StoreError::NotFound {
            what: "api token", ..
        }) => ApiError::unauthorized(),
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
    let revoked = state
        .store
        .revoke_session(Some(&caller.user_id), &id)
        .await?;
    Ok(Json(SessionRevoked {
        status: "revoked",
        session_id: id,
        revoked,
    }))
}

pub async fn list(
    State(state): State<AppState>,
    caller: TokenCaller,
) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(SessionList {
        sessions: state.store.live_sessions(&caller.user_id).await?,
    }))
}

pub async fn end_all(
    State(state): State<AppState>,
    caller: TokenCaller,
) -> Result<Json<SessionsEnded>, ApiError> {
    let revoked = state.store.revoke_user_sessions(&caller.user_id).await?;
    Ok(Json(SessionsEnded {
        status: "revoked",
        revoked,
    }))
}
