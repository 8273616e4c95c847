//! `/v1/secrets`: per-agent secrets, sealed like configs, never returned.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::{Scope, Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::{NewSecret, SecretUpdate};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Caller;
use super::body::Payload;
use super::error::ApiError;
use super::rules;

/// `POST /v1/secrets`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = rules::agents_need_profiles)]
pub struct CreateSecret {
    /// An environment variable name: `^[A-Z_][A-Z0-9_]*$`, unique per user.
    #[schemars(schema_with = "rules::secret_name")]
    pub name: String,
    /// Stored encrypted; never returned.
    #[schemars(schema_with = "rules::secret_value")]
    pub value: Zeroizing<String>,
    /// `all` (default) or `agents`.
    pub scope: Option<Scope>,
    #[serde(default)]
    #[schemars(schema_with = "rules::profile_ids_or_null")]
    pub profile_ids: Option<Vec<String>>,
}

/// `PATCH /v1/secrets/{id}`: any of these fields.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = rules::listed_profiles_not_empty)]
pub struct PatchSecret {
    #[serde(default)]
    #[schemars(schema_with = "rules::secret_name_or_null")]
    pub name: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "rules::secret_value_or_null")]
    pub value: Option<Zeroizing<String>>,
    pub scope: Option<Scope>,
    /// Sent alone, merged with the current scope.
    #[serde(default)]
    #[schemars(schema_with = "rules::profile_ids_or_null")]
    pub profile_ids: Option<Vec<String>>,
}

/// A secret without its value.
#[derive(Serialize, JsonSchema)]
pub struct SecretView {
    pub id: String,
    pub name: String,
    /// `all` or `agents`.
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Secret> for SecretView {
    fn from(s: Secret) -> Self {
        Self {
            id: s.id,
            name: s.name,
            scope: s.scope,
            profile_ids: s.profile_ids,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretView>,
}

/// `DELETE /v1/secrets/{id}`.
#[derive(Serialize, JsonSchema)]
pub struct SecretDeleted {
    /// `deleted`.
    pub status: &'static str,
    pub id: String,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.store.secrets(&caller.0).await?;
    Ok(Json(SecretList {
        secrets: secrets.into_iter().map(SecretView::from).collect(),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<CreateSecret>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let profile_ids = body.profile_ids.unwrap_or_default();
    let new = NewSecret {
        user_id: caller.0,
        name: body.name,
        value: body.value,
        scope: body.scope.unwrap_or(if profile_ids.is_empty() {
            Scope::All
        } else {
            Scope::Agents
        }),
        profile_ids,
    };
    let secret = state.store.add_secret(&*state.keyring, &new).await?;
    Ok((StatusCode::CREATED, Json(secret.into())))
}

pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Payload(body): Payload<PatchSecret>,
) -> Result<Json<SecretView>, ApiError> {
    let update = SecretUpdate {
        name: body.name,
        value: body.value,
        scope: body.scope,
        profile_ids: body.profile_ids,
    };
    let secret = state
        .store
        .update_secret(&*state.keyring, &caller.0, &id, &update)
        .await?;
    Ok(Json(secret.into()))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SecretDeleted>, ApiError> {
    state.store.delete_secret(&caller.0, &id).await?;
    Ok(Json(SecretDeleted {
        status: "deleted",
        id,
    }))
}
