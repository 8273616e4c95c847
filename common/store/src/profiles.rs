//! The mirrored agent profiles.

use model::ids::{validate_ident, validate_slug};
use model::{Profile, Scope};

use super::rows::{ProfileRow, profile_ids_json, profiles, select_profiles};
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

impl NewProfile {
    /// The profile this describes, created at `created_at`, once its id, user
    /// id and slug are checked.
    fn to_profile(&self, created_at: String) -> Result<Profile, StoreError> {
        validate_ident("profile id", &self.id).map_err(StoreError::Invalid)?;
        validate_ident("user id", &self.user_id).map_err(StoreError::Invalid)?;
        validate_slug(&self.slug).map_err(StoreError::Invalid)?;
        Ok(Profile {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            slug: self.slug.clone(),
            name: self.name.clone().unwrap_or_else(|| self.slug.clone()),
            is_default: self.is_default,
            created_at,
        })
    }
}

/// The profiles one user may have unless `MAX_PROFILES_PER_USER` says
/// otherwise: each may be granted channels and fire notifications, so a
/// user's profiles are not free.
pub const DEFAULT_MAX_PROFILES_PER_USER: i64 = 100;

/// The profiles one user may have: `MAX_PROFILES_PER_USER`, by default
/// [`DEFAULT_MAX_PROFILES_PER_USER`].
pub fn max_profiles_per_user() -> Result<i64, StoreError> {
    match std::env::var("MAX_PROFILES_PER_USER") {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                StoreError::Invalid(
                    "MAX_PROFILES_PER_USER must be a number of profiles, at least 1".into(),
                )
            })
        }
        _ => Ok(DEFAULT_MAX_PROFILES_PER_USER),
    }
}

/// Counts a user's profiles: binds the user id.
const COUNT_PROFILES: &str = "SELECT COUNT(*) FROM profiles WHERE user_id = $1";

/// The refusal of one profile more for `user_id`, who has `count` of at
/// most `max`.
fn past_the_cap(user_id: &str, count: i64, max: i64) -> Result<(), StoreError> {
    if count < max {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "user '{user_id}' has {count} profiles, the most one user may have (MAX_PROFILES_PER_USER is {max}); remove one before adding another"
    )))
}

/// Clears a user's default profile: binds `false`, the user id.
const CLEAR_DEFAULT: &str = "UPDATE profiles SET is_default = $1 WHERE user_id = $2 AND is_default";

const INSERT: &str = "INSERT INTO profiles (id, user_id, slug, name, is_default, created_at) \
                      VALUES ($1, $2, $3, $4, $5, $6)";

/// The rows that list profiles in `profile_ids`, per table: the `agents`
/// rows of a user (binds the user id and `agents`), and the update of one
/// row's list (binds the ids, the time, the row id). Integrations first.
const SCOPED_ROWS: [(&str, &str); 2] = [
    (
        "SELECT id, profile_ids FROM user_integrations WHERE user_id = $1 AND scope = $2",
        "UPDATE user_integrations SET profile_ids = $1, updated_at = $2 WHERE id = $3",
    ),
    (
        "SELECT id, profile_ids FROM user_secrets WHERE user_id = $1 AND scope = $2",
        "UPDATE user_secrets SET profile_ids = $1, updated_at = $2 WHERE id = $3",
    ),
];

impl Store {
    /// Adds a profile; its id must be new, its slug unused by the user, and
    /// the user under [`max_profiles_per_user`].
    pub async fn add_profile(&self, new: &NewProfile) -> Result<Profile, StoreError> {
        let profile = new.to_profile(now())?;
        let max = max_profiles_per_user()?;
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
            let (count,): (i64,) = sqlx::query_as(COUNT_PROFILES)
                .bind(&profile.user_id)
                .fetch_one(&mut *tx)
                .await?;
            past_the_cap(&profile.user_id, count, max)?;
            if profile.is_default {
                sqlx::query(CLEAR_DEFAULT)
                    .bind(false)
                    .bind(&profile.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(INSERT)
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

    /// Creates or updates the user's profile `id` (slug, name, is_default),
    /// as the platform mirrors it; returns it and whether it was created.
    /// Conflict when the id belongs to another user, the slug is taken by
    /// another profile of the user, or a new profile would take the user
    /// past [`max_profiles_per_user`].
    pub async fn put_profile(&self, new: &NewProfile) -> Result<(Profile, bool), StoreError> {
        let mut profile = new.to_profile(now())?;
        let max = max_profiles_per_user()?;
        // Worded like any other clash: it must not tell that another user has it.
        let elsewhere = || {
            format!(
                "profile id '{}' cannot be used; choose another id",
                profile.id
            )
        };
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &profile.user_id).await?;
            let existing: Option<ProfileRow> = sqlx::query_as(select_profiles!("WHERE id = $1"))
                .bind(&profile.id)
                .fetch_optional(&mut *tx)
                .await?;
            let existing = existing.map(Profile::from);
            if existing
                .as_ref()
                .is_some_and(|p| p.user_id != profile.user_id)
            {
                return Err(StoreError::Conflict(elsewhere()));
            }
            let clash: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM profiles WHERE user_id = $1 AND slug = $2 AND id <> $3",
            )
            .bind(&profile.user_id)
            .bind(&profile.slug)
            .bind(&profile.id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((other,)) = clash {
                return Err(StoreError::Conflict(format!(
                    "slug '{}' is taken by profile '{other}' of user '{}'",
                    profile.slug, profile.user_id
                )));
            }
            if profile.is_default {
                sqlx::query(CLEAR_DEFAULT)
                    .bind(false)
                    .bind(&profile.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let created = existing.is_none();
            if created {
                let (count,): (i64,) = sqlx::query_as(COUNT_PROFILES)
                    .bind(&profile.user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                past_the_cap(&profile.user_id, count, max)?;
            }
            if let Some(existing) = existing {
                profile.created_at = existing.created_at;
                sqlx::query(
                    "UPDATE profiles SET slug = $1, name = $2, is_default = $3 WHERE id = $4",
                )
                .bind(&profile.slug)
                .bind(&profile.name)
                .bind(profile.is_default)
                .bind(&profile.id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(INSERT)
                    .bind(&profile.id)
                    .bind(&profile.user_id)
                    .bind(&profile.slug)
                    .bind(&profile.name)
                    .bind(profile.is_default)
                    .bind(&profile.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_on_unique(elsewhere))?;
            }
            tx.commit().await?;
            Ok((profile, created))
        })
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
    /// that user (integrations and secrets), in one transaction; returns how
    /// many integrations lost it. An `agents` row left with no ids grants
    /// nothing.
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
            let mut touched = [0; SCOPED_ROWS.len()];
            for ((select, update), count) in SCOPED_ROWS.iter().zip(&mut touched) {
                let rows: Vec<(String, String)> = sqlx::query_as(select)
                    .bind(user_id)
                    .bind(Scope::Agents.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                for (row_id, ids) in rows {
                    let Some(kept) = without(&row_id, &ids, id)? else {
                        continue;
                    };
                    sqlx::query(update)
                        .bind(profile_ids_json(&kept))
                        .bind(&at)
                        .bind(&row_id)
                        .execute(&mut *tx)
                        .await?;
                    *count += 1;
                }
            }
            tx.commit().await?;
            Ok(touched[0])
        })
    }
}

/// The stored `profile_ids` of row `row_id` without `profile_id`, or `None`
/// when it does not list it.
fn without(row_id: &str, ids: &str, profile_id: &str) -> Result<Option<Vec<String>>, StoreError> {
    let mut ids: Vec<String> = serde_json::from_str(ids).map_err(|_| {
        StoreError::Invalid(format!("{row_id} has an unreadable profile_ids column"))
    })?;
    let before = ids.len();
    ids.retain(|p| p != profile_id);
    Ok((ids.len() != before).then_some(ids))
}
