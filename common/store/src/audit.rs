//! The audit log: the statement that writes a row (the sidecars' and the
//! mints'), and reading it back: when a user's calls of one tool were
//! recorded, for a rate limit that holds across restarts.

use std::time::{Duration, SystemTime};

use super::{Store, StoreError, with_pool};

/// Writes one `audit_log` row; `$1`..`$10` appear in order (SQLite numbers
/// named parameters by first appearance).
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, user_id, profile_id, session_id, server, tool, integration_id, decision, detail, duration_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

impl Store {
    /// When each `server`/`tool` row of `user_id` in the last `window` was
    /// written, oldest first (one indexed range of `audit_log_by_user`).
    pub async fn audited_since(
        &self,
        user_id: &str,
        server: &str,
        tool: &str,
        window: Duration,
    ) -> Result<Vec<SystemTime>, StoreError> {
        let since = humantime::format_rfc3339_micros(SystemTime::now() - window).to_string();
        let stamps: Vec<String> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT at FROM audit_log WHERE user_id = $1 AND at >= $2 AND server = $3 AND tool = $4 ORDER BY at",
            )
            .bind(user_id)
            .bind(&since)
            .bind(server)
            .bind(tool)
            .fetch_all(pool)
            .await?
        });
        Ok(stamps
            .iter()
            .filter_map(|s| humantime::parse_rfc3339(s).ok())
            .collect())
    }
}
