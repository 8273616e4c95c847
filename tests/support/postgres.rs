//! What the PostgreSQL variants of the HTTP tests share.

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
