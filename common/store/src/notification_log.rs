//! Reading the `notification_log` back for its user (`GET /v1/notifications`).

use serde::Serialize;

use super::{Store, StoreError, with_pool};

/// One `notification_log` row, as its user reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct LoggedRow {
    /// The cursor: pass the last one seen as `after`.
    pub seq: i64,
    pub notification_id: Option<String>,
    pub profile_id: Option<String>,
    pub session_id: Option<String>,
    pub integration_id: Option<String>,
    /// `slack`, `telegram:<id>`, `email` or `webhook`.
    pub channel: String,
    /// `low`, `normal` or `high`.
    pub urgency: String,
    /// `agent` or `platform`.
    pub source: String,
    /// `sent`, `failed` or `unknown` (maybe delivered: never sent again).
    pub status: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub message: String,
    pub created_at: String,
}

impl Store {
    /// `user_id`'s notifications after `after` (a `seq`), oldest first, at
    /// most `limit`; only of `profile_id` when given.
    pub async fn notification_log(
        &self,
        user_id: &str,
        profile_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedRow>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id AS seq, notification_id, profile_id, session_id, integration_id, channel, \
                 urgency, source, status, error, attempts, message, created_at \
                 FROM notification_log \
                 WHERE user_id = $1 AND ($2 IS NULL OR profile_id = $2) AND id > $3 \
                 ORDER BY id LIMIT $4",
            )
            .bind(user_id)
            .bind(profile_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
