//! The store side of the connect flows: single-use keys (OAuth `state`
//! values bound to a browser, Teller nonces, Telegram link codes) and
//! connecting an integration in place.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use model::clock::unix_now;
use model::config::ValidConfig;
use model::ids::random_secret;
use model::sealing::Sealer;
use model::{Integration, IntegrationType, ReauthReason, Scope, Status};

use super::chat_hash::chat_hash;
use super::identities::identity_taken;
use super::integrations::NewIntegration;
use super::rows::{IntegrationRow, select_integrations};
use super::tokens::sha256_hex;
use super::{Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool};

/// Random characters of a key (192 bits).
const KEY_LEN: usize = 32;

/// What a key was issued for; a key spends only for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SlackState,
    GmailState,
    TellerNonce,
    /// A Telegram bot's link code; its verifier is the integration id.
    TelegramLink,
    /// A single-use sign-in link of the Settings page.
    DashboardSignIn,
    /// A single-use link to reconnect one integration; its verifier is the
    /// integration id.
    Reconnect,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::SlackState => "slack_state",
            Self::GmailState => "gmail_state",
            Self::TellerNonce => "teller_nonce",
            Self::TelegramLink => "telegram_link",
            Self::DashboardSignIn => "dashboard_sign_in",
            Self::Reconnect => "reconnect",
        }
    }
}

/// A spent key: whose it was.
#[derive(Debug)]
pub struct SpentKey {
    pub user_id: String,
}

/// What spending an OAuth `state` found.
#[derive(Debug)]
pub enum SpentState {
    /// Missing, altered, expired, spent, or issued for another purpose.
    Unknown,
    /// Issued to a browser that did not come back with it: spent, and to
    /// be refused.
    OtherBrowser,
    /// Spent by the browser that started the flow.
    Spent {
        user_id: String,
        /// The PKCE verifier sealed beside the state, opened.
        verifier: Option<Zeroizing<String>>,
    },
}

impl Store {
    /// Issues a single-use key for `purpose`, bound to `user_id` and valid
    /// for `ttl`, with a `verifier` if any (a Telegram link code's
    /// integration id); only its SHA-256 is kept. Expired keys are swept on
    /// the way.
    pub async fn issue_connect_key(
        &self,
        user_id: &str,
        purpose: Purpose,
        verifier: Option<&str>,
        ttl: Duration,
    ) -> Result<Zeroizing<String>, StoreError> {
        let key = random_secret("", KEY_LEN);
        let hash = sha256_hex(&key);
        self.insert_key(&hash, user_id, purpose, verifier, None, ttl)
            .await?;
        Ok(key)
    }

    /// Issues the `state` of an OAuth flow for `purpose`, bound to `user_id`
    /// and to the browser that holds `binding` (a cookie; only its SHA-256 is
    /// kept), with the PKCE `verifier`, if any, sealed beside it.
    pub async fn issue_oauth_state(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        purpose: Purpose,
        binding: &str,
        verifier: Option<&str>,
        ttl: Duration,
    ) -> Result<Zeroizing<String>, StoreError> {
        let key = random_secret("", KEY_LEN);
        let hash = sha256_hex(&key);
        let sealed = verifier.map(|v| keyring.seal_verifier(&hash, user_id, v));
        self.insert_key(
            &hash,
            user_id,
            purpose,
            sealed.as_deref(),
            Some(&sha256_hex(binding)),
            ttl,
        )
        .await?;
        Ok(key)
    }

    async fn insert_key(
        &self,
        hash: &str,
        user_id: &str,
        purpose: Purpose,
        verifier: Option<&str>,
        binding_sha256: Option<&str>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM connect_keys WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO connect_keys (key_sha256, user_id, purpose, verifier, binding_sha256, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(hash)
            .bind(user_id)
            .bind(purpose.as_str())
            .bind(verifier)
            .bind(binding_sha256)
            .bind(now + ttl.as_secs() as i64)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Spends `key` if it was issued for `purpose` by
    /// [`Store::issue_connect_key`] and has not expired: it works once,
    /// whoever races for it. `None` for a missing, altered, expired, spent
    /// or other-purpose key, and for an OAuth state (which only
    /// [`Store::spend_oauth_state`] spends).
    pub async fn spend_connect_key(
        &self,
        key: &str,
        purpose: Purpose,
    ) -> Result<Option<SpentKey>, StoreError> {
        let spent: Option<(String,)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "DELETE FROM connect_keys WHERE key_sha256 = $1 AND purpose = $2 AND expires_at >= $3 \
                 AND binding_sha256 IS NULL RETURNING user_id",
            )
            .bind(sha256_hex(key))
            .bind(purpose.as_str())
            .bind(unix_now())
            .fetch_optional(pool)
            .await?
        });
        Ok(spent.map(|(user_id,)| SpentKey { user_id }))
    }

    /// Spends the OAuth state `key` of `purpose`, once, whoever races for
    /// it; `binding` is the cookie the callback's browser brought back. A
    /// state that comes back without its browser's cookie is spent too, and
    /// answers [`SpentState::OtherBrowser`].
    pub async fn spend_oauth_state(
        &self,
        keyring: &dyn Sealer,
        key: &str,
        purpose: Purpose,
        binding: Option<&str>,
    ) -> Result<SpentState, StoreError> {
        let hash = sha256_hex(key);
        let spent: Option<(String, Option<String>, String)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "DELETE FROM connect_keys WHERE key_sha256 = $1 AND purpose = $2 AND expires_at >= $3 \
                 AND binding_sha256 IS NOT NULL RETURNING user_id, verifier, binding_sha256",
            )
            .bind(&hash)
            .bind(purpose.as_str())
            .bind(unix_now())
            .fetch_optional(pool)
            .await?
        });
        let Some((user_id, verifier, bound_to)) = spent else {
            return Ok(SpentState::Unknown);
        };
        // Hashes of a random cookie: comparing them reveals nothing usable.
        if binding.map(sha256_hex).as_deref() != Some(bound_to.as_str()) {
            return Ok(SpentState::OtherBrowser);
        }
        let verifier = verifier
            .map(|sealed| keyring.open_verifier(&hash, &user_id, &sealed))
            .transpose()?;
        Ok(SpentState::Spent { user_id, verifier })
    }

    /// Spends the link code `key` if it belongs to a row of the Telegram
    /// bot `bot_user_id` (a code of another bot stays unspent): one `DELETE`
    /// by the code's hash, whatever the number of rows of the bot. The row
    /// it pairs.
    pub async fn spend_link_code(
        &self,
        key: &str,
        bot_user_id: &str,
    ) -> Result<Option<Integration>, StoreError> {
        let hash = sha256_hex(key);
        let pattern = format!("{bot_user_id}:%");
        let spent: Option<Option<String>> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "DELETE FROM connect_keys WHERE key_sha256 = $1 AND purpose = $2 AND expires_at >= $3 \
                 AND EXISTS (SELECT 1 FROM user_integrations u WHERE u.id = connect_keys.verifier \
                   AND u.type = $4 AND (u.external_id = $5 OR u.external_id LIKE $6)) \
                 RETURNING verifier",
            )
            .bind(&hash)
            .bind(Purpose::TelegramLink.as_str())
            .bind(unix_now())
            .bind(IntegrationType::Telegram.as_str())
            .bind(bot_user_id)
            .bind(&pattern)
            .fetch_optional(pool)
            .await?
        });
        match spent.flatten() {
            Some(id) => self.integration(&id).await,
            None => Ok(None),
        }
    }

    /// Spends the reconnect link `key` if it was issued to `user_id`: the id
    /// of the integration it reconnects. A key issued to another user, like
    /// a missing, spent or expired one, answers `None` and stays as it is,
    /// so that its own user can still use it.
    pub async fn spend_reconnect_key(
        &self,
        key: &str,
        user_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let spent: Option<Option<String>> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "DELETE FROM connect_keys WHERE key_sha256 = $1 AND purpose = $2 AND expires_at >= $3 \
                 AND user_id = $4 AND binding_sha256 IS NULL RETURNING verifier",
            )
            .bind(sha256_hex(key))
            .bind(Purpose::Reconnect.as_str())
            .bind(unix_now())
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(spent.flatten())
    }

    /// Drops the outstanding link codes of `integration_id`.
    pub async fn drop_link_codes(&self, integration_id: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM connect_keys WHERE purpose = $1 AND verifier = $2")
                .bind(Purpose::TelegramLink.as_str())
                .bind(integration_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Connects an integration of `kind` for `user_id` from a provider's
    /// grant, whose identity the provider vouched for: the row that holds
    /// that identity gets the new config in place when it is the user's
    /// (Conflict when it is another user's); otherwise the user's row of a
    /// one-per-user type (Slack, Gmail) takes the grant and its identity in
    /// place; otherwise a new row granted to every profile. In place, a row
    /// keeps its id, label and scope, and turns `active` again. Returns the
    /// row and whether it is new.
    pub async fn connect_integration(
        &self,
        keyring: &dyn Sealer,
        user_id: &str,
        kind: IntegrationType,
        config: &ValidConfig,
    ) -> Result<(Integration, bool), StoreError> {
        let replaced = with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            let holder: Option<IntegrationRow> = match &config.external_id {
                Some(external) => {
                    sqlx::query_as(select_integrations!("WHERE type = $1 AND external_id = $2"))
                        .bind(kind.as_str())
                        .bind(external)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            let existing: Option<IntegrationRow> = match holder {
                Some(row) => Some(row),
                None if !kind.allows_many_per_user() => {
                    sqlx::query_as(select_integrations!("WHERE user_id = $1 AND type = $2"))
                        .bind(user_id)
                        .bind(kind.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            match existing {
                None => None,
                Some(row) => {
                    let mut integration = Integration::try_from(row)?;
                    if integration.user_id != user_id {
                        return Err(StoreError::Conflict(identity_taken(kind)));
                    }
                    let sealed =
                        keyring.seal_config(&integration.id, user_id, kind, &config.config);
                    let hash =
                        chat_hash(keyring, kind, config.external_id.as_deref(), &config.config);
                    let at = now();
                    sqlx::query(
                        "UPDATE user_integrations SET encrypted_config = $1, status = $2, updated_at = $3, connected_at = $3, \
                         chat_hash = $4, external_id = $5, status_reason = NULL, status_detail = NULL, \
                         status_since = NULL WHERE id = $6",
                    )
                    .bind(sealed.as_stored())
                    .bind(Status::Active.as_str())
                    .bind(&at)
                    .bind(&hash)
                    .bind(&config.external_id)
                    .bind(&integration.id)
                    .execute(&mut *tx)
                    .await
                    // Another user's row took it at the same moment.
                    .map_err(conflict_on_unique(|| identity_taken(kind)))?;
                    tx.commit().await?;
                    integration.sealed = sealed;
                    integration.external_id = config.external_id.clone();
                    integration.status = Status::Active;
                    integration.status_note = None;
                    integration.updated_at = at;
                    Some(integration)
                }
            }
        });
        if let Some(integration) = replaced {
            return Ok((integration, false));
        }
        let new = NewIntegration {
            user_id: user_id.to_string(),
            kind,
            label: None,
            is_default: false,
            scope: Scope::All,
            profile_ids: Vec::new(),
            bound_profile_id: None,
        };
        Ok((self.add_integration(keyring, &new, config).await?, true))
    }

    /// Marks the Teller enrollment `enrollment_id` `needs_reauth` (Teller's
    /// `enrollment.disconnected` webhook, of an event that `happened_at`),
    /// unless the row was connected again since: a late event does not undo
    /// a reconnect. `false` when no row was marked (none, one already
    /// marked, or one connected since).
    pub async fn mark_enrollment_disconnected(
        &self,
        enrollment_id: &str,
        happened_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let happened_at = humantime::format_rfc3339_micros(happened_at).to_string();
        let changed = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE user_integrations SET status = $1, updated_at = $2, status_since = $2, status_reason = $3, \
                 status_detail = $4 WHERE type = $5 AND external_id = $6 AND COALESCE(connected_at, created_at) < $7 \
                 AND status <> $1",
            )
            .bind(Status::NeedsReauth.as_str())
            .bind(now())
            .bind(ReauthReason::EnrollmentDisconnected.as_str())
            .bind("Teller says the enrollment was disconnected: the bank asks the user to sign in again.")
            .bind(IntegrationType::Teller.as_str())
            .bind(enrollment_id)
            .bind(&happened_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed > 0)
    }
}
