//! `/v1/integrations`: list, create (email and webhook), patch, delete with
//! downstream revocation, and test.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::config::{ConfigInput, DecryptedConfig};
use model::{Integration, IntegrationType, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use store::{IntegrationUpdate, NewIntegration};

use super::AppState;
use super::auth::Caller;
use super::body::{Params, Payload};
use super::error::{ApiError, bounded};
use super::rules;
use crate::ops::output::{IntegrationView, redacted_config};

/// `GET /v1/integrations` filter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only integrations of this type.
    #[serde(rename = "type")]
    #[schemars(with = "Option<IntegrationType>")]
    pub kind: Option<String>,
}

/// The caller's integrations.
#[derive(Serialize, JsonSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationView>,
}

/// `POST /v1/integrations`: an email or webhook integration.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = rules::agents_need_profiles, transform = config_of_its_type)]
pub struct CreateIntegration {
    /// `email` or `webhook`; the others connect through their own flows.
    #[serde(rename = "type")]
    pub kind: String,
    /// The type's config fields (secret ones are never returned).
    #[schemars(with = "Map<String, Value>")]
    pub config: ConfigInput,
    #[serde(default)]
    #[schemars(schema_with = "rules::non_blank_or_null")]
    pub label: Option<String>,
    pub is_default: Option<bool>,
    /// `all` (default) or `agents`.
    pub scope: Option<Scope>,
    /// With scope `agents`: the profiles granted.
    #[serde(default)]
    #[schemars(schema_with = "rules::profile_ids_or_null")]
    pub profile_ids: Option<Vec<String>>,
}

/// The types `POST /v1/integrations` creates; the others connect through
/// their own flows.
const CREATED_HERE: [IntegrationType; 2] = [IntegrationType::Email, IntegrationType::Webhook];

/// `type` is one of [`CREATED_HERE`], and `config` the config of that type.
fn config_of_its_type(schema: &mut schemars::Schema) {
    let branches: Vec<Value> = CREATED_HERE
        .iter()
        .map(|kind| {
            serde_json::json!({"properties": {
                "type": {"const": kind.as_str()},
                "config": model::config::config_schema(*kind),
            }})
        })
        .collect();
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert(
            "type".into(),
            serde_json::json!({"enum": CREATED_HERE.map(IntegrationType::as_str)}),
        );
        properties.insert("config".into(), serde_json::json!({"type": "object"}));
    }
    schema.insert("oneOf".into(), Value::Array(branches));
}

/// `PATCH /v1/integrations/{id}`: any of these fields.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = rules::listed_profiles_not_empty)]
pub struct PatchIntegration {
    /// Fields merged into the config (null removes an optional one).
    pub config: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    pub scope: Option<Scope>,
    /// Sent alone, merged with the current scope.
    #[serde(default)]
    #[schemars(schema_with = "rules::profile_ids_or_null")]
    pub profile_ids: Option<Vec<String>>,
    pub is_default: Option<bool>,
    #[serde(default)]
    #[schemars(schema_with = "rules::non_blank_or_null")]
    pub label: Option<String>,
    /// Telegram only; null unbinds.
    #[serde(default, deserialize_with = "present")]
    #[schemars(schema_with = "rules::ident_or_null")]
    pub bound_profile_id: Option<Option<String>>,
}

/// `DELETE /v1/integrations/{id}`.
#[derive(Serialize, JsonSchema)]
pub struct Deleted {
    /// `deleted`.
    pub status: &'static str,
    pub id: String,
    /// The provider confirmed it revoked the grant.
    pub revoked: bool,
    /// What the revocation did, or why it could not.
    pub detail: String,
}

/// `POST /v1/integrations/{id}/test`.
#[derive(Serialize, JsonSchema)]
pub struct Tested {
    /// `ok`.
    pub status: &'static str,
    pub id: String,
    pub detail: String,
}

/// A field that was sent, even as null: `Some(None)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An integration type named in a request (never repeated in the error).
fn kind_of(name: &str) -> Result<IntegrationType, ApiError> {
    name.parse().map_err(|_| {
        ApiError::invalid("type must be one of slack, telegram, gmail, teller, email, webhook")
    })
}

fn view(state: &AppState, integration: &Integration) -> IntegrationView {
    IntegrationView::new(integration, redacted_config(&state.keyring, integration))
}

/// The caller's integration `id`; another user's answers like a missing one.
async fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<Integration, ApiError> {
    state
        .store
        .integration(id)
        .await?
        .filter(|i| i.user_id == caller.0)
        .ok_or_else(|| ApiError::not_found("integration", id))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<ListQuery>,
) -> Result<Json<IntegrationList>, ApiError> {
    let kind = query.kind.as_deref().map(kind_of).transpose()?;
    let rows = state.store.integrations(&caller.0, kind).await?;
    let integrations = rows.iter().map(|i| view(&state, i)).collect();
    Ok(Json(IntegrationList { integrations }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<CreateIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let kind = kind_of(&body.kind)?;
    if !CREATED_HERE.contains(&kind) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_TYPE",
            format!(
                "a {kind} integration connects through its own flow, not this endpoint; only email and webhook are created here"
            ),
        ));
    }
    let config = DecryptedConfig::from_input(kind, &body.config)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let profile_ids = body.profile_ids.unwrap_or_default();
    let scope = body.scope.unwrap_or(if profile_ids.is_empty() {
        Scope::All
    } else {
        Scope::Agents
    });
    let new = NewIntegration {
        user_id: caller.0.clone(),
        kind,
        label: body.label,
        is_default: body.is_default.unwrap_or(false),
        scope,
        profile_ids,
        bound_profile_id: None,
    };
    let row = state
        .store
        .add_integration(&*state.keyring, &new, &config)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &row))))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Payload(body): Payload<PatchIntegration>,
) -> Result<Json<IntegrationView>, ApiError> {
    let update = IntegrationUpdate {
        config: body.config,
        enabled: body.enabled,
        scope: body.scope,
        profile_ids: body.profile_ids,
        is_default: body.is_default,
        label: body.label,
        bound_profile_id: body.bound_profile_id,
    };
    let row = state
        .store
        .update_integration(&*state.keyring, &caller.0, &id, &update)
        .await?;
    Ok(Json(view(&state, &row)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let integration = owned(&state, &caller, &id).await?;
    // A grant the provider did not confirm revoked may still be alive: the
    // row, and with it the credential to revoke it, is kept.
    let revoked = crate::ops::revoke::downstream(&state.keyring, &integration)
        .await
        .map_err(|e| {
            tracing::warn!(integration = %integration.id, error = %format!("{e:#}"), "downstream revocation failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DELIVERY_FAILED",
                format!("the {} provider did not confirm the revocation; the integration is kept: try again later", integration.kind),
            )
        })?;
    let (revoked, detail) = (revoked.now, revoked.message);
    state.store.delete_integration(&integration.id).await?;
    Ok(Json(Deleted {
        status: "deleted",
        id: integration.id,
        revoked,
        detail,
    }))
}

pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Tested>, ApiError> {
    let integration = owned(&state, &caller, &id).await?;
    admit_test(&state, &caller, &integration).await?;
    match crate::ops::probe::run(&state.notifier, &state.keyring, &integration).await {
        Ok(detail) => Ok(Json(Tested {
            status: "ok",
            id: integration.id,
            detail,
        })),
        Err(e) if crate::ops::probe::unavailable(&e) => {
            Err(ApiError::provider_unavailable(format!(
                "the test of {} could not reach its provider: {e:#}",
                bounded(&integration.id)
            )))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "DELIVERY_FAILED",
            format!("the test of {} failed: {e:#}", bounded(&integration.id)),
        )),
    }
}

/// Counts a test against the caller's limit (`NOTIFY_MAX_PER_MINUTE` tests a
/// minute, as for an agent's notifications): each test is one `audit_log`
/// row, written before it runs; past the limit, a 429 with `Retry-After`.
/// A looped test would otherwise spend the shared bot's Telegram quota or
/// make the server POST to a URL again and again.
async fn admit_test(
    state: &AppState,
    caller: &Caller,
    integration: &Integration,
) -> Result<(), ApiError> {
    let _turn = state.test_turn.lock().await;
    let recent = state
        .store
        .audited_since(
            &caller.0,
            "api",
            "integration_test",
            mcp_notify::notifier::WINDOW,
        )
        .await?;
    let limit = state.notifier.max_per_minute();
    if let Some(wait) = mcp_notify::notifier::retry_in(&recent, limit) {
        let seconds = (wait.as_secs_f64().ceil() as u64).max(1);
        return Err(ApiError::rate_limited(
            format!("too many tests: at most {limit} a minute; try again in {seconds} seconds"),
            seconds,
        ));
    }
    let identity = model::Identity {
        user_id: caller.0.clone(),
        profile_id: String::new(),
        session_id: None,
    };
    let entry = model::AuditEntry {
        identity: &identity,
        server: "api",
        tool: "integration_test",
        integration_id: Some(&integration.id),
        decision: model::Decision::Allow,
        detail: None,
        duration: std::time::Duration::ZERO,
    };
    state
        .notifier
        .store()
        .audit(&entry)
        .await
        .map_err(ApiError::internal)
}
