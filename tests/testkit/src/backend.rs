//! The stores a test runs on: a SQLite file, and (with
//! `INTEGRATIONS_TEST_POSTGRES`) a fresh PostgreSQL database per test,
//! dropped when the test ends, on a panic too.

/// Where a test's store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the server of `INTEGRATIONS_TEST_POSTGRES`.
    Postgres,
}

impl Backend {
    /// Runs `test` on a fresh SQLite store and, when
    /// `INTEGRATIONS_TEST_POSTGRES` is set, on a fresh PostgreSQL database
    /// (named `<prefix>_…`), one after the other.
    pub async fn each(prefix: &str, test: impl AsyncFn(Database)) {
        test(Self::sqlite(prefix)).await;
        if let Some(db) = Self::postgres(prefix) {
            test(db).await;
        }
    }

    /// A fresh SQLite store, `<prefix>.db` in a directory of its own.
    pub fn sqlite(prefix: &str) -> Database {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(format!("{prefix}.db")).display()
        );
        Database {
            direct: url.clone(),
            url,
            backend: Self::Sqlite,
            dir,
            _pg: None,
        }
    }

    /// A fresh PostgreSQL database named `<prefix>_<pid>_<random>`, or
    /// `None` (said on stderr) when `INTEGRATIONS_TEST_POSTGRES` is not set.
    /// A server that cannot be reached fails the test under CI (`CI` set),
    /// and is said on stderr otherwise.
    pub fn postgres(prefix: &str) -> Option<Database> {
        let pg = Postgres::create(prefix)?;
        Some(Database {
            url: pg.url.clone(),
            direct: pg.url.clone(),
            backend: Self::Postgres,
            dir: tempfile::tempdir().unwrap(),
            _pg: Some(pg),
        })
    }

    /// [`Backend::postgres`] reached through the PgBouncer of
    /// `INTEGRATIONS_TEST_PGBOUNCER` (its URL with `pgbouncer=true`);
    /// `None` when either is not set. [`Database::direct`] still reaches the
    /// database itself.
    pub fn pooled(prefix: &str) -> Option<Database> {
        let bouncer = std::env::var("INTEGRATIONS_TEST_PGBOUNCER")
            .ok()
            .filter(|v| !v.is_empty())?;
        let mut db = Self::postgres(prefix)?;
        // The pooler's server and query (`pgbouncer=true`), this database.
        let (server, query) = bouncer.split_once('?').unwrap_or((&bouncer, ""));
        let name = db.direct.rsplit_once('/').unwrap().1;
        db.url = format!("{}/{name}?{query}", server.rsplit_once('/').unwrap().0);
        Some(db)
    }
}

/// A test's fresh store: its URL, and what is dropped with it (the
/// temporary directory, the PostgreSQL database).
pub struct Database {
    /// The URL the product is given (through a pooler, for
    /// [`Backend::pooled`]).
    pub url: String,
    /// The database itself, for the test's own reads.
    pub direct: String,
    /// Where it lives.
    pub backend: Backend,
    dir: tempfile::TempDir,
    _pg: Option<Postgres>,
}

impl Database {
    /// A temporary directory that lives as long as the store.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Whether this runs under CI, where a PostgreSQL test must not pass
/// without its server.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The sentence a PostgreSQL variant prints when it is not run.
const NOT_SET: &str = "INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run";

/// A fresh database on the server of `INTEGRATIONS_TEST_POSTGRES`, dropped
/// with this value (connections and all).
pub struct Postgres {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

impl Postgres {
    /// A new database named `<prefix>_<pid>_<random>`; `None` when
    /// `INTEGRATIONS_TEST_POSTGRES` is not set, or its server cannot be
    /// reached outside CI (said on stderr).
    pub fn create(prefix: &str) -> Option<Self> {
        let Some(admin) = std::env::var("INTEGRATIONS_TEST_POSTGRES")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            eprintln!("{NOT_SET}");
            return None;
        };
        // A fresh RandomState is seeded anew: its hash of nothing is random.
        let random = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let name = format!("{prefix}_{}_{random:x}", std::process::id());
        let create = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = on_server(&admin, create) {
            assert!(
                !under_ci() && matches!(e, sqlx::Error::Io(_)),
                "cannot create a database at INTEGRATIONS_TEST_POSTGRES: {e}"
            );
            eprintln!(
                "cannot reach PostgreSQL at INTEGRATIONS_TEST_POSTGRES ({e}): PostgreSQL variant not run"
            );
            return None;
        }
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Some(Self { url, admin, name })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = on_server(&self.admin, drop);
    }
}

/// Runs `statement` on the server of `admin`, on a thread of its own (the
/// caller may be inside a runtime, or unwinding).
fn on_server(admin: &str, statement: String) -> Result<(), sqlx::Error> {
    let admin = admin.to_string();
    std::thread::spawn(move || {
        use sqlx::Connection;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&statement).execute(&mut conn).await?;
                Ok(())
            })
    })
    .join()
    .unwrap()
}
