//! API tokens: the bearer credentials of the REST API. Only the SHA-256 of a
//! token is stored; its text is shown once, when it is created.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use model::ids::{new_token_id, random_secret, validate_ident};

use super::{Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool};

/// What every token starts with, so that a leaked one is recognizable.
const PREFIX: &str = "itk_";
/// Random characters after the prefix (192 bits).
const RANDOM_LEN: usize = 32;
const MAX_NAME: usize = 200;
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// An API token as listed: never the token text or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// A presented API token, found: its id (what its mints record) and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub id: String,
    pub user_id: String,
}

impl Store {
    /// Creates a token for `user_id`: returns the row and the token text
    /// (shown once). The token is `itk_` and 32 random URL-safe characters;
    /// only its SHA-256 is stored.
    pub async fn create_api_token(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<(ApiToken, Zeroizing<String>), StoreError> {
        validate_ident("user id", user_id).map_err(StoreError::Invalid)?;
        let token = random_secret(PREFIX, RANDOM_LEN);
        let row = ApiToken {
            id: new_token_id(),
            user_id: user_id.to_string(),
            name: token_name(name)?,
            created_at: now(),
            last_used_at: None,
        };
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_tokens (id, user_id, name, token_sha256, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&row.id)
            .bind(&row.user_id)
            .bind(&row.name)
            .bind(sha256_hex(&token))
            .bind(&row.created_at)
            .execute(pool)
            .await
            .map_err(conflict_on_unique(|| {
                "a token collided with an existing one; create it again".into()
            }))?;
        });
        Ok((row, token))
    }

    /// The user's tokens, oldest first.
    pub async fn api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>, StoreError> {
        with_pool!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens \
                 WHERE user_id = $1 ORDER BY created_at, id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Deletes one of the user's tokens and revokes every capability token
    /// it minted, in one transaction; NotFound when it is not theirs.
    pub async fn revoke_api_token(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound {
                    what: "api token",
                    id: id.to_string(),
                });
            }
            sqlx::query(
                "UPDATE capability_tokens SET revoked_at = $1 \
                 WHERE minted_by = $2 AND user_id = $3 AND revoked_at IS NULL",
            )
            .bind(now())
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The API token a presented token is, or `None` for an unknown or
    /// revoked token. The lookup is by SHA-256, so no comparison ever runs on
    /// the secret itself. Touches `last_used_at` at most once a minute.
    pub async fn user_for_token(&self, token: &str) -> Result<Option<TokenOwner>, StoreError> {
        if !token.starts_with(PREFIX) || token.len() != PREFIX.len() + RANDOM_LEN {
            return Ok(None);
        }
        let hash = sha256_hex(token);
        let found: Option<(String, String, Option<String>)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, user_id, last_used_at FROM api_tokens WHERE token_sha256 = $1",
            )
            .bind(&hash)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, user_id, last_used_at)) = found else {
            return Ok(None);
        };
        let stale = humantime::format_rfc3339_micros(SystemTime::now() - TOUCH_EVERY).to_string();
        if last_used_at.is_none_or(|at| at < stale)
            && let Err(e) = self.touch_token(&id, &stale).await
        {
            // Bookkeeping only: the request goes on.
            tracing::warn!(token = %id, error = %e, "could not record the token's last use");
        }
        Ok(Some(TokenOwner { id, user_id }))
    }

    /// Sets `last_used_at` to now unless another request did since `stale`.
    async fn touch_token(&self, id: &str, stale: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now())
            .bind(id)
            .bind(stale)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// A token's display name: trimmed, non-empty, at most 200 characters.
fn token_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "a token name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(name.to_string())
}

/// The lowercase hex SHA-256 of `token`, as stored.
pub(super) fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_names_are_trimmed_and_bounded() {
        assert_eq!(token_name("  ci deploy ").unwrap(), "ci deploy");
        for bad in ["", "   ", "a\nb", &"x".repeat(MAX_NAME + 1)] {
            assert!(token_name(bad).is_err(), "{bad:?}");
        }
    }
}
