//! Sessions of the Settings page: a single-use sign-in link becomes a
//! session whose secret lives only in the browser's HttpOnly cookie. Only
//! the SHA-256 of a session secret is stored, and every request re-reads
//! its row, so that signing out ends it on every replica at once.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use model::ids::{random_secret, validate_ident};

use super::connect::Purpose;
use super::tokens::sha256_hex;
use super::{Store, StoreError, now, with_pool};

/// What every session secret starts with, so that a leaked one is recognizable.
const PREFIX: &str = "dss_";
/// Random characters after the prefix (192 bits).
const RANDOM_LEN: usize = 32;
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The longest a sign-in link may wait to be opened.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

impl Store {
    /// A single-use sign-in key for `user_id`, valid for `ttl` (at most
    /// [`MAX_LINK_TTL`]); only its SHA-256 is stored.
    pub async fn issue_sign_in_key(
        &self,
        user_id: &str,
        ttl: Duration,
    ) -> Result<Zeroizing<String>, StoreError> {
        validate_ident("user id", user_id).map_err(StoreError::Invalid)?;
        if ttl.is_zero() || ttl > MAX_LINK_TTL {
            return Err(StoreError::Invalid(
                "a sign-in link lives between one second and 24 hours".into(),
            ));
        }
        self.issue_connect_key(user_id, Purpose::DashboardSignIn, None, ttl)
            .await
    }

    /// Spends the sign-in key `key`, once, and opens a session for its user:
    /// the user and the session secret (for the cookie; never stored).
    /// `None` for a key that is unknown, expired or already used.
    pub async fn sign_in(
        &self,
        key: &str,
    ) -> Result<Option<(String, Zeroizing<String>)>, StoreError> {
        let Some(spent) = self
            .spend_connect_key(key, Purpose::DashboardSignIn)
            .await?
        else {
            return Ok(None);
        };
        let secret = random_secret(PREFIX, RANDOM_LEN);
        self.drop_expired_sessions().await?;
        let expires_at =
            humantime::format_rfc3339_micros(SystemTime::now() + SESSION_TTL).to_string();
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO dashboard_sessions (session_sha256, user_id, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(sha256_hex(&secret))
            .bind(&spent.user_id)
            .bind(&expires_at)
            .bind(now())
            .execute(pool)
            .await?;
        });
        Ok(Some((spent.user_id, secret)))
    }

    /// The user of the live session whose secret is `secret`, if any.
    pub async fn user_for_session(&self, secret: &str) -> Result<Option<String>, StoreError> {
        let found: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT user_id FROM dashboard_sessions WHERE session_sha256 = $1 AND expires_at > $2",
            )
            .bind(sha256_hex(secret))
            .bind(now())
            .fetch_optional(pool)
            .await?
        });
        Ok(found.map(|(user,)| user))
    }

    /// Ends the session whose secret is `secret`.
    pub async fn sign_out(&self, secret: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM dashboard_sessions WHERE session_sha256 = $1")
                .bind(sha256_hex(secret))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Ends every session of `user_id` (after a leaked link or session):
    /// how many there were.
    pub async fn sign_out_everywhere(&self, user_id: &str) -> Result<u64, StoreError> {
        self.drop_expired_sessions().await?;
        let ended = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM dashboard_sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(ended)
    }

    /// Drops the sessions that have expired (at each sign-in).
    async fn drop_expired_sessions(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now())
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
