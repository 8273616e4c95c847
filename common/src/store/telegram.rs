//! Telegram's server side in the store: the bots a webhook belongs to,
//! pairing a chat (found again by a keyed hash in `chat_hash`, one indexed
//! read however many users share the platform's bot), claiming
//! notification threads of one profile, and the outbox of inbound messages
//! the platform consumes, one row per Telegram update.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::crypto::Keyring;
use crate::ids::random_token;
use crate::model::{Integration, IntegrationType};

use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, begin_for_user, now, with_pool};

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
    /// The bot and the Telegram update the message came in: one row per
    /// pair, however often Telegram redelivers the update.
    pub bot_id: String,
    pub update_id: i64,
    /// Continue the newest open thread of this chat and of `profile_id` (a
    /// reply without a tap): its session is claimed with the row, and the
    /// text says `[Switched to <label> thread]`.
    pub continue_thread: bool,
}

/// A notification thread that a tap or a reply claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedThread {
    pub session_id: String,
    pub label: Option<String>,
    pub message_id: i64,
}

/// What a paired chat's `chat_hash` is a keyed hash of.
fn chat_hash(keyring: &Keyring, bot_id: &str, chat_id: i64) -> String {
    keyring.lookup_hash(&format!("telegram_chat|{bot_id}|{chat_id}"))
}

/// The bot of a Telegram row: its external id `<bot>` or `<bot>:<user>`.
fn bot_of(integration: &Integration) -> &str {
    let external = integration.external_id.as_deref().unwrap_or_default();
    external.split(':').next().unwrap_or_default()
}

/// The chat a Telegram row is paired with, from its sealed config.
fn paired_chat(keyring: &Keyring, integration: &Integration) -> Result<Option<i64>, StoreError> {
    let config = keyring.open_config(integration)?;
    let chat = config
        .get(IntegrationType::Telegram, "owner_chat_id")
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(chat.and_then(|c| c.parse().ok()))
}

const SWAP_PAIRED: &str = "UPDATE user_integrations SET encrypted_config = $1, chat_hash = $2 \
     WHERE id = $3 AND encrypted_config = $4";

/// The oldest `sent_at` still within [`THREAD_WINDOW`].
fn window_start() -> String {
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
        keyring: &Keyring,
        bot_user_id: &str,
        chat_id: i64,
    ) -> Result<Option<Integration>, StoreError> {
        let hash = chat_hash(keyring, bot_user_id, chat_id);
        let rows = with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> = sqlx::query_as(select_integrations!(
                "WHERE chat_hash = $1 AND type = $2 ORDER BY created_at, id LIMIT 2"
            ))
            .bind(&hash)
            .bind(IntegrationType::Telegram.as_str())
            .fetch_all(pool)
            .await?;
            integrations(rows)?
        });
        for row in rows {
            if bot_of(&row) == bot_user_id && paired_chat(keyring, &row)? == Some(chat_id) {
                return Ok(Some(row));
            }
        }
        Ok(None)
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
        let hash = chat_hash(keyring, bot_of(integration), chat_id);
        self.swap_paired(integration, &sealed.0, &hash).await
    }

    async fn swap_paired(
        &self,
        integration: &Integration,
        sealed: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query(SWAP_PAIRED)
                .bind(sealed)
                .bind(hash)
                .bind(&integration.id)
                .bind(&integration.sealed.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Gives every paired Telegram row a `chat_hash` under the keyring's
    /// first key: rows paired before hashes existed, or hashed under a key
    /// that has since stopped being the first (after `keys rotate`). The
    /// server runs it at start, when its keyring is new; a row whose config
    /// does not open is left as it was. Returns the rows re-hashed.
    pub async fn rehash_telegram_chats(&self, keyring: &Keyring) -> Result<u64, StoreError> {
        let prefix = format!("{}.", keyring.primary_kid());
        let mut after = String::new();
        let mut rehashed = 0;
        loop {
            let page = with_pool!(self, |pool| {
                let rows: Vec<IntegrationRow> = sqlx::query_as(select_integrations!(
                    "WHERE type = $1 AND (chat_hash IS NULL OR substr(chat_hash, 1, $2) <> $3) \
                     AND id > $4 ORDER BY id LIMIT 256"
                ))
                .bind(IntegrationType::Telegram.as_str())
                .bind(prefix.len() as i32)
                .bind(&prefix)
                .bind(&after)
                .fetch_all(pool)
                .await?;
                integrations(rows)?
            });
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for row in page {
                match paired_chat(keyring, &row) {
                    Ok(Some(chat)) => {
                        let hash = chat_hash(keyring, bot_of(&row), chat);
                        if self.swap_paired(&row, &row.sealed.0, &hash).await? {
                            rehashed += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(integration = %row.id, error = %e, "a Telegram row's chat was not re-hashed")
                    }
                }
            }
        }
        Ok(rehashed)
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

    /// Writes one inbound message to the outbox, claiming the thread it
    /// continues in the same transaction; `None` (and no claim) when the
    /// outbox already holds this bot's update.
    pub async fn add_inbound(
        &self,
        new: &NewInbound,
    ) -> Result<Option<InboundMessage>, StoreError> {
        let id = format!("inb_{}", random_token(21));
        Ok(with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &new.user_id).await?;
            let claimed = if new.continue_thread {
                sqlx::query_as::<_, ClaimedThread>(
                    "UPDATE telegram_threads SET claimed_at = $1 \
                     WHERE (integration_id, chat_id, message_id) IN ( \
                       SELECT integration_id, chat_id, message_id FROM telegram_threads \
                       WHERE integration_id = $2 AND chat_id = $3 AND profile_id = $4 \
                       AND claimed_at IS NULL AND dismissed_at IS NULL AND sent_at >= $5 \
                       ORDER BY sent_at DESC, message_id DESC LIMIT 1) \
                     AND claimed_at IS NULL AND dismissed_at IS NULL \
                     RETURNING session_id, label, message_id",
                )
                .bind(now())
                .bind(&new.integration_id)
                .bind(&new.chat_id)
                .bind(&new.profile_id)
                .bind(window_start())
                .fetch_optional(&mut *tx)
                .await?
            } else {
                None
            };
            let text = match &claimed {
                Some(thread) => format!(
                    "[Switched to {} thread] {}",
                    thread.label.as_deref().unwrap_or("agent"),
                    new.text
                ),
                None => new.text.clone(),
            };
            let written = sqlx::query_as::<_, InboundMessage>(
                "INSERT INTO inbound_messages (id, user_id, profile_id, integration_id, chat_id, text, command, claimed_session_id, received_at, bot_id, update_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING \
                 RETURNING seq, id, user_id, profile_id, integration_id, chat_id, text, command, claimed_session_id, received_at",
            )
            .bind(&id)
            .bind(&new.user_id)
            .bind(&new.profile_id)
            .bind(&new.integration_id)
            .bind(&new.chat_id)
            .bind(&text)
            .bind(&new.command)
            .bind(claimed.map(|t| t.session_id))
            .bind(now())
            .bind(&new.bot_id)
            .bind(new.update_id)
            .fetch_optional(&mut *tx)
            .await?;
            // A redelivered update: the claim above is rolled back with it.
            if written.is_some() {
                tx.commit().await?;
            }
            written
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
