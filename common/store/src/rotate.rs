//! Key rotation: re-seal every value the keyring sealed under its first key.
//!
//! [`SEALED`] lists every column that holds `v1.` envelopes; rotation walks
//! them all, so a sealed column is rotated as soon as it has its entry there.

use model::SealedConfig;
use model::sealing::{CONNECT_KEY_ROW, OpenError, Sealer, config_aad, secret_aad, verifier_aad};

use super::{Store, StoreError, with_pool};

/// Replaces a row's sealed config only if it is still the one read
/// (compare-and-swap): `$1` new, `$2` id, `$3` old.
pub(crate) const SWAP_SEALED: &str =
    "UPDATE user_integrations SET encrypted_config = $1 WHERE id = $2 AND encrypted_config = $3";

/// A column of envelopes sealed by the keyring, and how to rebuild the
/// associated data each value was sealed with.
pub(crate) struct SealedColumn {
    /// What its rows are, for the report: `integration(s)`.
    pub noun: &'static str,
    pub table: &'static str,
    /// The table's primary key (text).
    pub id: &'static str,
    /// The sealed column; a NULL is skipped.
    pub sealed: &'static str,
    /// The rows whose column is sealed, as an SQL condition (`TRUE`: all).
    pub only: &'static str,
    /// The columns the associated data is built from, read as text, in the
    /// order `aad` takes them.
    pub aad_columns: &'static [&'static str],
    /// The associated data of a row, from its `aad_columns`.
    pub aad: fn(&[String]) -> String,
    /// How a value that does not open is named in the report, where its id
    /// must not be shown (a connect key's hash); `None`: by its id.
    pub shown_as: Option<&'static str>,
}

/// Every column that holds values sealed by the keyring. A new sealed
/// column gets its entry here, or rotation leaves it under the old key.
pub(crate) const SEALED: &[SealedColumn] = &[
    SealedColumn {
        noun: "integration(s)",
        table: "user_integrations",
        id: "id",
        sealed: "encrypted_config",
        only: "TRUE",
        aad_columns: &["id", "user_id", "type"],
        aad: |c| config_aad(&c[0], &c[1], &c[2]),
        shown_as: None,
    },
    SealedColumn {
        noun: "secret(s)",
        table: "user_secrets",
        id: "id",
        sealed: "encrypted_value",
        only: "TRUE",
        aad_columns: &["id", "user_id"],
        aad: |c| secret_aad(&c[0], &c[1]),
        shown_as: None,
    },
    SealedColumn {
        noun: "connect flow verifier(s)",
        table: "connect_keys",
        id: "key_sha256",
        sealed: "verifier",
        // A Telegram link code keeps its integration id there, in clear.
        only: "purpose = 'gmail_state'",
        aad_columns: &["key_sha256", "user_id"],
        aad: |c| verifier_aad(&c[0], &c[1]),
        shown_as: Some(CONNECT_KEY_ROW),
    },
];

const PAGE: i64 = 256;

/// What a rotation did, one entry per sealed column.
#[derive(Debug, Default)]
pub struct RotationReport {
    pub columns: Vec<ColumnRotation>,
}

/// What a rotation did in one sealed column.
#[derive(Debug)]
pub struct ColumnRotation {
    /// What its rows are: `integration(s)`, `secret(s)`.
    pub noun: &'static str,
    /// `table.column`.
    pub column: String,
    /// Values seen.
    pub total: u64,
    /// Values re-sealed under the first key.
    pub rotated: u64,
    /// Values that could not be opened; they are left as they were.
    pub failed: Vec<OpenError>,
}

/// One sealed value as rotation reads it.
struct SealedRow {
    id: String,
    sealed: SealedConfig,
    aad: String,
}

impl SealedColumn {
    /// `SELECT id, sealed, aad columns... FROM table WHERE <condition>`.
    fn select(&self, condition: &str) -> String {
        let aad: String = self
            .aad_columns
            .iter()
            .map(|c| format!(", CAST({c} AS TEXT)"))
            .collect();
        format!(
            "SELECT {id}, {sealed}{aad} FROM {table} WHERE {sealed} IS NOT NULL AND {only} AND {condition}",
            id = self.id,
            only = self.only,
            sealed = self.sealed,
            table = self.table,
        )
    }

    fn row<R: sqlx::Row>(&self, row: &R) -> Result<SealedRow, sqlx::Error>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let columns = (0..self.aad_columns.len())
            .map(|i| row.try_get(i + 2))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(SealedRow {
            id: row.try_get(0)?,
            sealed: SealedConfig::from_stored(row.try_get(1)?),
            aad: (self.aad)(&columns),
        })
    }
}

impl Store {
    /// The number of sealed values in every column of [`SEALED`].
    pub async fn sealed_count(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for column in SEALED {
            let sql = format!(
                "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL AND {}",
                column.table, column.sealed, column.only
            );
            let (n,): (i64,) =
                with_pool!(self, |pool| { sqlx::query_as(&sql).fetch_one(pool).await? });
            total += n as u64;
        }
        Ok(total)
    }

    /// Re-seals every value of every column of [`SEALED`] that is not under
    /// the keyring's first key, page by page, calling `progress` with the
    /// column being rotated and the number of values seen so far (of all
    /// columns). A value changed concurrently is re-read and re-sealed; one
    /// that does not open is reported and left unchanged.
    pub async fn rotate_keys(
        &self,
        keyring: &dyn Sealer,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<RotationReport, StoreError> {
        let mut report = RotationReport::default();
        let mut seen = 0;
        for column in SEALED {
            let mut done = ColumnRotation {
                noun: column.noun,
                column: format!("{}.{}", column.table, column.sealed),
                total: 0,
                rotated: 0,
                failed: Vec::new(),
            };
            let mut after = String::new();
            loop {
                let page = self.sealed_after(column, &after).await?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                for row in page {
                    done.total += 1;
                    match self.reseal(keyring, column, row).await? {
                        Ok(true) => done.rotated += 1,
                        Ok(false) => {}
                        Err(e) => done.failed.push(e),
                    }
                    seen += 1;
                    progress(column.noun, seen);
                }
            }
            report.columns.push(done);
        }
        Ok(report)
    }

    async fn sealed_after(
        &self,
        column: &SealedColumn,
        after: &str,
    ) -> Result<Vec<SealedRow>, StoreError> {
        let sql = column.select(&format!(
            "{} > $1 ORDER BY {} LIMIT $2",
            column.id, column.id
        ));
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(PAGE)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .map(|r| column.row(r))
                .collect::<Result<_, _>>()?)
        })
    }

    /// Re-seals one value with compare-and-swap on its old ciphertext.
    async fn reseal(
        &self,
        keyring: &dyn Sealer,
        column: &SealedColumn,
        mut row: SealedRow,
    ) -> Result<Result<bool, OpenError>, StoreError> {
        let swap = format!(
            "UPDATE {table} SET {sealed} = $1 WHERE {id} = $2 AND {sealed} = $3",
            table = column.table,
            sealed = column.sealed,
            id = column.id
        );
        let reread = column.select(&format!("{} = $1", column.id));
        loop {
            let new =
                match keyring.reseal(column.shown_as.unwrap_or(&row.id), &row.aad, &row.sealed) {
                    Ok(Some(new)) => new,
                    Ok(None) => return Ok(Ok(false)),
                    Err(e) => return Ok(Err(e)),
                };
            let current = with_pool!(self, |pool| {
                let swapped = sqlx::query(&swap)
                    .bind(new.as_stored())
                    .bind(&row.id)
                    .bind(row.sealed.as_stored())
                    .execute(pool)
                    .await?
                    .rows_affected();
                if swapped == 1 {
                    return Ok(Ok(true));
                }
                sqlx::query(&reread)
                    .bind(&row.id)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| column.row(&r))
                    .transpose()?
            });
            match current {
                Some(current) => row = current,
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
                .bind(new.as_stored())
                .bind(id)
                .bind(old.as_stored())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }
}
