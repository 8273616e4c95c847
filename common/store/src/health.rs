//! The health keeper's rows (`integration_health`, migration 0021): which
//! connections are due for a check, the claim that lets one replica check
//! one (it moves the next check forward before it checks), and what the
//! check found.

use std::time::SystemTime;

use model::Integration;

use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, now, with_pool};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthResult {
    /// The provider took the credentials.
    Ok,
    /// The provider refused them.
    Refused,
    /// The provider could not say (unreachable, failing, rate limiting).
    Unknown,
}

impl HealthResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

impl Store {
    /// At most `limit` enabled connections with credentials to check
    /// (every type but webhooks) whose next check is due: active ones, and
    /// those that need their user because their provider refused them (a
    /// check that passes again recovers them; one whose identity another
    /// row holds stays as it is).
    pub async fn due_health_checks(&self, limit: i64) -> Result<Vec<Integration>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> = sqlx::query_as(select_integrations!(
                "WHERE enabled AND type IN ('gmail', 'teller', 'slack', 'telegram', 'email') \
                 AND (status = 'active' OR status_reason IN ('provider_refused', 'enrollment_disconnected')) \
                 AND NOT EXISTS (SELECT 1 FROM integration_health h \
                     WHERE h.integration_id = user_integrations.id AND h.next_check_at > $1) \
                 ORDER BY id LIMIT $2"
            ))
            .bind(now())
            .bind(limit)
            .fetch_all(pool)
            .await?;
            integrations(rows)
        })
    }

    /// Claims the check of integration `id`, due now, for this replica, its
    /// next one at `next`: `false` when another replica claimed it first.
    pub async fn claim_health_check(&self, id: &str, next: SystemTime) -> Result<bool, StoreError> {
        let claimed = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO integration_health (integration_id, next_check_at) VALUES ($1, $2) \
                 ON CONFLICT (integration_id) DO UPDATE SET next_check_at = excluded.next_check_at \
                 WHERE integration_health.next_check_at <= $3",
            )
            .bind(id)
            .bind(rfc3339(next))
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(claimed == 1)
    }

    /// Records what the check of integration `id` found (`detail`: the
    /// provider's words, no secret).
    pub async fn record_health(
        &self,
        id: &str,
        result: HealthResult,
        detail: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE integration_health SET checked_at = $1, result = $2, detail = $3 \
                 WHERE integration_id = $4",
            )
            .bind(now())
            .bind(result.as_str())
            .bind(detail)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
