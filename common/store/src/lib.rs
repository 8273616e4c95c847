//! All the SQL of the integrations layer: the store, SQLite or PostgreSQL
//! through sqlx, one behaviour on both, and the sidecars' side of it
//! ([`SidecarStore`]).
//!
//! Every query is written once; [`with_pool!`] expands it for each backend.
//! Writes that read before they write run in one transaction per user
//! ([`begin_for_user`]): `BEGIN IMMEDIATE` on SQLite, so that concurrent
//! writers queue on the busy timeout instead of failing with `database is
//! locked`; a per-user advisory lock on PostgreSQL, so that two writers of one
//! user's rows never interleave.

mod audit;
pub(crate) mod capabilities;
mod chat_hash;
mod connect;
mod dashboard;
mod events;
mod health;
mod identities;
mod import;
mod inbound;
mod integrations;
mod leases;
pub mod logging;
mod notification_log;
mod postgres;
mod prefetch;
mod profiles;
pub(crate) mod rotate;
pub(crate) mod rows;
mod secrets;
mod sidecar;
mod snapshot;
mod telegram;
mod tokens;

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use capabilities::{
    CLI_MINTER, Capability, DEFAULT_TTL, LiveSession, MAX_LISTED, MAX_TTL, MintedToken, Minter,
    TokenRefusal, TooManyMints, capability_hash,
};
pub use connect::{Purpose, SpentKey, SpentState};
pub use dashboard::{MAX_LINK_TTL, SESSION_TTL};
pub use events::{PendingEvent, PurgedEvents};
pub use health::HealthResult;
pub use identities::IdentityClaims;
pub use import::{ImportOutcome, ImportRow, ImportedIntegration, ImportedSecret};
pub use inbound::{InboundMessage, NewInbound, Origin};
pub use integrations::{IntegrationUpdate, NewIntegration};
pub use notification_log::LoggedRow;
pub use prefetch::Prefetched;
pub use profiles::{DEFAULT_MAX_PROFILES_PER_USER, NewProfile, max_profiles_per_user};
pub use rotate::{ColumnRotation, RotationReport};
pub use secrets::{NewSecret, SecretUpdate, secret_name_schema, secret_value_schema};
pub use sidecar::notifications::{
    CLAIM_TIMEOUT, Claim, IDEMPOTENCY_WINDOW, LoggedNotification, NewClaim, ThreadAnchor, ThreadRow,
};
pub use sidecar::{GrantError, SidecarStore};
pub use snapshot::Snapshot;
pub use telegram::{ClaimedThread, THREAD_WINDOW};
pub use tokens::{ApiToken, TokenOwner};

use model::scope::ScopeError;
use model::sealing::OpenError;

/// The PostgreSQL connections a service process pools unless
/// `INTEGRATIONS_DB_POOL` says otherwise.
pub const SERVICE_CONNECTIONS: u32 = 10;

/// The store URL used when neither `INTEGRATIONS_DB` nor `--db` is given.
pub const DEFAULT_URL: &str = "sqlite://integrations.db?mode=rwc";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// What went wrong in the store. Never carries a config or a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL: use sqlite://path?mode=rwc or postgres://...")]
    UnsupportedUrl,
    #[error("cannot open the store: {0}")]
    Connect(sqlx::Error),
    #[error("cannot migrate the store: {0}")]
    Migrate(#[from] MigrateError),
    #[error("store error: {0}")]
    Database(#[from] sqlx::Error),
    /// From a sidecar's own SQLite connection.
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{what} '{id}' does not exist")]
    NotFound { what: &'static str, id: String },
    /// A uniqueness rule refused the write.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// An API token minted more capability tokens this minute than it may.
    #[error(transparent)]
    TooManyMints(#[from] capabilities::TooManyMints),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(postgres::Pg),
}

/// A handle on the store; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: std::sync::Arc<Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match *self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Expands `$body` once per backend with `$pool` bound to its pool.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &*$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// The store URL from `INTEGRATIONS_DB`, else [`DEFAULT_URL`].
    pub fn url_from_env() -> String {
        std::env::var("INTEGRATIONS_DB")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string())
    }

    /// Opens the store at `url` (`sqlite://...` or `postgres://...`) and
    /// brings its schema up to date. A SQLite file is created on first use
    /// (unless the URL says `mode=ro`) and runs in WAL mode.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url, 4, false)?;
        store.migrate().await?;
        Ok(store)
    }

    /// [`Store::connect`] for a service process (`integrations serve`): a
    /// pool of [`Store::service_connections`].
    pub async fn connect_service(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url, Self::service_connections()?, false)?;
        store.migrate().await?;
        Ok(store)
    }

    /// The PostgreSQL connections a service process pools:
    /// `INTEGRATIONS_DB_POOL`, by default [`SERVICE_CONNECTIONS`].
    pub fn service_connections() -> Result<u32, StoreError> {
        match std::env::var("INTEGRATIONS_DB_POOL") {
            Err(_) => Ok(SERVICE_CONNECTIONS),
            Ok(v) if v.is_empty() => Ok(SERVICE_CONNECTIONS),
            Ok(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    StoreError::Invalid(
                        "INTEGRATIONS_DB_POOL must be a number of connections from 1 to 1000"
                            .into(),
                    )
                }),
        }
    }

    /// Opens a PostgreSQL store the way a sidecar does: no migration, at
    /// most `connections` connections, opened at the first query and closed
    /// when idle. (A sidecar on SQLite uses its own connection:
    /// [`SidecarStore`].)
    pub(crate) fn connect_sidecar(url: &str, connections: u32) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl);
        }
        Self::open(url, connections.max(1), true)
    }

    fn open(url: &str, pg_connections: u32, lazy: bool) -> Result<Self, StoreError> {
        let idle = Duration::from_secs(if lazy { 10 } else { 30 });
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .create_if_missing(!url.contains("mode=ro"))
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30));
            // A local file has nothing to check before each use: skipping
            // the ping saves a round trip through the connection's worker.
            let pool = SqlitePoolOptions::new()
                .max_connections(pg_connections.max(2))
                .min_connections(0)
                .test_before_acquire(false)
                .idle_timeout(idle)
                .connect_lazy_with(options);
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (options, pinned) = postgres::options(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(pg_connections)
                .min_connections(0)
                .idle_timeout(idle)
                // A connection is pinged before use only when it sat idle:
                // a ping per statement is one round trip more for each.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= postgres::PING_IDLE {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_lazy_with(options);
            Backend::Postgres(postgres::Pg::new(pool, pinned))
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Self {
            backend: std::sync::Arc::new(backend),
        })
    }

    /// Applies the migrations that are not applied yet.
    ///
    /// Several processes may open a new SQLite file at once; the loser of that
    /// race (its migration fails to execute) finds the schema applied when it
    /// tries again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            let result = match &*self.backend {
                Backend::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
                Backend::Postgres(pg) => return postgres::migrate(pg, &POSTGRES_MIGRATIONS).await,
            };
            match result {
                Err(MigrateError::Execute(_)) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match *self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// A pool on which a write transaction that holds one user's rows begins.
pub(crate) trait UserLock {
    type Db: sqlx::Database;
    /// Opens a write transaction that holds `user_id`'s rows until it ends.
    fn begin_for_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl UserLock for SqlitePool {
    type Db = sqlx::Sqlite;
    /// `BEGIN IMMEDIATE`: the database's one writer, until the end.
    async fn begin_for_user(
        &self,
        _user_id: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl UserLock for postgres::Pg {
    type Db = sqlx::Postgres;
    /// A per-user advisory lock, released with the transaction.
    async fn begin_for_user(
        &self,
        user_id: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Opens a write transaction that holds `user_id`'s rows until it ends.
pub(crate) async fn begin_for_user<P: UserLock>(
    pool: &P,
    user_id: &str,
) -> Result<sqlx::Transaction<'static, P::Db>, sqlx::Error> {
    pool.begin_for_user(user_id).await
}

/// The current time as stored: RFC 3339 UTC with microseconds, so that rows
/// written one after another sort in the order they were written.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Maps a unique-constraint violation to a [`StoreError::Conflict`] saying `message`.
pub(crate) fn conflict_on_unique(
    message: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(e),
    }
}
