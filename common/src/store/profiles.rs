//! The mirrored agent profiles.

use crate::ids::{validate_ident, validate_slug};
use crate::model::{Profile, Scope};

use super::rows::{ProfileRow, profile_ids_json, profiles, select_integrations, select_profiles};
use super::{Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool};

/// A profile to mirror from the platform.
#[derive(Debug, Clone)]
pub struct NewProfile {
    pub id: String,
    pub user_id: String,
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
    /// Makes it the user's default profile, clearing the previous default.
    pub is_default: bool,
}

impl Store {
    /// Adds a profile; its id must be new and its slug unused by the user.
    pub async fn add_profile(&self, new: &NewProfile) -> Result<Profile, StoreError> {
        validate_ident("profile id", &new.id).map_err(StoreError::Invalid)?;
        validate_ident("user id", &new.user_id).map_err(StoreError::Invalid)?;
        validate_slug(&new.slug).map_err(StoreError::Invalid)?;
        let profile = Profile {
            id: new.id.clone(),
            user_id: new.user_id.clone(),
            slug: new.slug.clone(),
            name: new.name.clone().unwrap_or_else(|| new.slug.clone()),
            is_default: new.is_default,
            created_at: now(),
        };
        let taken = || {
            format!(
                "profile '{}' or slug '{}' of user '{}' exists already",
                profile.id, profile.slug, profile.user_id
            )
        };
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &profile.user_id).await?;
            let clash: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM profiles WHERE id = $1 OR (user_id = $2 AND slug = $3)",
            )
            .bind(&profile.id)
            .bind(&profile.user_id)
            .bind(&profile.slug)
            .fetch_optional(&mut *tx)
            .await?;
            if clash.is_some() {
                return Err(StoreError::Conflict(taken()));
            }
            if profile.is_default {
                sqlx::query(
                    "UPDATE profiles SET is_default = $1 WHERE user_id = $2 AND is_default",
                )
                .bind(false)
                .bind(&profile.user_id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO profiles (id, user_id, slug, name, is_default, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&profile.id)
            .bind(&profile.user_id)
            .bind(&profile.slug)
            .bind(&profile.name)
            .bind(profile.is_default)
            .bind(&profile.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique(taken))?;
            tx.commit().await?;
        });
        Ok(profile)
    }

    /// The user's profiles, oldest first.
    pub async fn profiles(&self, user_id: &str) -> Result<Vec<Profile>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!(
                "WHERE user_id = $1 ORDER BY created_at, id"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            Ok(profiles(rows))
        })
    }

    /// One profile by id, of any user.
    pub async fn profile(&self, id: &str) -> Result<Option<Profile>, StoreError> {
        with_pool!(self, |pool| {
            let row: Option<ProfileRow> = sqlx::query_as(select_profiles!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Profile::from))
        })
    }

    /// Removes a profile of `user_id` and its id from every `profile_ids` of
    /// that user; returns how many integrations lost it. An `agents`
    /// integration left with no ids grants nothing.
    pub async fn remove_profile(&self, user_id: &str, id: &str) -> Result<usize, StoreError> {
        let at = now();
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            let deleted = sqlx::query("DELETE FROM profiles WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::NotFound {
                    what: "profile",
                    id: id.to_string(),
                });
            }
            let rows: Vec<super::rows::IntegrationRow> =
                sqlx::query_as(select_integrations!("WHERE user_id = $1 AND scope = $2"))
                    .bind(user_id)
                    .bind(Scope::Agents.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
            let mut touched = 0;
            for mut integration in super::rows::integrations(rows)? {
                let before = integration.profile_ids.len();
                integration.profile_ids.retain(|p| p != id);
                if integration.profile_ids.len() == before {
                    continue;
                }
                sqlx::query(
                    "UPDATE user_integrations SET profile_ids = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(profile_ids_json(&integration.profile_ids))
                .bind(&at)
                .bind(&integration.id)
                .execute(&mut *tx)
                .await?;
                touched += 1;
            }
            tx.commit().await?;
            Ok(touched)
        })
    }
}
