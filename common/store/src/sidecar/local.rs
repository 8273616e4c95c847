//! A sidecar's SQLite connection, used on the calling thread.
//!
//! sqlx runs each SQLite connection on a worker thread, and every statement
//! crosses to it and back: two thread wake-ups that cost more than the
//! indexed read or the audit insert itself. A sidecar runs two statements
//! per tool call, so it keeps one connection of its own and runs them in
//! place. Only a statement that finds the database locked by another
//! process (a CLI write, a key rotation) moves to a blocking thread to wait
//! there, so that a wait never stalls the sidecar's other calls.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::capabilities::{COUNT_CALL, SELECT_CAPABILITY};
use crate::rotate::SWAP_SEALED;
use crate::rows::{IntegrationRow, ProfileRow, select_integrations, select_profiles};
use crate::{Capability, Snapshot, StoreError};
use model::{IntegrationType, SealedConfig};

use super::AuditRow;
use crate::audit::INSERT_AUDIT;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct LocalSqlite {
    conn: Arc<Mutex<Connection>>,
}

impl LocalSqlite {
    /// Opens the existing database of a `sqlite:` store URL, read-write
    /// (read-only when the URL says `mode=ro`).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or(StoreError::UnsupportedUrl)?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::Invalid(
                "a sidecar needs a SQLite file, not an in-memory database".into(),
            ));
        }
        let read_only = query.split('&').any(|p| p == "mode=ro");
        // As a URI, so that the path is percent-decoded as sqlx decodes it.
        let uri = format!(
            "file:{}?mode={}",
            path.replace('#', "%23"),
            if read_only { "ro" } else { "rw" }
        );
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(uri, flags)?;
        // Setting `synchronous` reads the schema, which waits while another
        // process recovers the WAL or holds the database exclusively (two
        // sidecars starting at once): this one wait happens here.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Commits in WAL mode need no fsync; a few rows per call need a
        // small page cache.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256;")?;
        conn.busy_timeout(Duration::ZERO)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The user's profiles and integrations of `kind`, read in one
    /// transaction so that the grant check sees one consistent state.
    pub async fn snapshot(
        &self,
        user_id: &str,
        kind: Option<IntegrationType>,
    ) -> Result<Snapshot, StoreError> {
        let user = user_id.to_string();
        let (profiles, integrations) = self
            .run(move |conn| in_transaction(conn, "BEGIN", |conn| snapshot_rows(conn, &user, kind)))
            .await?;
        Snapshot::from_rows(profiles, integrations)
    }

    /// The capability token row of SHA-256 `hash`.
    pub async fn capability(&self, hash: String) -> Result<Option<Capability>, StoreError> {
        let row = self
            .run(move |conn| {
                conn.prepare_cached(SELECT_CAPABILITY)?
                    .query_row([&hash], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    })
                    .optional()
            })
            .await?;
        row.map(Capability::from_columns).transpose()
    }

    /// Counts a tool call of the token of SHA-256 `hash` in `minute` and
    /// reads `user_id`'s [`Snapshot`] (all types), in one write transaction;
    /// `None` when no live token (not revoked, not expired) has that SHA-256.
    pub async fn count_call_with_snapshot(
        &self,
        hash: String,
        minute: i64,
        user_id: &str,
    ) -> Result<Option<(i64, Snapshot)>, StoreError> {
        let user = user_id.to_string();
        let counted = self
            .run(move |conn| {
                in_transaction(conn, "BEGIN IMMEDIATE", |conn| {
                    let now = crate::now();
                    let calls: Option<i64> = conn
                        .prepare_cached(COUNT_CALL)?
                        .query_row(rusqlite::params![minute, &hash, now], |r| r.get(0))
                        .optional()?;
                    calls
                        .map(|calls| Ok((calls, snapshot_rows(conn, &user, None)?)))
                        .transpose()
                })
            })
            .await?;
        counted
            .map(|(calls, (profiles, integrations))| {
                Ok((calls, Snapshot::from_rows(profiles, integrations)?))
            })
            .transpose()
    }

    /// Runs `sql` with the text parameters `binds`: the rows it changed.
    pub async fn execute(&self, sql: &'static str, binds: Vec<String>) -> Result<u64, StoreError> {
        let changed = self
            .run(move |conn| {
                conn.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(binds.iter()))
            })
            .await?;
        Ok(changed as u64)
    }

    pub async fn swap_config(
        &self,
        id: &str,
        old: &SealedConfig,
        new: &SealedConfig,
    ) -> Result<bool, StoreError> {
        let (id, old, new) = (
            id.to_string(),
            old.as_stored().to_string(),
            new.as_stored().to_string(),
        );
        let changed = self
            .run(move |conn| conn.prepare_cached(SWAP_SEALED)?.execute((&new, &id, &old)))
            .await?;
        Ok(changed == 1)
    }

    pub async fn audit(&self, row: AuditRow) -> Result<(), StoreError> {
        let row = Arc::new(row);
        self.run(move |conn| {
            conn.prepare_cached(INSERT_AUDIT)?.execute((
                &row.at,
                &row.user_id,
                &row.profile_id,
                &row.session_id,
                &row.server,
                &row.tool,
                &row.integration_id,
                row.decision,
                &row.detail,
                row.duration_us,
            ))
        })
        .await?;
        Ok(())
    }

    /// Runs `work` here when the connection is free and the database is not
    /// locked (the connection's busy timeout is zero); otherwise on a
    /// blocking thread that waits up to [`BUSY_TIMEOUT`].
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        if let Ok(conn) = self.conn.try_lock() {
            match work(&conn) {
                Err(e) if is_locked(&e) => {}
                done => return Ok(done?),
            }
        }
        let conn = Arc::clone(&self.conn);
        let waited = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let done = work(&conn);
            conn.busy_timeout(Duration::ZERO)?;
            done
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("the store call did not finish: {e}")))?;
        Ok(waited?)
    }
}

/// The rows of a [`Snapshot`] of `user`'s profiles and integrations (of
/// `kind`, when given), read on `conn` in the transaction it is in.
fn snapshot_rows(
    conn: &Connection,
    user: &str,
    kind: Option<IntegrationType>,
) -> rusqlite::Result<(Vec<ProfileRow>, Vec<IntegrationRow>)> {
    let profiles = conn
        .prepare_cached(select_profiles!("WHERE user_id = $1"))?
        .query_map([user], ProfileRow::from_sqlite)?
        .collect::<Result<Vec<_>, _>>()?;
    let integrations = conn
        .prepare_cached(select_integrations!(
            "WHERE user_id = $1 AND ($2 IS NULL OR type = $2)"
        ))?
        .query_map(
            (user, kind.map(IntegrationType::as_str)),
            IntegrationRow::from_sqlite,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((profiles, integrations))
}

/// Runs `work` in one transaction opened with `begin` (`BEGIN` for a read,
/// `BEGIN IMMEDIATE` for a write that reads first; its statements prepared
/// once, unlike rusqlite's `Transaction`): committed when it succeeds,
/// rolled back otherwise.
pub(super) fn in_transaction<T>(
    conn: &Connection,
    begin: &str,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(begin)?.execute([])?;
    let result = work(conn);
    let ended = match &result {
        Ok(_) => conn.prepare_cached("COMMIT")?.execute([]).map(drop),
        Err(_) => Ok(()),
    };
    if !conn.is_autocommit() {
        // After a failure, or when COMMIT itself failed.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let value = result?;
    ended?;
    Ok(value)
}

fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}
