//! Telegram's server side in the store: the bots a webhook belongs to,
//! pairing a chat (found again by a keyed hash in `chat_hash`, one indexed
//! read however many users share the platform's bot), and claiming
//! notification threads of one profile.

use std::time::{Duration, SystemTime};

use model::sealing::Sealer;
use model::{Integration, IntegrationType};

use super::chat_hash::{chat_hash, telegram_chat};
use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, now, with_pool};

/// A notification's thread row stays claimable this long.
pub const THREAD_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A notification thread that a tap or a reply claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedThread {
    pub session_id: String,
    pub label: Option<String>,
    pub message_id: i64,
}

/// The oldest `sent_at` still within [`THREAD_WINDOW`].
pub(crate) fn window_start() -> String {
    let start = SystemTime::now()
        .checked_sub(THREAD_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_micros(start).to_string()
}

impl Store {
    /// Whether any row holds the Telegram bot `bot_user_id`: a user's own
    /// bot, or a pairing of the platform's bot (external id `<bot>:<user>`).
    pub async fn telegram_bot_in_use(&self, bot_user_id: &str) -> Result<bool, StoreError> {
        let pattern = format!("{bot_user_id}:%");
        let found: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM user_integrations WHERE type = $1 AND (external_id = $2 OR external_id LIKE $3) LIMIT 1",
            )
            .bind(IntegrationType::Telegram.as_str())
            .bind(bot_user_id)
            .bind(&pattern)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// The row of a user's own bot `bot_user_id` (one at most).
    pub async fn telegram_own_bot(
        &self,
        bot_user_id: &str,
    ) -> Result<Option<Integration>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> =
                sqlx::query_as(select_integrations!("WHERE type = $1 AND external_id = $2"))
                    .bind(IntegrationType::Telegram.as_str())
                    .bind(bot_user_id)
                    .fetch_all(pool)
                    .await?;
            Ok(integrations(rows)?.into_iter().next())
        })
    }

    /// The row of the bot `bot_user_id` paired with `chat_id`: one indexed
    /// read by `chat_hash`, then that row's config confirms the chat.
    pub async fn telegram_chat(
        &self,
        keyring: &dyn Sealer,
        bot_user_id: &str,
        chat_id: i64,
    ) -> Result<Option<Integration>, StoreError> {
        self.by_surface(
            keyring,
            IntegrationType::Telegram,
            &telegram_chat(bot_user_id, chat_id),
        )
        .await
    }

    /// Pairs `integration` with its owner's private chat, unless another
    /// writer changed the row first (`false`).
    pub async fn link_telegram_chat(
        &self,
        keyring: &dyn Sealer,
        integration: &Integration,
        chat_id: i64,
    ) -> Result<bool, StoreError> {
        let config = keyring.open_config(integration)?;
        let linked = config
            .with_fields(
                IntegrationType::Telegram,
                &[("owner_chat_id", chat_id.into())],
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let sealed = keyring.seal_config(
            &integration.id,
            &integration.user_id,
            IntegrationType::Telegram,
            &linked.config,
        );
        let hash = chat_hash(
            keyring,
            IntegrationType::Telegram,
            integration.external_id.as_deref(),
            &linked.config,
        );
        self.swap_with_hash(integration, sealed.as_stored(), hash.as_deref())
            .await
    }

    /// The profile of the thread row of the notification `notification_id`
    /// on `integration_id`, so that a claim can check its grant first.
    pub async fn thread_profile(
        &self,
        integration_id: &str,
        notification_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT profile_id FROM telegram_threads WHERE integration_id = $1 AND notification_id = $2",
            )
            .bind(integration_id)
            .bind(notification_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.flatten())
    }

    /// Claims the thread row of the notification `notification_id` on
    /// `integration_id`, once, if it belongs to `profile_id` (whose grant
    /// the caller checked): `None` when it is missing, of another profile,
    /// older than [`THREAD_WINDOW`], or already claimed or dismissed.
    pub async fn claim_thread(
        &self,
        integration_id: &str,
        notification_id: &str,
        profile_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        self.end_thread(
            "claimed_at",
            integration_id,
            notification_id,
            Some(profile_id),
        )
        .await
    }

    /// Dismisses it ("Keep my chat"), with the same rules as a claim, of
    /// whichever profile.
    pub async fn dismiss_thread(
        &self,
        integration_id: &str,
        notification_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        self.end_thread("dismissed_at", integration_id, notification_id, None)
            .await
    }

    async fn end_thread(
        &self,
        column: &'static str,
        integration_id: &str,
        notification_id: &str,
        profile_id: Option<&str>,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        let sql = format!(
            "UPDATE telegram_threads SET {column} = $1 \
             WHERE integration_id = $2 AND notification_id = $3 AND claimed_at IS NULL \
             AND dismissed_at IS NULL AND sent_at >= $4 AND ($5 IS NULL OR profile_id = $5) \
             RETURNING session_id, label, message_id"
        );
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, ClaimedThread>(&sql)
                .bind(now())
                .bind(integration_id)
                .bind(notification_id)
                .bind(window_start())
                .bind(profile_id)
                .fetch_optional(pool)
                .await?
        }))
    }
}
