//! `/v1/profiles`: the platform mirrors its agent profiles here.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::Profile;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::NewProfile;

use super::AppState;
use super::auth::Caller;
use super::body::Payload;
use super::error::ApiError;
use super::rules;

/// `PUT /v1/profiles/{id}`: creates or updates the profile.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProfile {
    /// Unique among the user's profiles; what `@slug` routing uses.
    #[schemars(schema_with = "rules::slug")]
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
    /// Makes it the default profile, clearing the previous default.
    pub is_default: Option<bool>,
}

/// A mirrored profile.
#[derive(Serialize, JsonSchema)]
pub struct ProfileView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub is_default: bool,
    pub created_at: String,
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            id: p.id,
            slug: p.slug,
            name: p.name,
            is_default: p.is_default,
            created_at: p.created_at,
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub struct ProfileList {
    pub profiles: Vec<ProfileView>,
}

/// `DELETE /v1/profiles/{id}`.
#[derive(Serialize, JsonSchema)]
pub struct ProfileDeleted {
    /// `deleted`.
    pub status: &'static str,
    pub id: String,
    /// How many integrations lost it from their `profile_ids`.
    pub unscoped: usize,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProfileList>, ApiError> {
    let profiles = state.store.profiles(&caller.0).await?;
    Ok(Json(ProfileList {
        profiles: profiles.into_iter().map(ProfileView::from).collect(),
    }))
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Payload(body): Payload<PutProfile>,
) -> Result<(StatusCode, Json<ProfileView>), ApiError> {
    let new = NewProfile {
        id,
        user_id: caller.0,
        slug: body.slug,
        name: body.name,
        is_default: body.is_default.unwrap_or(false),
    };
    let (profile, created) = state.store.put_profile(&new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(profile.into())))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProfileDeleted>, ApiError> {
    let unscoped = state.store.remove_profile(&caller.0, &id).await?;
    Ok(Json(ProfileDeleted {
        status: "deleted",
        id,
        unscoped,
    }))
}
