//! Leases (`leases`, migration 0020): work that one replica at a time does,
//! such as delivering the events outbox. A lease is held until it expires;
//! its holder renews it while it works, and a holder that dies loses it
//! when it lapses.

use std::time::{Duration, SystemTime};

use super::{Store, StoreError, now, with_pool};

impl Store {
    /// Takes the lease `name` for `holder` until `ttl` from now, or renews
    /// it when `holder` has it already: whether `holder` holds it now. A
    /// lease another holder let lapse is taken over.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let until = humantime::format_rfc3339_micros(SystemTime::now() + ttl).to_string();
        let taken = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(&until)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }

    /// Gives the lease `name` up, if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
