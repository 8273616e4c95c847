//! The backends every store test runs on: a fresh SQLite file, and a fresh
//! PostgreSQL database when `INTEGRATIONS_TEST_POSTGRES` holds a server URL
//! (CI sets it), dropped again by [`cleanup`]; with
//! `INTEGRATIONS_TEST_PGBOUNCER` (the URL of a PgBouncer in transaction mode
//! in front of that server, `?pgbouncer=true`), the same tests once more
//! through it.

use store::Store;

/// A store on one backend, and what to clean up after it.
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_cleanup: Option<(String, String)>,
}

/// SQLite, and PostgreSQL when `INTEGRATIONS_TEST_POSTGRES` is set.
pub async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let mut out = vec![Backend {
        name: "sqlite",
        store: Store::connect(&url).await.unwrap(),
        url,
        _dir: Some(dir),
        pg_cleanup: None,
    }];
    let Some(admin) = env("INTEGRATIONS_TEST_POSTGRES") else {
        eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run");
        return out;
    };
    let pooled = env("INTEGRATIONS_TEST_PGBOUNCER").map(|url| ("pgbouncer", url));
    for (name, server) in std::iter::once(("postgres", admin.clone())).chain(pooled) {
        let db = format!(
            "itest_{}",
            model::ids::random_token(12)
                .to_lowercase()
                .replace('-', "_")
        );
        admin_exec(&admin, &format!("CREATE DATABASE \"{db}\"")).await;
        let url = with_database(&server, &db);
        out.push(Backend {
            name,
            store: Store::connect(&url).await.unwrap(),
            url,
            _dir: None,
            pg_cleanup: Some((admin.clone(), db)),
        });
    }
    out
}

/// Closes the stores and drops the PostgreSQL databases.
pub async fn cleanup(backends: Vec<Backend>) {
    for b in backends {
        drop(b.store);
        if let Some((admin, db)) = b.pg_cleanup {
            admin_exec(
                &admin,
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            )
            .await;
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn admin_exec(admin: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("INTEGRATIONS_TEST_POSTGRES is set but PostgreSQL is unreachable");
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (server, _) = base
        .rsplit_once('/')
        .expect("a postgres URL names a database");
    format!("{server}/{db}{query}")
}
