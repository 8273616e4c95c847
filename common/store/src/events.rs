//! The events outbox (`integration_events`, migration 0020): the store's
//! triggers write an event in the transaction of the change that causes it
//! (connected, needs_reauth, reconnected, scope_changed, disconnected),
//! whoever writes the row; one replica at a time (a [`lease`]) delivers
//! them to the platform, oldest first, and records each attempt here.
//!
//! [`lease`]: Store::take_lease

use std::time::SystemTime;

use super::{Store, StoreError, now, with_pool};

/// One event not delivered yet.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingEvent {
    /// Its place in the outbox: events are delivered in this order.
    pub seq: i64,
    /// `evt_...`: the `webhook-id` of every attempt.
    pub id: String,
    /// `integration.connected`, `.needs_reauth`, `.reconnected`,
    /// `.scope_changed` or `.disconnected`.
    #[sqlx(rename = "type")]
    pub kind: String,
    pub integration_id: String,
    pub integration_type: String,
    pub user_id: String,
    pub occurred_at: String,
    /// A JSON object: what the type adds (label, reason and message, scope).
    pub data: String,
    pub attempts: i64,
    /// Not to be tried before this time (RFC 3339).
    pub next_attempt_at: String,
}

/// What [`Store::purge_events`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedEvents {
    pub delivered: u64,
    /// Never delivered within the retention: given up.
    pub dropped: u64,
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

impl Store {
    /// The oldest `limit` events not delivered yet, in outbox order, due or
    /// not.
    pub async fn undelivered_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, id, type, integration_id, integration_type, user_id, occurred_at, data, \
                 attempts, next_attempt_at FROM integration_events WHERE delivered_at IS NULL \
                 ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The events to attempt now, oldest first, at most `limit`: of each
    /// integration, its oldest undelivered event, when its next attempt is
    /// due (a later event waits for it; another integration's do not).
    pub async fn due_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, id, type, integration_id, integration_type, user_id, occurred_at, data, \
                 attempts, next_attempt_at FROM integration_events e \
                 WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM integration_events earlier \
                     WHERE earlier.integration_id = e.integration_id AND earlier.delivered_at IS NULL \
                     AND earlier.seq < e.seq) \
                 ORDER BY seq LIMIT $2",
            )
            .bind(now())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records that the receiver took event `seq`.
    pub async fn event_delivered(&self, seq: i64) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE integration_events SET delivered_at = $1, attempts = attempts + 1, \
                 last_error = NULL WHERE seq = $2",
            )
            .bind(now())
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records a failed attempt at event `seq` (`error` names no secret):
    /// the next one not before `retry_at`.
    pub async fn event_failed(
        &self,
        seq: i64,
        retry_at: SystemTime,
        error: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE integration_events SET attempts = attempts + 1, next_attempt_at = $1, \
                 last_error = $2 WHERE seq = $3",
            )
            .bind(rfc3339(retry_at))
            .bind(error)
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes the events that occurred before `before`, delivered or not.
    pub async fn purge_events(&self, before: SystemTime) -> Result<PurgedEvents, StoreError> {
        let before = rfc3339(before);
        let delete = |delivered: bool| {
            format!(
                "DELETE FROM integration_events WHERE occurred_at < $1 AND delivered_at IS {}NULL",
                if delivered { "NOT " } else { "" }
            )
        };
        let (delivered, dropped) = with_pool!(self, |pool| {
            let delivered = sqlx::query(&delete(true))
                .bind(&before)
                .execute(pool)
                .await?
                .rows_affected();
            let dropped = sqlx::query(&delete(false))
                .bind(&before)
                .execute(pool)
                .await?
                .rows_affected();
            (delivered, dropped)
        });
        Ok(PurgedEvents { delivered, dropped })
    }
}
