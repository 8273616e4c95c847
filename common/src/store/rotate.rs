//! Key rotation: re-seal every config under the keyring's first key.

use crate::crypto::{Keyring, OpenError};
use crate::model::{Integration, SealedConfig};

/// Replaces a row's sealed config only if it is still the one read
/// (compare-and-swap): `$1` new, `$2` id, `$3` old.
pub(crate) const SWAP_SEALED: &str =
    "UPDATE user_integrations SET encrypted_config = $1 WHERE id = $2 AND encrypted_config = $3";

use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, with_pool};

const PAGE: i64 = 256;

/// What a rotation did.
#[derive(Debug, Default)]
pub struct RotationReport {
    /// Rows seen.
    pub total: u64,
    /// Rows re-sealed under the first key.
    pub rotated: u64,
    /// Rows that could not be opened; they are left as they were.
    pub failed: Vec<OpenError>,
}

impl Store {
    /// The number of integration rows of every user.
    pub async fn integration_count(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM user_integrations")
                .fetch_one(pool)
                .await?
        });
        Ok(n as u64)
    }

    /// Re-seals every config that is not under the keyring's first key, page
    /// by page, calling `progress` with the number of rows seen. A row changed
    /// concurrently is re-read and re-sealed; a row that does not open is
    /// reported and left unchanged.
    pub async fn rotate_keys(
        &self,
        keyring: &Keyring,
        mut progress: impl FnMut(u64),
    ) -> Result<RotationReport, StoreError> {
        let mut report = RotationReport::default();
        let mut after = String::new();
        loop {
            let page = self.integrations_after(&after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for integration in page {
                report.total += 1;
                match self.reseal(keyring, integration).await? {
                    Ok(true) => report.rotated += 1,
                    Ok(false) => {}
                    Err(e) => report.failed.push(e),
                }
                progress(report.total);
            }
        }
        Ok(report)
    }

    async fn integrations_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Integration>, StoreError> {
        with_pool!(self, |pool| {
            let rows: Vec<IntegrationRow> =
                sqlx::query_as(select_integrations!("WHERE id > $1 ORDER BY id LIMIT $2"))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
            integrations(rows)
        })
    }

    /// Re-seals one row with compare-and-swap on its old ciphertext.
    async fn reseal(
        &self,
        keyring: &Keyring,
        mut integration: Integration,
    ) -> Result<Result<bool, OpenError>, StoreError> {
        loop {
            let new = match keyring.reseal_config(&integration) {
                Ok(Some(new)) => new,
                Ok(None) => return Ok(Ok(false)),
                Err(e) => return Ok(Err(e)),
            };
            if self
                .swap_sealed(&integration.id, &integration.sealed, &new)
                .await?
            {
                return Ok(Ok(true));
            }
            match self.integration(&integration.id).await? {
                Some(current) => integration = current,
                None => return Ok(Ok(false)),
            }
        }
    }

    pub(crate) async fn swap_sealed(
        &self,
        id: &str,
        old: &SealedConfig,
        new: &SealedConfig,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query(SWAP_SEALED)
                .bind(&new.0)
                .bind(id)
                .bind(&old.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }
}
