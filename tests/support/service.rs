//! What the tests of the sidecars' service share (HTTP mode and the relay):
//! a store with a keyring, profiles and a Teller enrollment, the real
//! `resolver` on it, and a serving process. Included with `#[path]`, beside
//! `cli.rs`, `postgres.rs` and `serve.rs`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::json;

use rmcp::RoleClient;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;

use super::{cli, mcp, postgres, serve};

pub const USER: &str = "u_amouzou";
pub const OTHER: &str = "u_other";

/// A store (SQLite file or fresh PostgreSQL database) with a keyring, two
/// profiles and a Teller enrollment granted to `prof_vzfin`.
pub struct Store {
    _dir: tempfile::TempDir,
    pub url: String,
    /// The database itself, for the test's own reads (`url` may go through
    /// a pooler).
    direct: String,
    pub keys: String,
    pub teller_id: String,
    _pg: Option<postgres::Database>,
}

impl Store {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("http.db").display());
        Self::seeded(dir, url, None)
    }

    pub async fn postgres() -> Option<Self> {
        let db = postgres::Database::create("http")?;
        Some(Self::seeded(
            tempfile::tempdir().unwrap(),
            db.url.clone(),
            Some(db),
        ))
    }

    /// A fresh PostgreSQL database reached through the PgBouncer of
    /// `INTEGRATIONS_TEST_PGBOUNCER` (everything but the test's own reads).
    pub async fn pgbouncer() -> Option<Self> {
        let bouncer = std::env::var("INTEGRATIONS_TEST_PGBOUNCER")
            .ok()
            .filter(|v| !v.is_empty())?;
        let db = postgres::Database::create("bounced")?;
        // The pooler's server and query (`pgbouncer=true`), this database.
        let (server, query) = bouncer.split_once('?').unwrap_or((&bouncer, ""));
        let name = db.url.rsplit_once('/').unwrap().1;
        let url = format!("{}/{name}?{query}", server.rsplit_once('/').unwrap().0);
        Some(Self::seeded(tempfile::tempdir().unwrap(), url, Some(db)))
    }

    fn seeded(dir: tempfile::TempDir, url: String, pg: Option<postgres::Database>) -> Self {
        let keys = cli::run(&url, "", &["keys", "generate"]).trim().to_string();
        let mut store = Self {
            _dir: dir,
            direct: pg.as_ref().map_or_else(|| url.clone(), |db| db.url.clone()),
            url,
            keys,
            teller_id: String::new(),
            _pg: pg,
        };
        for (id, slug) in [("prof_vzfin", "vzfin"), ("prof_coding", "coding")] {
            store.cli(&["profiles", "add", id, "--user", USER, "--slug", slug]);
        }
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
        let mut add = cli::command(
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
        );
        let mut child = add
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        store.teller_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        store
    }

    /// `integrations <args>` on this store, which must succeed: its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli::run(&self.url, &self.keys, args)
    }

    /// A binary of the workspace beside `integrations`.
    pub fn bin(name: &str) -> std::path::PathBuf {
        Path::new(cli::BIN).with_file_name(name)
    }

    /// `resolver <args>` on this store, with nothing else in its environment
    /// but a keyring and a provider secret it must never hand out.
    pub fn resolver(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(Self::bin("resolver"))
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
            let mut c = sqlx::SqliteConnection::connect(&self.direct).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(&self.direct).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
        }
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.direct).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&self.direct).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

/// A serving process: its base URL and its stderr, kept for the log checks.
pub struct Served {
    _child: tokio::process::Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `program` with only `envs` (and `RUST_LOG=debug`).
    pub async fn start(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "debug")
            .envs(envs.iter().copied());
        let (child, base, log) = serve::spawn(&mut cmd).await;
        Self {
            _child: child,
            base,
            log,
        }
    }

    /// `mcp-teller serve` on a free port.
    pub async fn teller(store: &Store, teller: &fakes::teller::FakeTeller) -> Self {
        Self::serving(&Store::bin("mcp-teller"), store, teller, &[]).await
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

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
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
