//! What the chat surfaces' tests share (`slack.rs`, `telegram.rs`): a
//! running `integrations serve` on a fresh store, with the fake Slack, the
//! fake Telegram and a forward endpoint, the example account's profiles
//! made over the API, and the way to reach its API, its store and its
//! agents.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fakes::slack::FakeSlack;
use fakes::slack::events::SIGNING_SECRET;
use fakes::telegram::FakeTelegram;
use fakes::webhook::FakeWebhook;
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};
use testkit::{Account, Database, cli, serve};

use crate::BIN;

/// The example user.
pub const USER: &str = Account::USER;

/// A server on a fresh store, the fakes it talks to, and an API token of
/// [`USER`].
pub struct World {
    _db: Database,
    pub url: String,
    pub keys: String,
    pub slack: FakeSlack,
    pub telegram: FakeTelegram,
    pub forward: FakeWebhook,
    _server: tokio::process::Child,
    pub log: Arc<Mutex<String>>,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl World {
    /// A server on `db`, with `extra` in its environment, and the profiles
    /// vzfin (the default) and coding.
    pub async fn start(db: Database, extra: &[(&str, &str)]) -> Self {
        let url = db.url.clone();
        let keys = cli::run(&url, "", &["keys", "generate"]).trim().to_string();
        let token = cli::run(&url, &keys, &["tokens", "create", "--user", USER])
            .trim()
            .to_string();
        let (slack, telegram, forward) = (
            FakeSlack::start().await.unwrap(),
            FakeTelegram::start().await.unwrap(),
            FakeWebhook::start().await.unwrap(),
        );
        // The server's own address is its public one: pick a free port first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("RUST_LOG", "debug")
            .env("INTEGRATIONS_DB", &url)
            .env("INTEGRATIONS_KEYS", &keys)
            .env("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .env("SLACK_API_BASE", slack.base_url())
            .env("TELEGRAM_API_BASE", telegram.base_url())
            .env("INBOUND_FORWARD_URL", forward.url("/inbound"))
            .env(
                "INBOUND_FORWARD_SECRET",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            )
            .envs(extra.iter().copied());
        let (server, base, log) = serve::spawn(&mut cmd).await;
        let world = Self {
            _db: db,
            url,
            keys,
            slack,
            telegram,
            forward,
            _server: server,
            log,
            base,
            http: reqwest::Client::new(),
            token,
        };
        for (id, slug, default) in [
            (Account::VZFIN, "vzfin", true),
            (Account::CODING, "coding", false),
        ] {
            let (status, _) = world
                .api(
                    "PUT",
                    &format!("/v1/profiles/{id}"),
                    json!({"slug": slug, "is_default": default}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        world
    }

    /// `integrations <args>` on this store, which must succeed: its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli::run(&self.url, &self.keys, args)
    }

    /// `integrations add <kind> <args> --config -`: the new row's id.
    pub fn add(&self, kind: &str, args: &[&str], config: Value) -> String {
        self.add_for(USER, kind, args, config)
    }

    /// [`World::add`] for `user`.
    pub fn add_for(&self, user: &str, kind: &str, args: &[&str], config: Value) -> String {
        let mut all = vec!["add", kind, "--user", user, "--config", "-"];
        all.extend(args);
        cli::run_with_stdin(&self.url, &self.keys, &all, &config.to_string())
            .trim()
            .to_string()
    }

    /// `method path` with `body` (none when null) and [`USER`]'s token: the
    /// status and the JSON answer (null when there is none).
    pub async fn api(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.api_with(&self.token, method, path, body).await
    }

    /// [`World::api`] with the API token `token`.
    pub async fn api_with(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The outbox, from its start.
    pub async fn inbound(&self) -> Vec<Value> {
        let (status, page) = self.api("GET", "/v1/inbound?after=0", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        page["messages"].as_array().unwrap().clone()
    }

    /// The forwarded outbox rows, once there are at least `n` (the forward
    /// runs after the chat service got its answer).
    pub async fn forwarded(&self, n: usize) -> Vec<fakes::webhook::Delivery> {
        for _ in 0..400 {
            let received = self.forward.received();
            if received.len() >= n {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} forwards arrived, not {n}",
            self.forward.received().len()
        );
    }

    /// An agent of `profile` in the session `session`: mcp-notify on this store.
    pub async fn agent(&self, profile: &str, session: &str) -> RunningService<RoleClient, ()> {
        self.agent_of(USER, profile, session).await
    }

    /// [`World::agent`] of `user`.
    pub async fn agent_of(
        &self,
        user: &str,
        profile: &str,
        session: &str,
    ) -> RunningService<RoleClient, ()> {
        let command = tokio::process::Command::new(testkit::bin("mcp-notify")).configure(|cmd| {
            cmd.env_clear()
                .env("INTEGRATIONS_DB", &self.url)
                .env("INTEGRATIONS_KEYS", &self.keys)
                .env("INTEGRATIONS_USER_ID", user)
                .env("INTEGRATIONS_PROFILE_ID", profile)
                .env("INTEGRATIONS_SESSION_ID", session)
                .env("SLACK_API_BASE", self.slack.base_url())
                .env("TELEGRAM_API_BASE", self.telegram.base_url());
        });
        ().serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    /// The one number `sql` selects from the store.
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    /// Runs `sql` on the store.
    pub async fn exec(&self, sql: &str) {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }
}
