//! The backends every store test runs on: a fresh SQLite file, and a fresh
//! PostgreSQL database when `INTEGRATIONS_TEST_POSTGRES` holds a server URL
//! (CI sets it), dropped again by [`cleanup`].

use common::store::Store;

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
    match std::env::var("INTEGRATIONS_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            let db = format!(
                "itest_{}",
                common::ids::random_token(12)
                    .to_lowercase()
                    .replace('-', "_")
            );
            admin_exec(&admin, &format!("CREATE DATABASE \"{db}\"")).await;
            let url = with_database(&admin, &db);
            out.push(Backend {
                name: "postgres",
                store: Store::connect(&url).await.unwrap(),
                url,
                _dir: None,
                pg_cleanup: Some((admin, db)),
            });
        }
        _ => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
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
