//! Telegram's server side in the store: the bots a webhook belongs to,
//! pairing a chat, claiming notification threads, and the outbox of inbound
//! messages the platform consumes.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::crypto::Keyring;
use crate::ids::random_token;
use crate::model::{Integration, IntegrationType};

use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, now, with_pool};

/// A notification's thread row stays claimable this long.
pub const THREAD_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A message written to the outbox, as `GET /v1/inbound` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct InboundMessage {
    /// The cursor: pass the last one seen as `after`.
    pub seq: i64,
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub integration_id: String,
    pub chat_id: String,
    pub text: String,
    /// `new`, `end`, `agents` or `help` for a bot command; null for a message.
    pub command: Option<String>,
    /// The agent session of the thread this message continues, if any.
    pub claimed_session_id: Option<String>,
    pub received_at: String,
}

/// An inbound message to write.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub user_id: String,
    pub profile_id: String,
    pub integration_id: String,
    pub chat_id: String,
    pub text: String,
    pub command: Option<String>,
    pub claimed_session_id: Option<String>,
}

/// A notification thread that a tap or a reply claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedThread {
    pub session_id: String,
    pub label: Option<String>,
    pub message_id: i64,
}

/// The oldest `sent_at` still within [`THREAD_WINDOW`].
fn window_start() -> String {
    let start = SystemTime::now()
        .checked_sub(THREAD_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_micros(start).to_string()
}

impl Store {
    /// The rows of the Telegram bot `bot_user_id`: a user's own bot, or every
    /// user's pairing of the platform's bot (external id `<bot>:<user>`).
    pub async fn telegram_bots(&self, bot_user_id: &str) -> Result<Vec<Integration>, StoreError> {
        let pattern = format!("{bot_user_id}:%");
        with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> = sqlx::query_as(select_integrations!(
                "WHERE type = $1 AND (external_id = $2 OR external_id LIKE $3) ORDER BY created_at, id"
            ))
            .bind(IntegrationType::Telegram.as_str())
            .bind(bot_user_id)
            .bind(&pattern)
            .fetch_all(pool)
            .await?;
            integrations(rows)
        })
    }

    /// Pairs `integration` with its owner's private chat, unless another
    /// writer changed the row first (`false`).
    pub async fn link_telegram_chat(
        &self,
        keyring: &Keyring,
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
        self.swap_sealed(&integration.id, &integration.sealed, &sealed)
            .await
    }

    /// Claims the thread row of the notification `notification_id` on
    /// `integration_id`, once: `None` when it is missing, older than
    /// [`THREAD_WINDOW`], or already claimed or dismissed.
    pub async fn claim_thread(
        &self,
        integration_id: &str,
        notification_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        self.end_thread("claimed_at", integration_id, notification_id)
            .await
    }

    /// Dismisses it ("Keep my chat"), with the same rules as a claim.
    pub async fn dismiss_thread(
        &self,
        integration_id: &str,
        notification_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        self.end_thread("dismissed_at", integration_id, notification_id)
            .await
    }

    async fn end_thread(
        &self,
        column: &'static str,
        integration_id: &str,
        notification_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        let sql = format!(
            "UPDATE telegram_threads SET {column} = $1 \
             WHERE integration_id = $2 AND notification_id = $3 AND claimed_at IS NULL \
             AND dismissed_at IS NULL AND sent_at >= $4 \
             RETURNING session_id, label, message_id"
        );
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, ClaimedThread>(&sql)
                .bind(now())
                .bind(integration_id)
                .bind(notification_id)
                .bind(window_start())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Claims the newest open thread of `chat_id` on `integration_id` (a
    /// reply without a tap), once.
    pub async fn claim_newest_thread(
        &self,
        integration_id: &str,
        chat_id: &str,
    ) -> Result<Option<ClaimedThread>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, ClaimedThread>(
                "UPDATE telegram_threads SET claimed_at = $1 \
                 WHERE (integration_id, chat_id, message_id) IN ( \
                   SELECT integration_id, chat_id, message_id FROM telegram_threads \
                   WHERE integration_id = $2 AND chat_id = $3 AND claimed_at IS NULL \
                   AND dismissed_at IS NULL AND sent_at >= $4 \
                   ORDER BY sent_at DESC, message_id DESC LIMIT 1) \
                 AND claimed_at IS NULL AND dismissed_at IS NULL \
                 RETURNING session_id, label, message_id",
            )
            .bind(now())
            .bind(integration_id)
            .bind(chat_id)
            .bind(window_start())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Writes one inbound message to the outbox.
    pub async fn add_inbound(&self, new: &NewInbound) -> Result<InboundMessage, StoreError> {
        let id = format!("inb_{}", random_token(21));
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, InboundMessage>(
                "INSERT INTO inbound_messages (id, user_id, profile_id, integration_id, chat_id, text, command, claimed_session_id, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING seq, id, user_id, profile_id, integration_id, chat_id, text, command, claimed_session_id, received_at",
            )
            .bind(&id)
            .bind(&new.user_id)
            .bind(&new.profile_id)
            .bind(&new.integration_id)
            .bind(&new.chat_id)
            .bind(&new.text)
            .bind(&new.command)
            .bind(&new.claimed_session_id)
            .bind(now())
            .fetch_one(pool)
            .await?
        }))
    }

    /// The user's inbound messages after the cursor `after`, oldest first,
    /// at most `limit`.
    pub async fn inbound(
        &self,
        user_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<InboundMessage>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, InboundMessage>(
                "SELECT seq, id, user_id, profile_id, integration_id, chat_id, text, command, claimed_session_id, received_at \
                 FROM inbound_messages WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(user_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
