//! The integrations: create, read, update (scope, default, enable, config,
//! label, binding), delete.

use serde_json::{Map, Value};

use model::config::ValidConfig;
use model::ids::{new_integration_id, validate_ident};
use model::scope;
use model::sealing::Sealer;
use model::{Integration, IntegrationType, Profile, Scope, SealedConfig, Status};

use super::chat_hash::{SWAP_WITH_HASH, chat_hash};
use super::identities::identity_taken;
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

/// Changes to one integration; `None` keeps the current value. (No `Debug`:
/// the config may hold secrets.)
#[derive(Default)]
pub struct IntegrationUpdate {
    /// Fields merged into the decrypted config (a JSON null removes an
    /// optional field), validated again and re-sealed.
    pub config: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    /// With `profile_ids`: one given alone is merged with the row's current
    /// value (`all` clears the ids; ids alone switch the row to `agents`).
    pub scope: Option<Scope>,
    pub profile_ids: Option<Vec<String>>,
    /// `true` clears the user's other defaults; `false` clears this row's.
    pub is_default: Option<bool>,
    pub label: Option<String>,
    /// Telegram only; `Some(None)` unbinds the bot.
    pub bound_profile_id: Option<Option<String>>,
}

impl IntegrationUpdate {
    /// Whether applying it needs the user's profiles.
    fn reads_profiles(&self) -> bool {
        self.scope.is_some()
            || self.profile_ids.is_some()
            || matches!(self.bound_profile_id, Some(Some(_)))
    }
}

const MAX_LABEL: usize = 200;

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "integration",
        id: id.to_string(),
    }
}

impl Store {
    /// Creates an integration: checks the one-per-user and one-owner
    /// identity rules (`external_id`, unique per type) and the scope against the user's profiles, seals the config under
    /// the keyring's first key, and inserts the row, all in one transaction.
    pub async fn add_integration(
        &self,
        keyring: &dyn Sealer,
        new: &NewIntegration,
        config: &ValidConfig,
    ) -> Result<Integration, StoreError> {
        validate_ident("user id", &new.user_id).map_err(StoreError::Invalid)?;
        if new.bound_profile_id.is_some() {
            check_bindable(new.kind)?;
        }
        if new.is_default {
            check_can_be_default(new.kind)?;
        }
        let label = new
            .label
            .as_deref()
            .and_then(clean_label)
            .unwrap_or_else(|| config.default_label.chars().take(MAX_LABEL).collect());
        let id = new_integration_id();
        let at = now();
        let sealed = keyring.seal_config(&id, &new.user_id, new.kind, &config.config);
        let kind = new.kind;
        let hash = chat_hash(keyring, kind, config.external_id.as_deref(), &config.config);
        let one_per_user = || {
            format!(
                "user '{}' already has a {kind} integration; only telegram and teller allow several (remove the existing one first)",
                new.user_id
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
                check_profile_exists(bound, &user_profiles)?;
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
                    return Err(StoreError::Conflict(identity_taken(kind)));
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
                 enabled, is_default, scope, profile_ids, bound_profile_id, status, created_at, updated_at, chat_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
            )
            .bind(&id)
            .bind(&new.user_id)
            .bind(kind.as_str())
            .bind(&config.external_id)
            .bind(&label)
            .bind(sealed.as_stored())
            .bind(true)
            .bind(new.is_default)
            .bind(new.scope.as_str())
            .bind(profile_ids_json(&profile_ids))
            .bind(&new.bound_profile_id)
            .bind(Status::Active.as_str())
            .bind(&at)
            .bind(&hash)
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
            status_note: None,
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

    /// Applies every given field of `update` to the integration `id` of
    /// `user_id`, in one transaction of that user; NotFound when the row is
    /// missing or another user's, and nothing is written when any field is
    /// refused. Scope and profile ids follow [`scope::merge`] and
    /// [`scope::normalize`]; `is_default = true` clears the user's other
    /// defaults (notification channels only); a bound profile must be one of
    /// the user's and, in an `agents` scope, granted the bot; a config change
    /// may not name a server-managed field (the row's identity among them).
    /// Returns the updated row.
    pub async fn update_integration(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        id: &str,
        update: &IntegrationUpdate,
    ) -> Result<Integration, StoreError> {
        self.apply_update(user_id, id, update, |current| {
            update
                .config
                .as_ref()
                .map(|changes| resealed(keyring, current, changes))
                .transpose()
        })
        .await
    }

    /// Sets the scope: `all` clears the ids; `agents` needs a non-empty list
    /// of the user's own profiles (de-duplicated).
    pub async fn set_scope(
        &self,
        id: &str,
        scope: Scope,
        profile_ids: &[String],
    ) -> Result<Integration, StoreError> {
        let update = IntegrationUpdate {
            scope: Some(scope),
            profile_ids: Some(profile_ids.to_vec()),
            ..IntegrationUpdate::default()
        };
        self.apply_update(&self.owner(id).await?, id, &update, |_| Ok(None))
            .await
    }

    /// Makes the integration its user's default channel, clearing the user's
    /// other defaults. Only notification channels can be the default.
    pub async fn set_default(&self, id: &str) -> Result<Integration, StoreError> {
        let update = IntegrationUpdate {
            is_default: Some(true),
            ..IntegrationUpdate::default()
        };
        self.apply_update(&self.owner(id).await?, id, &update, |_| Ok(None))
            .await
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
        let update = IntegrationUpdate {
            enabled: Some(enabled),
            ..IntegrationUpdate::default()
        };
        self.apply_update(&self.owner(id).await?, id, &update, |_| Ok(None))
            .await?;
        Ok(())
    }

    /// Reads the row and (when needed) the user's profiles, applies and
    /// checks `update`, then writes the metadata in one statement and a
    /// config that `reseal` returns with compare-and-swap (a sidecar writes
    /// refreshed grants back without the user's lock), all in one
    /// transaction of `user_id`.
    async fn apply_update(
        &self,
        user_id: &str,
        id: &str,
        update: &IntegrationUpdate,
        reseal: impl FnOnce(&Integration) -> Result<Option<Resealed>, StoreError>,
    ) -> Result<Integration, StoreError> {
        let label = update
            .label
            .as_deref()
            .map(|l| {
                clean_label(l).ok_or_else(|| StoreError::Invalid("a label cannot be blank".into()))
            })
            .transpose()?;
        let at = now();
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            let row: Option<IntegrationRow> =
                sqlx::query_as(select_integrations!("WHERE id = $1 AND user_id = $2"))
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let current = Integration::try_from(row.ok_or_else(|| not_found(id))?)?;
            let user_profiles = if update.reads_profiles() {
                let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!("WHERE user_id = $1"))
                    .bind(user_id)
                    .fetch_all(&mut *tx)
                    .await?;
                profiles(rows)
            } else {
                Vec::new()
            };
            let mut updated = updated_integration(current.clone(), update, label, &user_profiles)?;
            let sealed = reseal(&updated)?;
            if updated.is_default && !current.is_default {
                sqlx::query(CLEAR_DEFAULTS)
                    .bind(false)
                    .bind(&at)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            updated.updated_at = at;
            let done = sqlx::query(
                "UPDATE user_integrations SET label = $1, enabled = $2, is_default = $3, scope = $4, \
                 profile_ids = $5, bound_profile_id = $6, updated_at = $7 WHERE id = $8",
            )
            .bind(&updated.label)
            .bind(updated.enabled)
            .bind(updated.is_default)
            .bind(updated.scope.as_str())
            .bind(profile_ids_json(&updated.profile_ids))
            .bind(&updated.bound_profile_id)
            .bind(&updated.updated_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Only PostgreSQL lets a delete (which takes no lock) in here.
            if done.rows_affected() == 0 {
                return Err(not_found(id));
            }
            if let Some(Resealed { sealed, chat_hash }) = sealed {
                let swapped = sqlx::query(SWAP_WITH_HASH)
                    .bind(sealed.as_stored())
                    .bind(chat_hash)
                    .bind(id)
                    .bind(current.sealed.as_stored())
                    .execute(&mut *tx)
                    .await?;
                if swapped.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!(
                        "integration '{id}' had its config written back at the same moment; retry the change"
                    )));
                }
                updated.sealed = sealed;
            }
            tx.commit().await?;
            Ok(updated)
        })
    }

    /// Deletes the integration row, and its notification threads.
    pub async fn delete_integration(&self, id: &str) -> Result<(), StoreError> {
        let done = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Its notification threads and a Telegram bot's link codes go with it.
            for threads in [
                "DELETE FROM telegram_threads WHERE integration_id = $1",
                "DELETE FROM slack_threads WHERE integration_id = $1",
            ] {
                sqlx::query(threads).bind(id).execute(&mut *tx).await?;
            }
            sqlx::query(
                "DELETE FROM connect_keys WHERE purpose = 'telegram_link' AND verifier = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query("DELETE FROM user_integrations WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            done
        });
        if done == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

/// Clears every default of a user: binds `false`, the time, the user id.
const CLEAR_DEFAULTS: &str = "UPDATE user_integrations SET is_default = $1, updated_at = $2 WHERE user_id = $3 AND is_default";

/// `integration` with `update` applied and checked against the rules of the
/// default, the binding and the scope (`user_profiles` are the user's, read
/// when [`IntegrationUpdate::reads_profiles`]); `label` is checked already.
/// The config is the caller's.
fn updated_integration(
    mut integration: Integration,
    update: &IntegrationUpdate,
    label: Option<String>,
    user_profiles: &[Profile],
) -> Result<Integration, StoreError> {
    if update.is_default == Some(true) {
        check_can_be_default(integration.kind)?;
    }
    if let Some(bound) = &update.bound_profile_id {
        if let Some(bound) = bound {
            check_bindable(integration.kind)?;
            check_profile_exists(bound, user_profiles)?;
        }
        integration.bound_profile_id = bound.clone();
    }
    let current = (integration.scope, integration.profile_ids.as_slice());
    if let Some((scope, ids)) = scope::merge(current, update.scope, update.profile_ids.as_deref()) {
        integration.profile_ids = scope::normalize(scope, ids, user_profiles)?;
        integration.scope = scope;
    }
    if let Some(bound) = &integration.bound_profile_id
        && update.reads_profiles()
    {
        check_binding(
            bound,
            integration.scope,
            &integration.profile_ids,
            user_profiles,
        )?;
    }
    integration.enabled = update.enabled.unwrap_or(integration.enabled);
    integration.is_default = update.is_default.unwrap_or(integration.is_default);
    if let Some(label) = label {
        integration.label = label;
    }
    Ok(integration)
}

/// The config of `integration` with `changes` merged in, validated and
/// sealed again; [`model::config::DecryptedConfig::merged`] refuses a change
/// of the row's identity. Errors name fields, never values.
fn resealed(
    keyring: &dyn Sealer,
    integration: &Integration,
    changes: &Map<String, Value>,
) -> Result<Resealed, StoreError> {
    let kind = integration.kind;
    let merged = keyring
        .open_config(integration)?
        .merged(kind, changes)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(Resealed {
        sealed: keyring.seal_config(&integration.id, &integration.user_id, kind, &merged.config),
        chat_hash: chat_hash(
            keyring,
            kind,
            integration.external_id.as_deref(),
            &merged.config,
        ),
    })
}

/// A changed config, sealed, and the `chat_hash` that goes with it.
struct Resealed {
    sealed: SealedConfig,
    chat_hash: Option<String>,
}

/// A label as stored: trimmed, at most 200 characters; `None` when blank.
fn clean_label(label: &str) -> Option<String> {
    let label = label.trim();
    (!label.is_empty()).then(|| label.chars().take(MAX_LABEL).collect())
}

fn check_can_be_default(kind: IntegrationType) -> Result<(), StoreError> {
    if kind.is_channel() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a {kind} integration cannot be the default: only notification channels (slack, telegram, email, webhook) can"
        )))
    }
}

fn check_bindable(kind: IntegrationType) -> Result<(), StoreError> {
    if kind == IntegrationType::Telegram {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "only a telegram bot can be bound to a profile".into(),
        ))
    }
}

/// A profile named in a change (a bot's binding) must be one of the user's.
fn check_profile_exists(id: &str, user_profiles: &[Profile]) -> Result<(), StoreError> {
    if user_profiles.iter().any(|p| p.id == id) {
        Ok(())
    } else {
        Err(scope::ScopeError::ProfileNotFound(id.to_string()).into())
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
