//! The backends every store test runs on: a fresh SQLite file, and a fresh
//! PostgreSQL database when `INTEGRATIONS_TEST_POSTGRES` holds a server URL
//! (CI sets it), dropped with its [`Backend`] (`testkit::Backend`); with
//! `INTEGRATIONS_TEST_PGBOUNCER` (the URL of a PgBouncer in transaction mode
//! in front of that server, `?pgbouncer=true`), the same tests once more
//! through it.

use store::Store;

/// A store on one backend; its database is dropped with it (on a panic
/// too).
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub store: Store,
    _db: testkit::Database,
}

/// SQLite, and PostgreSQL when `INTEGRATIONS_TEST_POSTGRES` is set (and
/// through PgBouncer when `INTEGRATIONS_TEST_PGBOUNCER` is set too).
pub async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    for (name, db) in [
        ("sqlite", Some(testkit::Backend::sqlite("store"))),
        ("postgres", testkit::Backend::postgres("itest")),
        ("pgbouncer", testkit::Backend::pooled("itest")),
    ] {
        let Some(db) = db else { continue };
        out.push(Backend {
            name,
            store: Store::connect(&db.url).await.unwrap(),
            url: db.url.clone(),
            _db: db,
        });
    }
    out
}

/// Closes the stores, then drops the PostgreSQL databases.
pub async fn cleanup(backends: Vec<Backend>) {
    for b in backends {
        drop(b.store);
    }
}
