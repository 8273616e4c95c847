//! What the tests of the sidecars' service share (HTTP mode and the relay):
//! a store with a keyring, profiles and a Teller enrollment, the real
//! `resolver` on it, and a serving process.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;

use rmcp::RoleClient;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;

use crate::backend::{Backend, Database};
use crate::serve::Server;
use crate::{Account, cli, mcp};

/// The example user ([`Account::USER`]).
pub const USER: &str = Account::USER;
/// Another user ([`Account::OTHER`]).
pub const OTHER: &str = Account::OTHER;

/// A store (SQLite file or fresh PostgreSQL database) with a keyring, the
/// example account's two profiles, `prof_theirs` of [`OTHER`] and a Teller
/// enrollment granted to `prof_vzfin`.
pub struct Store {
    db: Database,
    /// The store's URL, as the product is given it.
    pub url: String,
    /// The keyring.
    pub keys: String,
    /// The Teller enrollment's integration id.
    pub teller_id: String,
}

impl Store {
    /// On a SQLite file.
    pub async fn sqlite() -> Self {
        Self::seeded(Backend::sqlite("http"))
    }

    /// On a fresh PostgreSQL database; `None` when it is not set up.
    pub async fn postgres() -> Option<Self> {
        Backend::postgres("http").map(Self::seeded)
    }

    /// A fresh PostgreSQL database reached through the PgBouncer of
    /// `INTEGRATIONS_TEST_PGBOUNCER` (everything but the test's own reads).
    pub async fn pgbouncer() -> Option<Self> {
        Backend::pooled("bounced").map(Self::seeded)
    }

    fn seeded(db: Database) -> Self {
        let url = db.url.clone();
        let keys = cli::run(&url, "", &["keys", "generate"]).trim().to_string();
        let mut store = Self {
            db,
            url,
            keys,
            teller_id: String::new(),
        };
        Account::seed(&store.url, &store.keys);
        store.cli(&[
            "profiles",
            "add",
            "prof_theirs",
            "--user",
            OTHER,
            "--slug",
            "theirs",
        ]);
        let config = json!({"enrollment_id": "enr_pnc", "access_token": fakes::teller::PNC_TOKEN, "institution_name": "PNC"});
        store.teller_id = cli::run_with_stdin(
            &store.url,
            &store.keys,
            &[
                "add",
                "teller",
                "--user",
                USER,
                "--agents",
                "prof_vzfin",
                "--config",
                "-",
            ],
            &config.to_string(),
        )
        .trim()
        .to_string();
        store
    }

    /// `integrations <args>` on this store, which must succeed: its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli::run(&self.url, &self.keys, args)
    }

    /// `resolver <args>` on this store, with nothing else in its environment
    /// but a keyring and a provider secret it must never hand out.
    pub fn resolver(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(crate::bin("resolver"))
            .args(args)
            .env_clear()
            .env("INTEGRATIONS_DB", &self.url)
            .env("INTEGRATIONS_KEYS_FILE", "/etc/integrations/keys.json")
            .env("GMAIL_CLIENT_SECRET", "CANARY-client-secret")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `resolver plan ... --transport <transport> --url <base>` for
    /// `profile` in `session`, which must succeed: its stdout.
    pub fn plan(
        &self,
        profile: &str,
        session: &str,
        transport: &str,
        base: &str,
        format: &str,
    ) -> String {
        let out = self.resolver(&[
            "plan",
            "--user",
            USER,
            "--profile",
            profile,
            "--session",
            session,
            "--transport",
            transport,
            "--url",
            base,
            "--format",
            format,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Rows of one text column.
    pub async fn query(&self, sql: &str) -> Vec<(String,)> {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.db.direct)
                .await
                .unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(&self.db.direct).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        }
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.db.direct)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&self.db.direct).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

impl Server {
    /// `mcp-teller serve` on a free port.
    pub async fn teller(store: &Store, teller: &fakes::teller::FakeTeller) -> Self {
        Self::serving(&crate::bin("mcp-teller"), store, teller, &[]).await
    }

    /// `program serve` on a free port over `store`, with `extra` in its
    /// environment.
    pub async fn serving(
        program: &Path,
        store: &Store,
        teller: &fakes::teller::FakeTeller,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut envs = vec![
            ("INTEGRATIONS_DB", store.url.as_str()),
            ("INTEGRATIONS_KEYS", store.keys.as_str()),
            ("TELLER_API_BASE", teller.base_url()),
        ];
        envs.extend_from_slice(extra);
        Self::start(program, &["serve", "--listen", "127.0.0.1:0"], &envs).await
    }

    /// A raw MCP `tools/list` POST to `path`, with `token` and `origin`
    /// when given: its status, `WWW-Authenticate` and body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        (status, challenge, response.text().await.unwrap_or_default())
    }
}

/// The enrollments `teller_list_enrollments` shows `agent`.
pub async fn enrollments(agent: &RunningService<RoleClient, ClientConfig>) -> usize {
    let result = mcp::call(agent, "teller_list_enrollments", json!({})).await;
    mcp::ok(result)["enrollments"].as_array().unwrap().len()
}

/// Scopes the store's Teller enrollment away from `prof_vzfin` and back:
/// `one` and `other` (agents of `prof_vzfin`) see each change on their next
/// call, with stdio's sentence.
pub async fn a_scope_change_is_seen_on_the_next_call(
    store: &Store,
    one: &RunningService<RoleClient, ClientConfig>,
    other: &RunningService<RoleClient, ClientConfig>,
) {
    store.cli(&["scope", &store.teller_id, "--agents", "prof_coding"]);
    assert_eq!(enrollments(one).await, 0);
    let denied = mcp::err(
        mcp::call(
            other,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_pnc"}),
        )
        .await,
    );
    assert!(
        denied.contains("No Teller enrollment 'enr_pnc' is available to this agent"),
        "{denied}"
    );
    store.cli(&["scope", &store.teller_id, "--agents", "prof_vzfin"]);
    assert_eq!(enrollments(other).await, 1);
}
