//! What Telegram and Slack share in the store: the outbox of inbound
//! messages the platform consumes (one row per Telegram update or Slack
//! event), the thread a message joins, and the row a message finds in one
//! indexed read: a Slack row by its identity (`external_id`, one row at
//! most), a paired Telegram chat by `chat_hash`, a keyed hash.

use serde::Serialize;

use model::config::identity_value;
use model::ids::random_token;
use model::sealing::Sealer;
use model::{Integration, IntegrationType};

use super::chat_hash::{SWAP_WITH_HASH, chat_hash, surface};
use super::rows::{IntegrationRow, integrations, select_integrations};
use super::telegram::{ClaimedThread, window_start};
use super::{Store, StoreError, begin_for_user, now, with_pool};

/// A message written to the outbox, as `GET /v1/inbound` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct InboundMessage {
    /// The cursor: pass the last one seen as `after`.
    pub seq: i64,
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub integration_id: String,
    /// The chat it came in: Telegram's chat id, or Slack's channel.
    pub chat_id: String,
    pub text: String,
    /// `new`, `end`, `agents` or `help` for a bot command; null for a message.
    pub command: Option<String>,
    /// The agent session of the thread this message continues, if any.
    pub claimed_session_id: Option<String>,
    pub received_at: String,
    /// Slack only: the channel (`D…` for the bot's direct messages).
    pub channel: Option<String>,
    /// Slack only: the message's `ts`.
    pub ts: Option<String>,
    /// Slack only: the `ts` of the thread's parent, for a reply in a thread.
    pub thread_ts: Option<String>,
}

/// The columns of an [`InboundMessage`].
const INBOUND_COLUMNS: &str = "seq, id, user_id, profile_id, integration_id, chat_id, text, command, \
     claimed_session_id, received_at, channel, ts, thread_ts";

/// An inbound message to write.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub user_id: String,
    pub profile_id: String,
    pub integration_id: String,
    /// Telegram's chat id, or Slack's channel.
    pub chat_id: String,
    pub text: String,
    pub command: Option<String>,
    pub origin: Origin,
}

/// Where an inbound message came from: what makes it one row, and which
/// thread it may join.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A Telegram update of a bot: one row per pair, however often Telegram
    /// redelivers it.
    Telegram {
        bot_id: String,
        update_id: i64,
        /// Continue the newest open thread of this chat and of the profile
        /// (a reply without a tap): its session is claimed with the row, and
        /// the text says `[Switched to <label> thread]`.
        continue_thread: bool,
    },
    /// A Slack event: one row per event id, however often Slack redelivers
    /// it. A reply in a thread (`thread_ts`) carries the session of the
    /// notification that started the thread, when it was the profile's.
    Slack {
        event_id: String,
        ts: String,
        thread_ts: Option<String>,
    },
}

impl Store {
    /// The one row of `kind` whose `chat_hash` is the hash of `surface` (one
    /// indexed read), confirmed by its own config. Two rows that name one
    /// chat are nobody's: the message finds neither, whichever is older.
    pub(crate) async fn by_surface(
        &self,
        keyring: &dyn Sealer,
        kind: IntegrationType,
        surface_of: &str,
    ) -> Result<Option<Integration>, StoreError> {
        let hash = keyring.lookup_hash(surface_of);
        let rows = with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> = sqlx::query_as(select_integrations!(
                "WHERE chat_hash = $1 AND type = $2 LIMIT 2"
            ))
            .bind(&hash)
            .bind(kind.as_str())
            .fetch_all(pool)
            .await?;
            integrations(rows)?
        });
        let mut found = None;
        for row in rows {
            let config = keyring.open_config(&row)?;
            if surface(kind, row.external_id.as_deref(), &config).as_deref() == Some(surface_of) {
                if found.is_some() {
                    tracing::warn!(integration = %row.id, "two rows name one chat: it is routed to neither");
                    return Ok(None);
                }
                found = Some(row);
            }
        }
        Ok(found)
    }

    /// The Slack row that `user_id` of the team `team_id` connected: the
    /// one row that holds that identity, found in one indexed read.
    pub async fn slack_user(
        &self,
        team_id: &str,
        user_id: &str,
    ) -> Result<Option<Integration>, StoreError> {
        let kind = IntegrationType::Slack;
        let Some(identity) = identity_value(kind, &[team_id, user_id]) else {
            return Ok(None);
        };
        with_pool!(self, |pool| {
            let row: Option<IntegrationRow> =
                sqlx::query_as(select_integrations!("WHERE type = $1 AND external_id = $2"))
                    .bind(kind.as_str())
                    .bind(&identity)
                    .fetch_optional(pool)
                    .await?;
            row.map(Integration::try_from).transpose()
        })
    }

    pub(crate) async fn swap_with_hash(
        &self,
        integration: &Integration,
        sealed: &str,
        hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query(SWAP_WITH_HASH)
                .bind(sealed)
                .bind(hash)
                .bind(&integration.id)
                .bind(integration.sealed.as_stored())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Gives every Telegram row the `chat_hash` of its config
    /// under the keyring's first key: rows written before hashes existed,
    /// or hashed under a key that has since stopped being the first (after
    /// `keys rotate`). The server runs it at start, when its keyring is new;
    /// a row whose config does not open is left as it was. Returns the rows
    /// re-hashed.
    pub async fn rehash_chats(&self, keyring: &dyn Sealer) -> Result<u64, StoreError> {
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
                match keyring.open_config(&row) {
                    Ok(config) => {
                        let hash =
                            chat_hash(keyring, row.kind, row.external_id.as_deref(), &config);
                        if hash.is_some()
                            && self
                                .swap_with_hash(&row, row.sealed.as_stored(), hash.as_deref())
                                .await?
                        {
                            rehashed += 1;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(integration = %row.id, error = %e, "a row's chat was not re-hashed")
                    }
                }
            }
        }
        Ok(rehashed)
    }

    /// Writes one inbound message to the outbox with the thread it joins,
    /// in one transaction; `None` (and no claim) when the outbox already
    /// holds this Telegram update or Slack event.
    pub async fn add_inbound(
        &self,
        new: &NewInbound,
    ) -> Result<Option<InboundMessage>, StoreError> {
        let id = format!("inb_{}", random_token(21));
        let (bot_id, update_id, event_id, ts, thread_ts) = match &new.origin {
            Origin::Telegram {
                bot_id, update_id, ..
            } => (Some(bot_id), Some(*update_id), None, None, None),
            Origin::Slack {
                event_id,
                ts,
                thread_ts,
            } => (None, None, Some(event_id), Some(ts), thread_ts.as_ref()),
        };
        let channel = event_id.map(|_| &new.chat_id);
        let insert = format!(
            "INSERT INTO inbound_messages (id, user_id, profile_id, integration_id, chat_id, text, command, \
             claimed_session_id, received_at, bot_id, update_id, channel, ts, thread_ts, event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING \
             RETURNING {INBOUND_COLUMNS}"
        );
        Ok(with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, &new.user_id).await?;
            let (session, text) = match &new.origin {
                Origin::Telegram {
                    continue_thread: true,
                    ..
                } => {
                    let claimed = sqlx::query_as::<_, ClaimedThread>(
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
                    .await?;
                    match claimed {
                        Some(thread) => (
                            Some(thread.session_id),
                            format!(
                                "[Switched to {} thread] {}",
                                thread.label.as_deref().unwrap_or("agent"),
                                new.text
                            ),
                        ),
                        None => (None, new.text.clone()),
                    }
                }
                Origin::Slack {
                    thread_ts: Some(parent),
                    ..
                } => {
                    let session: Option<String> = sqlx::query_scalar(
                        "SELECT session_id FROM slack_threads WHERE integration_id = $1 AND channel = $2 \
                         AND ts = $3 AND profile_id = $4 AND sent_at >= $5",
                    )
                    .bind(&new.integration_id)
                    .bind(&new.chat_id)
                    .bind(parent)
                    .bind(&new.profile_id)
                    .bind(window_start())
                    .fetch_optional(&mut *tx)
                    .await?;
                    (session, new.text.clone())
                }
                _ => (None, new.text.clone()),
            };
            let written = sqlx::query_as::<_, InboundMessage>(&insert)
                .bind(&id)
                .bind(&new.user_id)
                .bind(&new.profile_id)
                .bind(&new.integration_id)
                .bind(&new.chat_id)
                .bind(&text)
                .bind(&new.command)
                .bind(session)
                .bind(now())
                .bind(bot_id)
                .bind(update_id)
                .bind(channel)
                .bind(ts)
                .bind(thread_ts)
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
            // A redelivery: the claim above is rolled back with it.
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
        let select = format!(
            "SELECT {INBOUND_COLUMNS} FROM inbound_messages WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, InboundMessage>(&select)
                .bind(user_id)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }
}
