//! Reading the product's tables: `profiles`, `user_integrations`,
//! `user_secrets` and `"user"`, over one PostgreSQL connection, times as
//! RFC 3339 UTC with microseconds (our store's format).

use std::collections::HashMap;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A time column as our store writes times.
macro_rules! time {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            "::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// A row of the product's `profiles`.
#[derive(Debug, sqlx::FromRow)]
pub struct Profile {
    pub id: String,
    /// `None` for a shared profile.
    pub user_id: Option<String>,
    pub name: String,
    pub slug: String,
    pub created_at: String,
}

/// A row of the product's `user_integrations`, its config still sealed.
#[derive(Debug, sqlx::FromRow)]
pub struct Integration {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub encrypted_config: String,
    pub enabled: bool,
    pub is_default: bool,
    pub scope: Option<String>,
    /// The `jsonb` column as text (`None` for SQL null).
    pub profile_ids: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A row of the product's `user_secrets`, its value still sealed.
#[derive(Debug, sqlx::FromRow)]
pub struct Secret {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub encrypted_value: String,
    pub scope: Option<String>,
    pub profile_ids: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Everything the import reads, oldest rows first.
pub struct Tables {
    pub profiles: Vec<Profile>,
    pub integrations: Vec<Integration>,
    pub secrets: Vec<Secret>,
    /// `"user".email` by user id.
    pub emails: HashMap<String, String>,
}

impl Tables {
    /// Reads the product's database at `url` in one read-only transaction.
    pub async fn read(url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url).await.map_err(|e| {
            // sqlx's message may quote the URL: only the kind of failure.
            anyhow::anyhow!("cannot connect to the product's database ({})", kind(&e))
        })?;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        let profiles = sqlx::query_as(concat!(
            "SELECT id::text AS id, user_id::text AS user_id, name, slug, ",
            time!("created_at"),
            " AS created_at FROM profiles ORDER BY created_at, id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the product's profiles: {e}"))?;
        let integrations = sqlx::query_as(concat!(
            "SELECT id::text AS id, user_id::text AS user_id, type AS kind, encrypted_config, \
             coalesce(enabled, true) AS enabled, coalesce(is_default, false) AS is_default, scope::text AS scope, profile_ids::text AS profile_ids, ",
            time!("created_at"),
            " AS created_at, ",
            time!("updated_at"),
            " AS updated_at FROM user_integrations ORDER BY created_at, id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the product's user_integrations: {e}"))?;
        let secrets = sqlx::query_as(concat!(
            "SELECT id::text AS id, user_id::text AS user_id, name, encrypted_value, \
             scope::text AS scope, profile_ids::text AS profile_ids, ",
            time!("created_at"),
            " AS created_at, ",
            time!("updated_at"),
            " AS updated_at FROM user_secrets ORDER BY created_at, id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the product's user_secrets: {e}"))?;
        let emails: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id::text, email FROM \"user\"")
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the product's \"user\" table: {e}"))?;
        tx.rollback().await?;
        Ok(Self {
            profiles,
            integrations,
            secrets,
            emails: emails
                .into_iter()
                .filter_map(|(id, email)| Some((id, email?)))
                .collect(),
        })
    }

    /// How many rows the import goes through.
    pub fn len(&self) -> usize {
        self.profiles.len() + self.integrations.len() + self.secrets.len()
    }
}

/// What kind of failure a connection error is, without its text.
fn kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "the URL is not a valid PostgreSQL URL",
        sqlx::Error::Database(_) => "the server refused the connection",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "the server could not be reached",
        _ => "the connection failed",
    }
}
