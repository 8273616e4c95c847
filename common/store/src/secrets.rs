//! Per-agent user secrets: named values sealed under the keyring like
//! configs (with their own associated data), granted to profiles by the same
//! scope rules as integrations.

use zeroize::Zeroizing;

use model::ids::{new_secret_id, validate_ident};
use model::scope;
use model::sealing::Sealer;
use model::{Profile, Scope, SealedConfig, Secret};

use super::rows::{ProfileRow, profile_ids_json, profiles, select_profiles};
use super::{Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool};

const MAX_NAME: usize = 128;
/// The longest value, in characters: with JSON's worst escaping (six bytes a
/// character) it still fits in a request body of 64 KiB.
const MAX_VALUE: usize = 8 * 1024;

/// The columns of `user_secrets`, in [`SecretRow`] order.
macro_rules! select_secrets {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, name, encrypted_value, scope, profile_ids, created_at, updated_at \
             FROM user_secrets ",
            $rest
        )
    };
}

/// A secret to create. (No `Debug`: it holds the value.)
pub struct NewSecret {
    pub user_id: String,
    /// `^[A-Z_][A-Z0-9_]*$`, at most 128 characters.
    pub name: String,
    /// At most 8192 characters, no NUL (it becomes an environment value).
    pub value: Zeroizing<String>,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
}

/// The fields of a secret to change; `None` keeps the current value. (No
/// `Debug`: it may hold the value.)
#[derive(Default)]
pub struct SecretUpdate {
    pub name: Option<String>,
    pub value: Option<Zeroizing<String>>,
    /// With `profile_ids`, as for integrations: one given alone is merged
    /// with the row's current value.
    pub scope: Option<Scope>,
    pub profile_ids: Option<Vec<String>>,
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    id: String,
    user_id: String,
    name: String,
    encrypted_value: String,
    scope: String,
    profile_ids: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<SecretRow> for Secret {
    type Error = StoreError;

    fn try_from(row: SecretRow) -> Result<Self, StoreError> {
        let corrupt = |column: &str| {
            StoreError::Invalid(format!(
                "secret {} has an unreadable {column} column",
                row.id
            ))
        };
        Ok(Secret {
            scope: row.scope.parse().map_err(|_| corrupt("scope"))?,
            profile_ids: serde_json::from_str(&row.profile_ids)
                .map_err(|_| corrupt("profile_ids"))?,
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sealed: SealedConfig::from_stored(row.encrypted_value),
        })
    }
}

fn secrets(rows: Vec<SecretRow>) -> Result<Vec<Secret>, StoreError> {
    rows.into_iter().map(Secret::try_from).collect()
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "secret",
        id: id.to_string(),
    }
}

impl Store {
    /// Creates a secret: checks its name and value, normalizes its scope
    /// against the user's profiles and seals the value, in one transaction;
    /// Conflict when the user has a secret of that name already.
    pub async fn add_secret(
        &self,
        keyring: &dyn Sealer,
        new: &NewSecret,
    ) -> Result<Secret, StoreError> {
        validate_ident("user id", &new.user_id).map_err(StoreError::Invalid)?;
        validate_name(&new.name)?;
        validate_value(&new.value)?;
        let id = new_secret_id();
        let at = now();
        let mut secret = Secret {
            sealed: keyring.seal_secret(&id, &new.user_id, &new.value),
            id,
            user_id: new.user_id.clone(),
            name: new.name.clone(),
            scope: new.scope,
            profile_ids: Vec::new(),
            created_at: at.clone(),
            updated_at: at,
        };
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &new.user_id).await?;
            let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!("WHERE user_id = $1"))
                .bind(&new.user_id)
                .fetch_all(&mut *tx)
                .await?;
            secret.profile_ids = scope::normalize(new.scope, &new.profile_ids, &profiles(rows))?;
            sqlx::query(
                "INSERT INTO user_secrets (id, user_id, name, encrypted_value, scope, profile_ids, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(&secret.id)
            .bind(&secret.user_id)
            .bind(&secret.name)
            .bind(secret.sealed.as_stored())
            .bind(secret.scope.as_str())
            .bind(profile_ids_json(&secret.profile_ids))
            .bind(&secret.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique(|| duplicate(&secret.name)))?;
            tx.commit().await?;
        });
        Ok(secret)
    }

    /// The user's secrets, oldest first (values sealed).
    pub async fn secrets(&self, user_id: &str) -> Result<Vec<Secret>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<SecretRow> = sqlx::query_as(select_secrets!(
                "WHERE user_id = $1 ORDER BY created_at, id"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            secrets(rows)
        })
    }

    /// One of the user's secrets; `None` when it is missing or another user's.
    pub async fn secret(&self, user_id: &str, id: &str) -> Result<Option<Secret>, StoreError> {
        with_pool!(self, |pool| {
            let row: Option<SecretRow> =
                sqlx::query_as(select_secrets!("WHERE id = $1 AND user_id = $2"))
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?;
            row.map(Secret::try_from).transpose()
        })
    }

    /// Applies every given field of `update` to one of the user's secrets in
    /// one transaction; NotFound when it is missing or another user's. Only
    /// one of scope/profile_ids given is merged with the row's current value
    /// (scope `all` clears the ids; ids alone on an `all` row switch it to
    /// `agents`). Returns the updated row.
    pub async fn update_secret(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        id: &str,
        update: &SecretUpdate,
    ) -> Result<Secret, StoreError> {
        if let Some(name) = &update.name {
            validate_name(name)?;
        }
        if let Some(value) = &update.value {
            validate_value(value)?;
        }
        let at = now();
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            let row: Option<SecretRow> =
                sqlx::query_as(select_secrets!("WHERE id = $1 AND user_id = $2"))
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let current = Secret::try_from(row.ok_or_else(|| not_found(id))?)?;
            let user_profiles = if update.scope.is_some() || update.profile_ids.is_some() {
                let rows: Vec<ProfileRow> = sqlx::query_as(select_profiles!("WHERE user_id = $1"))
                    .bind(user_id)
                    .fetch_all(&mut *tx)
                    .await?;
                profiles(rows)
            } else {
                Vec::new()
            };
            let updated = updated_secret(keyring, current, update, &user_profiles, at)?;
            let done = sqlx::query(
                "UPDATE user_secrets SET name = $1, encrypted_value = $2, scope = $3, \
                 profile_ids = $4, updated_at = $5 WHERE id = $6",
            )
            .bind(&updated.name)
            .bind(updated.sealed.as_stored())
            .bind(updated.scope.as_str())
            .bind(profile_ids_json(&updated.profile_ids))
            .bind(&updated.updated_at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique(|| duplicate(&updated.name)))?;
            // Only PostgreSQL lets a delete (which takes no lock) in here.
            if done.rows_affected() == 0 {
                return Err(not_found(id));
            }
            tx.commit().await?;
            Ok(updated)
        })
    }

    /// Deletes one of the user's secrets; NotFound when it is not theirs.
    pub async fn delete_secret(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM user_secrets WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// The secrets granted to `profile_id`, as `(name, value)` sorted by
    /// name: scope `all` or listing the profile, which must be alive and of
    /// `user_id` (an unknown or deleted profile is granted nothing).
    pub async fn granted_secrets(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        profile_id: &str,
    ) -> Result<Vec<(String, Zeroizing<String>)>, StoreError> {
        // One statement: the profile check and the rows see the same state.
        let rows: Vec<SecretRow> = with_pool!(self, |pool| {
            sqlx::query_as(select_secrets!(
                "WHERE user_id = $1 AND EXISTS \
                 (SELECT 1 FROM profiles WHERE id = $2 AND profiles.user_id = $1)"
            ))
            .bind(user_id)
            .bind(profile_id)
            .fetch_all(pool)
            .await?
        });
        let mut granted = Vec::new();
        for secret in secrets(rows)? {
            if scope::reaches(secret.scope, &secret.profile_ids, profile_id) {
                let value = keyring.open_secret(&secret)?;
                granted.push((secret.name, value));
            }
        }
        // Sorted here: PostgreSQL's collation may not sort '_' bytewise.
        granted.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(granted)
    }
}

/// `current` with `update` applied: the value re-sealed, the scope merged and
/// normalized against `user_profiles`.
fn updated_secret(
    keyring: &dyn Sealer,
    mut secret: Secret,
    update: &SecretUpdate,
    user_profiles: &[Profile],
    at: String,
) -> Result<Secret, StoreError> {
    let current = (secret.scope, secret.profile_ids.as_slice());
    if let Some((scope, ids)) = scope::merge(current, update.scope, update.profile_ids.as_deref()) {
        secret.profile_ids = scope::normalize(scope, ids, user_profiles)?;
        secret.scope = scope;
    }
    if let Some(name) = &update.name {
        secret.name = name.clone();
    }
    if let Some(value) = &update.value {
        secret.sealed = keyring.seal_secret(&secret.id, &secret.user_id, value);
    }
    secret.updated_at = at;
    Ok(secret)
}

fn duplicate(name: &str) -> String {
    format!("a secret named {name} exists already")
}

/// A secret's name is an environment variable name: `^[A-Z_][A-Z0-9_]*$`, at
/// most 128 characters. The refusal does not repeat it.
pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= MAX_NAME
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid secret name: use 1 to {MAX_NAME} characters of A-Z, 0-9 and _, not starting with a digit"
        )))
    }
}

/// The JSON Schema of a secret's name, as [`validate_name`] checks it.
pub fn secret_name_schema() -> serde_json::Value {
    serde_json::json!({"type": "string", "pattern": format!("^[A-Z_][A-Z0-9_]{{0,{}}}$", MAX_NAME - 1)})
}

/// The JSON Schema of a secret's value, as [`validate_value`] checks it.
pub fn secret_value_schema() -> serde_json::Value {
    serde_json::json!({"type": "string", "maxLength": MAX_VALUE, "pattern": "^[^\\u0000]*$"})
}

/// A secret's value: at most [`MAX_VALUE`] characters, no NUL. The refusal
/// never repeats it.
pub(crate) fn validate_value(value: &str) -> Result<(), StoreError> {
    if value.chars().count() > MAX_VALUE {
        return Err(StoreError::Invalid(format!(
            "a secret value may be at most {MAX_VALUE} characters"
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::Invalid(
            "a secret value cannot contain a NUL character (it becomes an environment variable)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_environment_variable_names() {
        for good in ["A", "_", "OPENAI_API_KEY", "_X1", &"A".repeat(MAX_NAME)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "a", "A-B", "A B", "É", &"A".repeat(MAX_NAME + 1)] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid secret name"), "{bad}: {err}");
        }
    }

    #[test]
    fn values_are_bounded_and_never_repeated_in_the_refusal() {
        assert!(validate_value("").is_ok());
        assert!(validate_value(&"x".repeat(MAX_VALUE)).is_ok());
        for bad in ["SECRET".repeat(MAX_VALUE / 6 + 1), "SECRET\0".into()] {
            let err = validate_value(&bad).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{err}");
        }
    }
}
