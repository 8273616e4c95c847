//! The notification log and Telegram threads, as the delivery library writes
//! and reads them: one row per notification, idempotency keys, the per-minute
//! count that holds across every running sidecar.

use std::time::{Duration, SystemTime};

use crate::store::{StoreError, with_pool};

use super::store::{Backend, SidecarStore};

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
    /// `sent` or `failed`.
    pub status: String,
    /// Why it failed, in words that carry no secret.
    pub error: Option<String>,
    pub attempts: i64,
    pub idempotency_key: Option<String>,
    pub message: String,
    pub provider_message_id: Option<String>,
}

/// A notification sent with thread-claim buttons: `telegram_threads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    /// The notification whose buttons (`claim:<id>`, `keep:<id>`) point here.
    pub notification_id: String,
    pub integration_id: String,
    pub chat_id: String,
    pub message_id: i64,
    pub session_id: String,
    /// The profile whose agent sent it: only a message routed to this
    /// profile joins the thread.
    pub profile_id: String,
    pub label: Option<String>,
}

const INSERT_NOTIFICATION: &str = "INSERT INTO notification_log (notification_id, user_id, profile_id, session_id, integration_id, channel, urgency, source, status, error, attempts, idempotency_key, message, provider_message_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

const SENT_WITH_KEY: &str = "SELECT notification_id, user_id, profile_id, session_id, integration_id, channel, urgency, source, status, error, attempts, idempotency_key, message, provider_message_id \
     FROM notification_log WHERE user_id = $1 AND profile_id = $2 AND idempotency_key = $3 AND status = 'sent' AND created_at >= $4 \
     ORDER BY created_at DESC LIMIT 1";

const RECENT: &str = "SELECT created_at FROM notification_log \
     WHERE user_id = $1 AND profile_id = $2 AND source = 'agent' AND created_at >= $3 ORDER BY created_at";

const INSERT_THREAD: &str = "INSERT INTO telegram_threads (integration_id, chat_id, message_id, session_id, label, sent_at, notification_id, profile_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The stored form of `now - ago`, comparable with `created_at`.
fn stamp_ago(ago: Duration) -> String {
    humantime::format_rfc3339_micros(SystemTime::now() - ago).to_string()
}

impl SidecarStore {
    /// Writes one `notification_log` row.
    pub async fn log_notification(&self, row: &LoggedNotification) -> Result<(), StoreError> {
        let at = crate::store::now();
        match &self.backend {
            Backend::Local(local) => {
                let row = row.clone();
                local
                    .run(move |conn| {
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
                    .await?;
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
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
                    .execute(pool)
                    .await?;
            }),
        }
        Ok(())
    }

    /// The newest notification sent for this user and profile with `key`
    /// within [`IDEMPOTENCY_WINDOW`]. Keys are per profile: another
    /// profile's key reveals nothing.
    pub async fn sent_with_key(
        &self,
        user_id: &str,
        profile_id: &str,
        key: &str,
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
                let (user, profile, key) =
                    (user_id.to_string(), profile_id.to_string(), key.to_string());
                local
                    .run(move |conn| {
                        let mut stmt = conn.prepare_cached(SENT_WITH_KEY)?;
                        let mut rows = stmt.query((&user, &profile, &key, &since))?;
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

    /// When each notification an agent of this profile sent in the last
    /// `window` was logged, oldest first: the rate limit's count.
    pub async fn recent_notifications(
        &self,
        user_id: &str,
        profile_id: &str,
        window: Duration,
    ) -> Result<Vec<SystemTime>, StoreError> {
        let since = stamp_ago(window);
        let stamps: Vec<String> = match &self.backend {
            Backend::Local(local) => {
                let (user, profile) = (user_id.to_string(), profile_id.to_string());
                local
                    .run(move |conn| {
                        conn.prepare_cached(RECENT)?
                            .query_map((&user, &profile, &since), |r| r.get(0))?
                            .collect()
                    })
                    .await?
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                sqlx::query_scalar(RECENT)
                    .bind(user_id)
                    .bind(profile_id)
                    .bind(&since)
                    .fetch_all(pool)
                    .await?
            }),
        };
        Ok(stamps
            .iter()
            .filter_map(|s| humantime::parse_rfc3339(s).ok())
            .collect())
    }

    /// Records a message sent with thread-claim buttons.
    pub async fn add_thread(&self, row: &ThreadRow) -> Result<(), StoreError> {
        let at = crate::store::now();
        match &self.backend {
            Backend::Local(local) => {
                let row = row.clone();
                local
                    .run(move |conn| {
                        conn.prepare_cached(INSERT_THREAD)?.execute((
                            &row.integration_id,
                            &row.chat_id,
                            row.message_id,
                            &row.session_id,
                            &row.label,
                            &at,
                            &row.notification_id,
                            &row.profile_id,
                        ))
                    })
                    .await?;
            }
            Backend::Postgres(store) => with_pool!(store, |pool| {
                sqlx::query(INSERT_THREAD)
                    .bind(&row.integration_id)
                    .bind(&row.chat_id)
                    .bind(row.message_id)
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
