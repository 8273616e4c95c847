//! Rows brought over from another system with their ids and times kept:
//! each user's rows written in one transaction of that user, a row whose id
//! is already here left alone ("already imported"), a row that would break
//! a rule of the store (one per user, a taken slug, name or identity)
//! skipped with the reason: another user's identity without naming them.

use zeroize::Zeroizing;

use model::config::{ValidConfig, identity_noun};
use model::ids::validate_ident;
use model::sealing::Sealer;
use model::{IntegrationType, Profile, Scope, Status};

use super::chat_hash::chat_hash;
use super::identities::identity_taken;
use super::rows::profile_ids_json;
use super::secrets::{validate_name, validate_value};
use super::{Store, StoreError, begin_for_user, with_pool};

/// An integration to import, its metadata as it was.
#[derive(Debug)]
pub struct ImportedIntegration {
    pub id: String,
    pub user_id: String,
    pub kind: IntegrationType,
    pub label: String,
    pub enabled: bool,
    pub is_default: bool,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    pub bound_profile_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The config, validated; sealed here with the row's associated data.
    pub config: ValidConfig,
}

/// A per-agent secret to import. (No `Debug`: it holds the value.)
pub struct ImportedSecret {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub value: Zeroizing<String>,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One row to import.
pub enum ImportRow {
    /// A profile; `is_default` is taken only when the user has no default.
    Profile(Profile),
    /// An integration; `is_default` is taken only when the user has no
    /// default integration.
    Integration(Box<ImportedIntegration>),
    Secret(ImportedSecret),
}

impl ImportRow {
    fn id(&self) -> &str {
        match self {
            Self::Profile(p) => &p.id,
            Self::Integration(i) => &i.id,
            Self::Secret(s) => &s.id,
        }
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Written (or, in a dry run, would be), with what was changed on the way.
    Imported(Vec<String>),
    /// A row with this id is here already.
    AlreadyImported,
    /// Not written, for this reason.
    Skipped(String),
}

impl Store {
    /// Writes `rows`, all of `user_id`, in one transaction of that user, in
    /// their order; a dry run rolls it back, so that its outcomes are the
    /// ones a real run would have.
    pub async fn import_user(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        rows: &[&ImportRow],
        dry_run: bool,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        validate_ident("user id", user_id).map_err(StoreError::Invalid)?;
        let mut outcomes = Vec::with_capacity(rows.len());
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            for row in rows {
                if let Err(why) = validate_ident("id", row.id()) {
                    outcomes.push(ImportOutcome::Skipped(why));
                    continue;
                }
                let outcome = match row {
                    ImportRow::Profile(p) => {
                        let here: Option<(String,)> =
                            sqlx::query_as("SELECT user_id FROM profiles WHERE id = $1")
                                .bind(&p.id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        let slug: Option<(String,)> = sqlx::query_as(
                            "SELECT id FROM profiles WHERE user_id = $1 AND slug = $2",
                        )
                        .bind(user_id)
                        .bind(&p.slug)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let default: Option<(String,)> = sqlx::query_as(
                            "SELECT id FROM profiles WHERE user_id = $1 AND is_default",
                        )
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match (here, slug) {
                            (Some((owner,)), _) if owner == user_id => {
                                ImportOutcome::AlreadyImported
                            }
                            (Some(_), _) => ImportOutcome::Skipped(
                                "a profile of another user has this id".into(),
                            ),
                            (None, Some((other,))) => ImportOutcome::Skipped(format!(
                                "the user's profile {other} has the slug '{}' already",
                                p.slug
                            )),
                            (None, None) => {
                                let is_default = p.is_default && default.is_none();
                                sqlx::query(
                                    "INSERT INTO profiles (id, user_id, slug, name, is_default, created_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6)",
                                )
                                .bind(&p.id)
                                .bind(user_id)
                                .bind(&p.slug)
                                .bind(&p.name)
                                .bind(is_default)
                                .bind(&p.created_at)
                                .execute(&mut *tx)
                                .await?;
                                let mut notes = Vec::new();
                                if p.is_default && !is_default {
                                    notes.push(format!(
                                        "not the default: {} is the user's default here",
                                        default.map(|d| d.0).unwrap_or_default()
                                    ));
                                }
                                ImportOutcome::Imported(notes)
                            }
                        }
                    }
                    ImportRow::Integration(i) => {
                        let kind = i.kind;
                        let here: Option<(String,)> =
                            sqlx::query_as("SELECT user_id FROM user_integrations WHERE id = $1")
                                .bind(&i.id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        let same_type: Option<(String,)> = if kind.allows_many_per_user() {
                            None
                        } else {
                            sqlx::query_as(
                                "SELECT id FROM user_integrations WHERE user_id = $1 AND type = $2",
                            )
                            .bind(user_id)
                            .bind(kind.as_str())
                            .fetch_optional(&mut *tx)
                            .await?
                        };
                        let same_external: Option<(String, String)> = match &i.config.external_id {
                            Some(external) => {
                                sqlx::query_as(
                                    "SELECT id, user_id FROM user_integrations WHERE type = $1 AND external_id = $2",
                                )
                                .bind(kind.as_str())
                                .bind(external)
                                .fetch_optional(&mut *tx)
                                .await?
                            }
                            None => None,
                        };
                        let hash = chat_hash(
                            keyring,
                            kind,
                            i.config.external_id.as_deref(),
                            &i.config.config,
                        );
                        let same_chat: Option<(String,)> = match &hash {
                            Some(hash) => {
                                sqlx::query_as(
                                    "SELECT id FROM user_integrations WHERE type = $1 AND chat_hash = $2",
                                )
                                .bind(kind.as_str())
                                .bind(hash)
                                .fetch_optional(&mut *tx)
                                .await?
                            }
                            None => None,
                        };
                        let default: Option<(String,)> = sqlx::query_as(
                            "SELECT id FROM user_integrations WHERE user_id = $1 AND is_default",
                        )
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match (here, same_type, same_external, same_chat) {
                            (Some((owner,)), ..) if owner == user_id => {
                                ImportOutcome::AlreadyImported
                            }
                            (Some(_), ..) => ImportOutcome::Skipped(
                                "an integration of another user has this id".into(),
                            ),
                            (None, Some((other,)), ..) => ImportOutcome::Skipped(format!(
                                "the user has a {kind} integration already ({other}); only telegram and teller allow several"
                            )),
                            (None, None, Some((other, owner)), _) if owner == user_id => {
                                ImportOutcome::Skipped(format!(
                                    "the user has this {} connected already, as {other}",
                                    identity_noun(kind)
                                ))
                            }
                            (None, None, Some(_), _) => {
                                ImportOutcome::Skipped(identity_taken(kind))
                            }
                            (None, None, None, Some(_)) => ImportOutcome::Skipped(
                                "the Telegram chat it is paired with is paired with this bot already, by another integration: it can be paired again here".into(),
                            ),
                            (None, None, None, None) => {
                                let is_default =
                                    i.is_default && kind.is_channel() && default.is_none();
                                let sealed =
                                    keyring.seal_config(&i.id, user_id, kind, &i.config.config);
                                sqlx::query(
                                    "INSERT INTO user_integrations (id, user_id, type, external_id, label, encrypted_config, \
                                     enabled, is_default, scope, profile_ids, bound_profile_id, status, created_at, updated_at, chat_hash) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                                )
                                .bind(&i.id)
                                .bind(user_id)
                                .bind(kind.as_str())
                                .bind(&i.config.external_id)
                                .bind(&i.label)
                                .bind(sealed.as_stored())
                                .bind(i.enabled)
                                .bind(is_default)
                                .bind(i.scope.as_str())
                                .bind(profile_ids_json(&i.profile_ids))
                                .bind(&i.bound_profile_id)
                                .bind(Status::Active.as_str())
                                .bind(&i.created_at)
                                .bind(&i.updated_at)
                                .bind(&hash)
                                .execute(&mut *tx)
                                .await?;
                                let mut notes = Vec::new();
                                if i.is_default && !is_default {
                                    notes.push(match default {
                                        Some((other,)) => format!(
                                            "not the default: {other} is the user's default integration"
                                        ),
                                        None => format!("not the default: a {kind} integration cannot be"),
                                    });
                                }
                                ImportOutcome::Imported(notes)
                            }
                        }
                    }
                    ImportRow::Secret(s) => {
                        let checked =
                            validate_name(&s.name).and_then(|()| validate_value(&s.value));
                        let here: Option<(String,)> =
                            sqlx::query_as("SELECT user_id FROM user_secrets WHERE id = $1")
                                .bind(&s.id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        let same_name: Option<(String,)> = sqlx::query_as(
                            "SELECT id FROM user_secrets WHERE user_id = $1 AND name = $2",
                        )
                        .bind(user_id)
                        .bind(&s.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match (here, same_name, checked) {
                            (Some((owner,)), ..) if owner == user_id => {
                                ImportOutcome::AlreadyImported
                            }
                            (Some(_), ..) => ImportOutcome::Skipped(
                                "a secret of another user has this id".into(),
                            ),
                            (None, _, Err(e)) => ImportOutcome::Skipped(e.to_string()),
                            (None, Some((other,)), Ok(())) => ImportOutcome::Skipped(format!(
                                "the user has a secret of this name already ({other})"
                            )),
                            (None, None, Ok(())) => {
                                let sealed = keyring.seal_secret(&s.id, user_id, &s.value);
                                sqlx::query(
                                    "INSERT INTO user_secrets (id, user_id, name, encrypted_value, scope, profile_ids, \
                                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                )
                                .bind(&s.id)
                                .bind(user_id)
                                .bind(&s.name)
                                .bind(sealed.as_stored())
                                .bind(s.scope.as_str())
                                .bind(profile_ids_json(&s.profile_ids))
                                .bind(&s.created_at)
                                .bind(&s.updated_at)
                                .execute(&mut *tx)
                                .await?;
                                ImportOutcome::Imported(Vec::new())
                            }
                        }
                    }
                };
                outcomes.push(outcome);
            }
            if dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
        });
        Ok(outcomes)
    }
}
