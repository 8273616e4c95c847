//! The notification log and Telegram and Slack threads, as the delivery library writes
//! and reads them: one row per notification, and the claim taken before a
//! delivery, which holds its idempotency key and its place in the per-minute
//! count across every running sidecar.
//!
//! A claim is `pending` until its delivery ends, then `sent` or `failed`. A
//! key with a `sent` claim is answered with the first result; with a
//! `pending` one (another call is delivering it now) the call is refused, to
//! be repeated; a `failed` claim frees the key for a retry. A `pending` claim
//! older than [`CLAIM_TIMEOUT`] (its sidecar died mid-delivery) frees it too.

use std::time::{Duration, SystemTime};

use crate::{StoreError, with_pool};

use super::local::in_transaction;
use super::{Backend, SidecarStore};

/// One `notification_log` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedNotification {
    /// `ntf_...`: the webhook id and the Resend idempotency key.
    pub notification_id: String,
    pub user_id: String,
    pub profile_id: Option<String>,
    pub session_id: Option<String>,
    pub integration_id: Option<String>,
    pub channel: String,
    pub urgency: String,
    /// `agent` or `platform`.
    pub source: String,
    /// `sent`, `failed` or `unknown` (maybe delivered: never sent again).
    pub status: String,
    /// Why it failed, in words that carry no secret.
    pub error: Option<String>,
    pub attempts: i64,
    pub idempotency_key: Option<String>,
    pub message: String,
    pub provider_message_id: Option<String>,
}

/// A notification sent with `claim_thread`: a row of `telegram_threads`
/// or `slack_threads`, as its anchor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    /// The notification whose buttons (`claim:<id>`, `keep:<id>`) point here.
    pub notification_id: String,
    pub integration_id: String,
    /// Telegram's chat, or Slack's channel.
    pub chat_id: String,
    pub anchor: ThreadAnchor,
    pub session_id: String,
    /// The profile whose agent sent it: only a message routed to this
    /// profile joins the thread.
    pub profile_id: String,
    pub label: Option<String>,
}

/// The message a thread hangs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadAnchor {
    /// The Telegram message that carries the claim buttons.
    Telegram(i64),
    /// The `ts` of the Slack message: replies in its thread carry it as
    /// `thread_ts`.
    Slack(String),
}

const INSERT_NOTIFICATION: &str = "INSERT INTO notification_log (notification_id, user_id, profile_id, session_id, integration_id, channel, urgency, source, status, error, attempts, idempotency_key, message, provider_message_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

const SENT_WITH_KEY: &str = "SELECT notification_id, user_id, profile_id, session_id, integration_id, channel, urgency, source, status, error, attempts, idempotency_key, message, provider_message_id \
     FROM notification_log WHERE user_id = $1 AND profile_id = $2 AND idempotency_key = $3 AND status = 'sent' AND created_at >= $4 \
     AND source = $5 ORDER BY created_at DESC LIMIT 1";

const PRUNE_CLAIMS: &str =
    "DELETE FROM notification_claims WHERE user_id = $1 AND profile_id = $2 AND claimed_at < $3";

/// The state of the claim that holds a key: `unknown` or `sent` (never
/// both: neither frees the key) before `pending`. Keys are per source: an
/// agent's key never answers for the platform's.
const KEY_CLAIM: &str = "SELECT state FROM notification_claims \
     WHERE user_id = $1 AND profile_id = $2 AND idempotency_key = $3 \
     AND (state IN ('sent', 'unknown') OR (state = 'pending' AND claimed_at >= $4)) AND source = $5 \
     ORDER BY state = 'pending' LIMIT 1";

const COUNTED_CLAIMS: &str = "SELECT claimed_at FROM notification_claims \
     WHERE user_id = $1 AND profile_id = $2 AND (counted OR source = 'agent') AND claimed_at >= $3 \
     ORDER BY claimed_at";

const INSERT_CLAIM: &str = "INSERT INTO notification_claims (notification_id, user_id, profile_id, source, idempotency_key, state, claimed_at, counted) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)";

const FINISH_CLAIM: &str =
    "UPDATE notification_claims SET state = $1 WHERE notification_id = $2 AND state = 'pending'";

const RELEASE_CLAIM: &str =
    "DELETE FROM notification_claims WHERE notification_id = $1 AND state = 'pending'";

const INSERT_TELEGRAM_THREAD: &str = "INSERT INTO telegram_threads (integration_id, chat_id, message_id, session_id, label, sent_at, notification_id, profile_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const INSERT_SLACK_THREAD: &str = "INSERT INTO slack_threads (integration_id, channel, ts, session_id, label, sent_at, notification_id, profile_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A `pending` claim older than this is taken as abandoned: a delivery takes
/// at most 15 s, its log row a busy store's wait more.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);

/// A notification about to be delivered, as [`SidecarStore::claim`] takes it.
#[derive(Debug, Clone)]
pub struct NewClaim {
    /// `ntf_...`, the id its log row will have.
    pub notification_id: String,
    pub user_id: String,
    /// Empty when it is sent for no profile.
    pub profile_id: String,
    /// `agent` or `platform`.
    pub source: String,
    pub idempotency_key: Option<String>,
    /// Counted, and granted only while the profile's counted claims within
    /// the window are fewer than this.
    pub limit: Option<(usize, Duration)>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Claimed, `pending`: deliver it, then [`SidecarStore::log_notification`].
    Granted,
    /// The key's notification was sent: its log row answers
    /// ([`SidecarStore::sent_with_key`]).
    Sent,
    /// Another call is delivering the key's notification now.
    Pending,
    /// The key's notification may have been delivered (its provider's
    /// connection was lost after it was handed over): it is not sent again.
    Unknown,
    /// The limit is reached: when each counted claim was taken, oldest first.
    Limited(Vec<SystemTime>),
}

/// The stored form of `now - ago`, comparable with `created_at`.
fn stamp_ago(ago: Duration) -> String {
    humantime::format_rfc3339_micros(SystemTime::now() - ago).to_string()
}

/// What a claim holding the key in `state` answers.
fn held_by(state: &str) -> Claim {
    match state {
        "sent" => Claim::Sent,
        "unknown" => Claim::Unknown,
        _ => Claim::Pending,
    }
}

/// [`Claim::Limited`] by the claims taken at `stamps`.
fn limited(stamps: &[String]) -> Claim {
    Claim::Limited(
        stamps
            .iter()
            .filter_map(|s| humantime::parse_rfc3339(s).ok())
            .collect(),
    )
}

impl SidecarStore {
    /// Writes one `notification_log` row and ends its claim (`sent`,
    /// `failed` or `unknown`, as the row says), in one transaction.
    pub async fn log_notification(&self, row: &LoggedNotification) -> Result<(), StoreError> {
        let at = crate::now();
        match &self.backend {
            Backend::Local(local) => {
                let row = row.clone();
                local
                    .run(move |conn| {
                        in_transaction(conn, "BEGIN IMMEDIATE", |conn| {
                            conn.prepare_cached(FINISH_CLAIM)?
                                .execute((&row.status, &row.notification_id))?;
                            conn.prepare_cached(INSERT_NOTIFICATION)?
                                .execute(rusqlite::params![
                                    row.notification_id,
                                    row.user_id,
                                    row.profile_id,
                                    row.session_id,
                                    row.integration_id,
                                    row.channel,
                                    row.urgency,
                                    row.source,
                                    row.status,
                                    row.error,
                                    row.attempts,
                                    row.idempotency_key,
                                    row.message,
                                    row.provider_message_id,
                                    at,
                                ])
                        })
                    })
                    .await?;
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                let mut tx = pool.begin().await?;
                sqlx::query(FINISH_CLAIM)
                    .bind(&row.status)
                    .bind(&row.notification_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(INSERT_NOTIFICATION)
                    .bind(&row.notification_id)
                    .bind(&row.user_id)
                    .bind(&row.profile_id)
                    .bind(&row.session_id)
                    .bind(&row.integration_id)
                    .bind(&row.channel)
                    .bind(&row.urgency)
                    .bind(&row.source)
                    .bind(&row.status)
                    .bind(&row.error)
                    .bind(row.attempts)
                    .bind(&row.idempotency_key)
                    .bind(&row.message)
                    .bind(&row.provider_message_id)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }),
        }
        Ok(())
    }

    /// The newest notification of `source` sent for this user and profile
    /// with `key` within [`IDEMPOTENCY_WINDOW`]. Keys are per profile and
    /// source: another profile's or source's key reveals nothing.
    pub async fn sent_with_key(
        &self,
        user_id: &str,
        profile_id: &str,
        key: &str,
        source: &str,
    ) -> Result<Option<LoggedNotification>, StoreError> {
        let since = stamp_ago(IDEMPOTENCY_WINDOW);
        type Row = (
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
            String,
            Option<String>,
            i64,
            Option<String>,
            String,
            Option<String>,
        );
        let row: Option<Row> = match &self.backend {
            Backend::Local(local) => {
                let (user, profile, key, source) = (
                    user_id.to_string(),
                    profile_id.to_string(),
                    key.to_string(),
                    source.to_string(),
                );
                local
                    .run(move |conn| {
                        let mut stmt = conn.prepare_cached(SENT_WITH_KEY)?;
                        let mut rows = stmt.query((&user, &profile, &key, &since, &source))?;
                        rows.next()?
                            .map(|r| {
                                Ok((
                                    r.get(0)?,
                                    r.get(1)?,
                                    r.get(2)?,
                                    r.get(3)?,
                                    r.get(4)?,
                                    r.get(5)?,
                                    r.get(6)?,
                                    r.get(7)?,
                                    r.get(8)?,
                                    r.get(9)?,
                                    r.get(10)?,
                                    r.get(11)?,
                                    r.get(12)?,
                                    r.get(13)?,
                                ))
                            })
                            .transpose()
                    })
                    .await?
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                sqlx::query_as(SENT_WITH_KEY)
                    .bind(user_id)
                    .bind(profile_id)
                    .bind(key)
                    .bind(&since)
                    .bind(source)
                    .fetch_optional(pool)
                    .await?
            }),
        };
        Ok(row.map(|r| LoggedNotification {
            notification_id: r.0.unwrap_or_default(),
            user_id: r.1,
            profile_id: r.2,
            session_id: r.3,
            integration_id: r.4,
            channel: r.5,
            urgency: r.6,
            source: r.7,
            status: r.8,
            error: r.9,
            attempts: r.10,
            idempotency_key: r.11,
            message: r.12,
            provider_message_id: r.13,
        }))
    }

    /// Claims a notification before its delivery: in one transaction per
    /// user (across processes), the key is checked, the profile's agent
    /// claims of the window counted, and the claim written `pending`.
    pub async fn claim(&self, claim: &NewClaim) -> Result<Claim, StoreError> {
        let at = crate::now();
        let expired = stamp_ago(IDEMPOTENCY_WINDOW);
        let abandoned = stamp_ago(CLAIM_TIMEOUT);
        let since = claim.limit.map(|(_, window)| stamp_ago(window));
        match &self.backend {
            Backend::Local(local) => {
                let claim = claim.clone();
                local
                    .run(move |conn| {
                        in_transaction(conn, "BEGIN IMMEDIATE", |conn| {
                            let (user, profile) = (&claim.user_id, &claim.profile_id);
                            conn.prepare_cached(PRUNE_CLAIMS)?
                                .execute((user, profile, &expired))?;
                            if let Some(key) = &claim.idempotency_key {
                                let held: Option<String> = conn
                                    .prepare_cached(KEY_CLAIM)?
                                    .query_map(
                                        (user, profile, key, &abandoned, &claim.source),
                                        |r| r.get(0),
                                    )?
                                    .next()
                                    .transpose()?;
                                if let Some(state) = held {
                                    return Ok(held_by(&state));
                                }
                            }
                            if let (Some(since), Some((limit, _))) = (&since, claim.limit) {
                                let stamps = conn
                                    .prepare_cached(COUNTED_CLAIMS)?
                                    .query_map((user, profile, since), |r| r.get(0))?
                                    .collect::<Result<Vec<String>, _>>()?;
                                if stamps.len() >= limit {
                                    return Ok(limited(&stamps));
                                }
                            }
                            conn.prepare_cached(INSERT_CLAIM)?.execute((
                                &claim.notification_id,
                                user,
                                profile,
                                &claim.source,
                                &claim.idempotency_key,
                                &at,
                                claim.limit.is_some(),
                            ))?;
                            Ok(Claim::Granted)
                        })
                    })
                    .await
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                let mut tx = crate::begin_for_user(pool, &claim.user_id).await?;
                let (user, profile) = (&claim.user_id, &claim.profile_id);
                sqlx::query(PRUNE_CLAIMS)
                    .bind(user)
                    .bind(profile)
                    .bind(&expired)
                    .execute(&mut *tx)
                    .await?;
                if let Some(key) = &claim.idempotency_key {
                    let held: Option<String> = sqlx::query_scalar(KEY_CLAIM)
                        .bind(user)
                        .bind(profile)
                        .bind(key)
                        .bind(&abandoned)
                        .bind(&claim.source)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(state) = held {
                        tx.commit().await?;
                        return Ok(held_by(&state));
                    }
                }
                if let (Some(since), Some((limit, _))) = (&since, claim.limit) {
                    let stamps: Vec<String> = sqlx::query_scalar(COUNTED_CLAIMS)
                        .bind(user)
                        .bind(profile)
                        .bind(since)
                        .fetch_all(&mut *tx)
                        .await?;
                    if stamps.len() >= limit {
                        tx.commit().await?;
                        return Ok(limited(&stamps));
                    }
                }
                sqlx::query(INSERT_CLAIM)
                    .bind(&claim.notification_id)
                    .bind(user)
                    .bind(profile)
                    .bind(&claim.source)
                    .bind(&claim.idempotency_key)
                    .bind(&at)
                    .bind(claim.limit.is_some())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Claim::Granted)
            }),
        }
    }

    /// Takes back a `pending` claim whose notification was never attempted
    /// (no channel): it neither holds its key nor counts.
    pub async fn release_claim(&self, notification_id: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(local) => {
                let id = notification_id.to_string();
                local
                    .run(move |conn| conn.prepare_cached(RELEASE_CLAIM)?.execute([&id]))
                    .await?;
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                sqlx::query(RELEASE_CLAIM)
                    .bind(notification_id)
                    .execute(pool)
                    .await?;
            }),
        }
        Ok(())
    }

    /// Records a message sent with `claim_thread`.
    pub async fn add_thread(&self, row: &ThreadRow) -> Result<(), StoreError> {
        let at = crate::now();
        let (insert, anchor) = match &row.anchor {
            ThreadAnchor::Telegram(message_id) => (
                INSERT_TELEGRAM_THREAD,
                rusqlite::types::Value::Integer(*message_id),
            ),
            ThreadAnchor::Slack(ts) => (
                INSERT_SLACK_THREAD,
                rusqlite::types::Value::Text(ts.clone()),
            ),
        };
        match &self.backend {
            Backend::Local(local) => {
                let row = row.clone();
                local
                    .run(move |conn| {
                        conn.prepare_cached(insert)?.execute(rusqlite::params![
                            row.integration_id,
                            row.chat_id,
                            anchor,
                            row.session_id,
                            row.label,
                            at,
                            row.notification_id,
                            row.profile_id,
                        ])
                    })
                    .await?;
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                let query = sqlx::query(insert)
                    .bind(&row.integration_id)
                    .bind(&row.chat_id);
                let query = match &row.anchor {
                    ThreadAnchor::Telegram(message_id) => query.bind(*message_id),
                    ThreadAnchor::Slack(ts) => query.bind(ts),
                };
                query
                    .bind(&row.session_id)
                    .bind(&row.label)
                    .bind(&at)
                    .bind(&row.notification_id)
                    .bind(&row.profile_id)
                    .execute(pool)
                    .await?;
            }),
        }
        Ok(())
    }
}
