//! The integrations: create, read, scope, default, enable, delete.

use crate::config::ValidConfig;
use crate::crypto::Keyring;
use crate::ids::{new_integration_id, validate_ident};
use crate::model::{Integration, IntegrationType, Profile, Scope, Status};
use crate::scope;

use super::rows::{
    IntegrationRow, ProfileRow, integrations, profile_ids_json, profiles, select_integrations,
    select_profiles,
};
use super::{Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool};

/// An integration to create; its config is validated and sealed separately.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub user_id: String,
    pub kind: IntegrationType,
    /// Defaults to a name derived from the config's non-secret fields.
    pub label: Option<String>,
    /// Makes it the user's default, clearing the user's other defaults.
    pub is_default: bool,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    /// Telegram only: the profile the bot speaks for.
    pub bound_profile_id: Option<String>,
}

const MAX_LABEL: usize = 200;

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "integration",
        id: id.to_string(),
    }
}

impl Store {
    /// Creates an integration: checks the one-per-user and unique external id
    /// rules and the scope against the user's profiles, seals the config under
    /// the keyring's first key, and inserts the row, all in one transaction.
    pub async fn add_integration(
        &self,
        keyring: &Keyring,
        new: &NewIntegration,
        config: &ValidConfig,
    ) -> Result<Integration, StoreError> {
        validate_ident("user id", &new.user_id).map_err(StoreError::Invalid)?;
        if new.bound_profile_id.is_some() && new.kind != IntegrationType::Telegram {
            return Err(StoreError::Invalid(
                "only a telegram bot can be bound to a profile".into(),
            ));
        }
        if new.is_default {
            check_can_be_default(new.kind)?;
        }
        let label: String = new
            .label
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or(&config.default_label)
            .chars()
            .take(MAX_LABEL)
            .collect();
        let id = new_integration_id();
        let at = now();
        let sealed = keyring.seal_config(&id, &new.user_id, new.kind, &config.config);
        let kind = new.kind;
        let one_per_user = || {
            format!(
                "user '{}' already has a {kind} integration; only telegram and teller allow several (remove the existing one first)",
                new.user_id
            )
        };
        let duplicate_external = || {
            format!(
                "this {kind} {} is already connected",
                if kind == IntegrationType::Telegram {
                    "bot"
                } else {
                    "enrollment"
                }
            )
        };
        let profile_ids = with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &new.user_id).await?;
            let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!("WHERE user_id = $1"))
                .bind(&new.user_id)
                .fetch_all(&mut *tx)
                .await?;
            let user_profiles = profiles(rows);
            let profile_ids = scope::normalize(new.scope, &new.profile_ids, &user_profiles)?;
            if let Some(bound) = &new.bound_profile_id {
                if !user_profiles.iter().any(|p| &p.id == bound) {
                    return Err(scope::ScopeError::ProfileNotFound(bound.clone()).into());
                }
                check_binding(bound, new.scope, &profile_ids, &user_profiles)?;
            }
            if !kind.allows_many_per_user() {
                let existing: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM user_integrations WHERE user_id = $1 AND type = $2",
                )
                .bind(&new.user_id)
                .bind(kind.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if existing.is_some() {
                    return Err(StoreError::Conflict(one_per_user()));
                }
            }
            if let Some(external) = &config.external_id {
                let existing: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM user_integrations WHERE type = $1 AND external_id = $2",
                )
                .bind(kind.as_str())
                .bind(external)
                .fetch_optional(&mut *tx)
                .await?;
                if existing.is_some() {
                    return Err(StoreError::Conflict(duplicate_external()));
                }
            }
            if new.is_default {
                sqlx::query(CLEAR_DEFAULTS)
                    .bind(false)
                    .bind(&at)
                    .bind(&new.user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO user_integrations (id, user_id, type, external_id, label, encrypted_config, \
                 enabled, is_default, scope, profile_ids, bound_profile_id, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
            )
            .bind(&id)
            .bind(&new.user_id)
            .bind(kind.as_str())
            .bind(&config.external_id)
            .bind(&label)
            .bind(&sealed.0)
            .bind(true)
            .bind(new.is_default)
            .bind(new.scope.as_str())
            .bind(profile_ids_json(&profile_ids))
            .bind(&new.bound_profile_id)
            .bind(Status::Active.as_str())
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique(|| {
                format!("a conflicting {kind} integration was connected at the same moment; list the user's integrations and retry")
            }))?;
            tx.commit().await?;
            profile_ids
        });
        Ok(Integration {
            id,
            user_id: new.user_id.clone(),
            kind,
            external_id: config.external_id.clone(),
            label,
            sealed,
            enabled: true,
            is_default: new.is_default,
            scope: new.scope,
            profile_ids,
            bound_profile_id: new.bound_profile_id.clone(),
            status: Status::Active,
            created_at: at.clone(),
            updated_at: at,
        })
    }

    /// One integration by id, of any user.
    pub async fn integration(&self, id: &str) -> Result<Option<Integration>, StoreError> {
        with_pool!(self, |pool| {
            let row: Option<IntegrationRow> = sqlx::query_as(select_integrations!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(Integration::try_from).transpose()
        })
    }

    /// The user's integrations (of `kind`, when given), oldest first.
    pub async fn integrations(
        &self,
        user_id: &str,
        kind: Option<IntegrationType>,
    ) -> Result<Vec<Integration>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> = match kind {
                None => {
                    sqlx::query_as(select_integrations!(
                        "WHERE user_id = $1 ORDER BY created_at, id"
                    ))
                    .bind(user_id)
                    .fetch_all(pool)
                    .await?
                }
                Some(kind) => {
                    sqlx::query_as(select_integrations!(
                        "WHERE user_id = $1 AND type = $2 ORDER BY created_at, id"
                    ))
                    .bind(user_id)
                    .bind(kind.as_str())
                    .fetch_all(pool)
                    .await?
                }
            };
            integrations(rows)
        })
    }

    /// Sets the scope: `all` clears the ids; `agents` needs a non-empty list
    /// of the user's own profiles (de-duplicated).
    pub async fn set_scope(
        &self,
        id: &str,
        scope: Scope,
        profile_ids: &[String],
    ) -> Result<Integration, StoreError> {
        let user_id = self.owner(id).await?;
        let at = now();
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &user_id).await?;
            let row: Option<IntegrationRow> = sqlx::query_as(select_integrations!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let mut integration = Integration::try_from(row.ok_or_else(|| not_found(id))?)?;
            let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!("WHERE user_id = $1"))
                .bind(&user_id)
                .fetch_all(&mut *tx)
                .await?;
            let user_profiles = profiles(rows);
            integration.profile_ids = scope::normalize(scope, profile_ids, &user_profiles)?;
            integration.scope = scope;
            if let Some(bound) = &integration.bound_profile_id {
                check_binding(bound, scope, &integration.profile_ids, &user_profiles)?;
            }
            integration.updated_at = at;
            sqlx::query(
                "UPDATE user_integrations SET scope = $1, profile_ids = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(scope.as_str())
            .bind(profile_ids_json(&integration.profile_ids))
            .bind(&integration.updated_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(integration)
        })
    }

    /// Makes the integration its user's default channel, clearing the user's
    /// other defaults. Only notification channels can be the default.
    pub async fn set_default(&self, id: &str) -> Result<Integration, StoreError> {
        let current = self.integration(id).await?.ok_or_else(|| not_found(id))?;
        check_can_be_default(current.kind)?;
        let at = now();
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &current.user_id).await?;
            sqlx::query(CLEAR_DEFAULTS)
                .bind(false)
                .bind(&at)
                .bind(&current.user_id)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(
                "UPDATE user_integrations SET is_default = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(true)
            .bind(&at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(not_found(id));
            }
            tx.commit().await?;
        });
        Ok(Integration {
            is_default: true,
            updated_at: at,
            ..current
        })
    }

    /// The user an integration belongs to (it never changes).
    async fn owner(&self, id: &str) -> Result<String, StoreError> {
        let row: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT user_id FROM user_integrations WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(user,)| user).ok_or_else(|| not_found(id))
    }

    /// Enables or disables the integration; a disabled one grants nothing.
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query("UPDATE user_integrations SET enabled = $1, updated_at = $2 WHERE id = $3")
                .bind(enabled)
                .bind(now())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Deletes the integration row.
    pub async fn delete_integration(&self, id: &str) -> Result<(), StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM user_integrations WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

/// Clears every default of a user: binds `false`, the time, the user id.
const CLEAR_DEFAULTS: &str = "UPDATE user_integrations SET is_default = $1, updated_at = $2 WHERE user_id = $3 AND is_default";

fn check_can_be_default(kind: IntegrationType) -> Result<(), StoreError> {
    if kind.is_channel() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a {kind} integration cannot be the default: only notification channels (slack, telegram, email, webhook) can"
        )))
    }
}

/// A bot's bound profile must be one of the user's profiles (checked when it
/// is set) and, while it exists, granted the bot: a bot speaks for the
/// profile it is bound to.
fn check_binding(
    bound: &str,
    scope: Scope,
    profile_ids: &[String],
    user_profiles: &[Profile],
) -> Result<(), StoreError> {
    let exists = user_profiles.iter().any(|p| p.id == bound);
    if exists && scope == Scope::Agents && !profile_ids.iter().any(|p| p == bound) {
        return Err(StoreError::Invalid(format!(
            "the bot is bound to profile '{bound}', so its scope must include it"
        )));
    }
    Ok(())
}
