//! The PostgreSQL pool, directly or behind a transaction pooler.
//!
//! A pooler in transaction mode (PgBouncer) gives a client a server
//! connection for one transaction only. sqlx runs a bound statement in two
//! exchanges (parse, then bind and execute), each ending in a `Sync`: outside
//! a transaction the pooler may hand the second exchange to another server
//! connection, and a named statement it cached lives on only one of them. So
//! when the URL says `pgbouncer=true`, sqlx caches no statement, each
//! statement outside a transaction runs inside one of its own, and every
//! transaction begins by dropping the prepared statements an earlier
//! transaction (of any client) left on its server connection: no prepared
//! statement outlives its transaction.

use std::str::FromStr;

use futures_util::{StreamExt, TryStreamExt};
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgConnectOptions, PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres,
};
use sqlx::{Describe, Either, Execute, Executor, Transaction};

use super::StoreError;

/// The query parameter that marks a PostgreSQL URL as reached through a
/// transaction pooler.
const POOLER_PARAMETER: &str = "pgbouncer";

/// How long a pooled connection may sit idle and still be used unchecked;
/// one idle longer is pinged first (a server restart or a dropped
/// connection shows there, not in the statement).
pub(crate) const PING_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// A PostgreSQL pool and whether a transaction pooler stands in front of it.
#[derive(Debug)]
pub(crate) struct Pg {
    pub pool: PgPool,
    pinned: bool,
}

impl Pg {
    pub fn new(pool: PgPool, pinned: bool) -> Self {
        Self { pool, pinned }
    }

    /// Begins a transaction (a pooler keeps its server connection until it
    /// ends, with no prepared statement left from before).
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        if self.pinned {
            self.pool.begin_with("BEGIN; DEALLOCATE ALL").await
        } else {
            self.pool.begin().await
        }
    }
}

/// The connect options of a `postgres://` URL, and whether it names a
/// transaction pooler (`pgbouncer=true`, a parameter sqlx never sees).
pub(crate) fn options(url: &str) -> Result<(PgConnectOptions, bool), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pinned = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((POOLER_PARAMETER, value)) => {
                pinned = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(StoreError::Invalid(format!(
                            "the store URL's {POOLER_PARAMETER} parameter must be true or false"
                        )));
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    // The URL may carry a password: the parse error is not repeated.
    let mut options = PgConnectOptions::from_str(&url).map_err(|_| {
        StoreError::Connect(sqlx::Error::Configuration("malformed postgres URL".into()))
    })?;
    if pinned {
        // PgBouncer 1.18 refuses a startup parameter it does not track.
        options = options.statement_cache_capacity(0).extra_float_digits(None);
    }
    Ok((options, pinned))
}

/// Applies `migrations` in one transaction that holds an advisory lock
/// until it ends: replicas starting at once apply them once, and a pooler in
/// transaction mode keeps one server connection throughout (a session lock,
/// as sqlx takes by default, would stay behind on a pooled connection).
pub(crate) async fn migrate(pg: &Pg, migrations: &Migrator) -> Result<(), StoreError> {
    let unlocked = Migrator {
        migrations: migrations.migrations.clone(),
        ignore_missing: migrations.ignore_missing,
        locking: false,
        no_tx: migrations.no_tx,
    };
    let mut tx = pg.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('integrations migrations'))")
        .execute(&mut *tx)
        .await?;
    unlocked.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

impl<'c> Executor<'c> for &'c Pg {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return self.pool.fetch_many(query);
        }
        futures_util::stream::once(async move {
            let mut tx = self.begin().await?;
            let items: Vec<_> = tx.fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(items).map(Ok))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return self.pool.fetch_optional(query);
        }
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let row = tx.fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pooler_parameter_is_read_and_not_passed_on() {
        let (parsed, pinned) =
            options("postgres://u@h:6432/db?pgbouncer=true&sslmode=disable").unwrap();
        assert!(pinned);
        assert_eq!(parsed.get_database(), Some("db"));
        let (_, pinned) = options("postgres://u@h/db").unwrap();
        assert!(!pinned);
        let (_, pinned) = options("postgres://u@h/db?pgbouncer=false").unwrap();
        assert!(!pinned);
        assert!(options("postgres://u:secret@h/db?pgbouncer=maybe").is_err());
    }
}
