//! What the PostgreSQL variants of the CLI and HTTP tests share.

/// Drops a test database on the server of `admin` (connections and all).
pub fn drop_database(admin: String, db: String) {
    std::thread::spawn(move || {
        use sqlx::Connection;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join()
    .unwrap();
}

/// A fresh database on the server of `INTEGRATIONS_TEST_POSTGRES`, dropped
/// with this value.
pub struct Database {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    /// A new database named `<prefix>_<pid>_<random>`, or `None` when
    /// `INTEGRATIONS_TEST_POSTGRES` is not set.
    pub fn create(prefix: &str) -> Option<Self> {
        let admin = std::env::var("INTEGRATIONS_TEST_POSTGRES")
            .ok()
            .filter(|v| !v.is_empty())?;
        // A fresh RandomState is seeded anew: its hash of nothing is random.
        let random = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let name = format!("{prefix}_{}_{random:x}", std::process::id());
        let (admin_url, create) = (admin.clone(), format!("CREATE DATABASE \"{name}\""));
        std::thread::spawn(move || {
            use sqlx::Connection;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                    sqlx::query(&create).execute(&mut conn).await.unwrap();
                });
        })
        .join()
        .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Some(Self { url, admin, name })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        drop_database(self.admin.clone(), self.name.clone());
    }
}
