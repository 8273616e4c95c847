//! Reading the audit log back: when a user's calls of one tool were
//! recorded, for a rate limit that holds across restarts.

use std::time::{Duration, SystemTime};

use super::{Store, StoreError, with_pool};

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
