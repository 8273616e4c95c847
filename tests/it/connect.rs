//! The connect flows of `integrations serve`, end to end over real HTTP
//! against the fake Slack, Google and Teller, forged and replayed cases
//! included, on a SQLite file and (with `INTEGRATIONS_TEST_POSTGRES`) a fresh
//! PostgreSQL database.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BIN;
use testkit::{Backend, Database, cli};

const USER: &str = "u_amouzou";
const PUBLIC: &str = "https://integrations.example";
const DASHBOARD: &str = "https://app.example/settings/integrations";
const WEBHOOK_SECRET: &str = "teller-webhook-secret";

/// The fakes, a store, and a running server configured for them.
struct World {
    /// The store (dropped with the world).
    _db: Database,
    url: String,
    keys: String,
    slack: fakes::slack::FakeSlack,
    google: fakes::gmail::FakeGmail,
    teller: fakes::teller::FakeTeller,
    teller_key: Ed25519KeyPair,
    server: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    token: String,
    other_token: String,
    /// Whether the server checks Teller Connect's signatures.
    signed_teller: bool,
    /// Where the server finds Slack, Google and Teller instead of the fakes:
    /// a port nothing listens on.
    unreachable: Option<String>,
    /// The binding cookie of each provider's last authorize: what the
    /// browser that started the flow sends back to its callback.
    cookies: std::sync::Mutex<HashMap<String, String>>,
}

impl World {
    async fn new(db: Database) -> Self {
        let url = db.url.clone();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let teller_key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut world = Self {
            _db: db,
            url,
            keys: String::new(),
            slack: fakes::slack::FakeSlack::start().await.unwrap(),
            google: fakes::gmail::FakeGmail::start().await.unwrap(),
            teller: fakes::teller::FakeTeller::start().await.unwrap(),
            teller_key,
            server: tokio::process::Command::new("true").spawn().unwrap(),
            base: String::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            token: String::new(),
            other_token: String::new(),
            signed_teller: true,
            unreachable: None,
            cookies: Default::default(),
        };
        world.keys = world.cli(&["keys", "generate"]).trim().to_string();
        world.token = world
            .cli(&["tokens", "create", "--user", USER])
            .trim()
            .to_string();
        world.other_token = world
            .cli(&["tokens", "create", "--user", "u_other"])
            .trim()
            .to_string();
        world.start().await;
        for (id, slug) in [("prof_vzfin", "vzfin"), ("prof_coding", "coding")] {
            let (status, _) = world
                .api("PUT", &format!("/v1/profiles/{id}"), json!({"slug": slug}))
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        world
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("INTEGRATIONS_DB", self.url.clone()),
            ("INTEGRATIONS_KEYS", self.keys.clone()),
            ("PUBLIC_BASE_URL", PUBLIC.into()),
            ("DASHBOARD_URL", DASHBOARD.into()),
            ("SLACK_CLIENT_ID", "slack-client".into()),
            ("SLACK_CLIENT_SECRET", "slack-secret".into()),
            (
                "SLACK_AUTHORIZE_URL",
                "https://slack.example/oauth/v2/authorize".into(),
            ),
            ("SLACK_API_BASE", self.slack.base_url()),
            ("GMAIL_CLIENT_ID", fakes::gmail::CLIENT_ID.into()),
            ("GMAIL_CLIENT_SECRET", fakes::gmail::CLIENT_SECRET.into()),
            (
                "GOOGLE_AUTHORIZE_URL",
                "https://accounts.example/o/oauth2/v2/auth".into(),
            ),
            ("GOOGLE_TOKEN_URL", self.google.token_url()),
            ("GMAIL_API_BASE", self.google.api_base()),
            ("TELLER_API_BASE", self.teller.base_url().to_string()),
            (
                "TELLER_SIGNING_PUBKEY",
                STANDARD.encode(self.teller_key.public_key().as_ref()),
            ),
            ("TELLER_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ];
        env.retain(|(name, _)| self.signed_teller || *name != "TELLER_SIGNING_PUBKEY");
        if let Some(closed) = &self.unreachable {
            for (name, value) in &mut env {
                if [
                    "SLACK_API_BASE",
                    "GOOGLE_TOKEN_URL",
                    "GMAIL_API_BASE",
                    "TELLER_API_BASE",
                ]
                .contains(name)
                {
                    *value = closed.clone();
                }
            }
            // A delivery gives up on an unreachable provider within 2 s.
            env.push(("NOTIFY_DEADLINE_MS", "2000".into()));
        }
        env
    }

    fn cli(&self, args: &[&str]) -> String {
        cli::run(&self.url, &self.keys, args)
    }

    async fn start(&mut self) {
        let mut child = tokio::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .envs(self.env())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        self.base = line.trim().trim_start_matches("listening on ").to_string();
        self.server = child;
    }

    async fn api(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.api_as(&self.token, method, path, body).await
    }

    async fn api_as(
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

    /// Follows an authorize endpoint to the provider: the query it sends
    /// there; the binding cookie it set is kept for the callback.
    async fn authorize(&self, provider: &str) -> HashMap<String, String> {
        self.authorize_as(&self.token, provider).await
    }

    /// [`World::authorize`] for the user of the API token `token`.
    async fn authorize_as(&self, token: &str, provider: &str) -> HashMap<String, String> {
        let response = self
            .http
            .get(format!(
                "{}/v1/integrations/{provider}/authorize",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        self.keep_cookie(provider, &response);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let url = reqwest::Url::parse(&location).unwrap();
        url.query_pairs().into_owned().collect()
    }

    /// Keeps the binding cookie `response` sets for `provider`'s callback.
    fn keep_cookie(&self, provider: &str, response: &reqwest::Response) -> String {
        let set = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_string();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        self.cookies
            .lock()
            .unwrap()
            .insert(provider.into(), value.into());
        set
    }

    /// The browser that started the flow coming back to a callback: the
    /// redirect target, or the status and page of a refusal.
    async fn callback(
        &self,
        provider: &str,
        query: &[(&str, &str)],
    ) -> Result<String, (StatusCode, String)> {
        let cookie = self.cookies.lock().unwrap().get(provider).cloned();
        self.callback_from(provider, query, cookie.as_deref()).await
    }

    /// A browser with the binding cookie `cookie` (or none) coming back to
    /// a callback.
    async fn callback_from(
        &self,
        provider: &str,
        query: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> Result<String, (StatusCode, String)> {
        let mut request = self
            .http
            .get(format!("{}/api/{provider}/callback", self.base))
            .query(query);
        if let Some(cookie) = cookie {
            request = request.header(
                "cookie",
                format!("theme=dark; integrations_connect={cookie}"),
            );
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if status.is_redirection() {
            return Ok(response.headers()["location"].to_str().unwrap().to_string());
        }
        Err((status, response.text().await.unwrap()))
    }

    async fn integrations(&self, kind: &str) -> Vec<Value> {
        let (status, body) = self
            .api("GET", &format!("/v1/integrations?type={kind}"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        body["integrations"].as_array().unwrap().clone()
    }

    async fn set_status(&self, id: &str, status: &str) {
        self.sql(&format!(
            "UPDATE user_integrations SET status = '{status}' WHERE id = '{id}'"
        ))
        .await;
    }

    async fn sql(&self, statement: &str) {
        use sqlx::Connection;
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
    }

    /// Teller Connect's signatures over what it saw.
    fn sign(&self, nonce: &str, token: &str, user: &str, enrollment: &str) -> String {
        let message = format!("{nonce}.{token}.{user}.{enrollment}.sandbox");
        STANDARD.encode(self.teller_key.sign(message.as_bytes()).as_ref())
    }
}

/// A fresh Teller nonce for the world's user.
async fn nonce(w: &World) -> String {
    let (status, body) = w
        .api("POST", "/v1/integrations/teller/nonce", Value::Null)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    body["nonce"].as_str().unwrap().to_string()
}

fn refused(result: Result<String, (StatusCode, String)>, needle: &str) {
    match result {
        Ok(location) => panic!("expected a refusal, was redirected to {location}"),
        Err((status, page)) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(page.contains("<html") && page.contains(needle), "{page}");
            assert!(page.contains(DASHBOARD), "{page}");
        }
    }
}

async fn each_backend(test: impl AsyncFn(World)) {
    Backend::each("connect", async |db| test(World::new(db).await).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_connects_once_per_state_and_reconnects_in_place() {
    each_backend(async |w: World| {
        let response = w
            .http
            .get(format!("{}/v1/integrations/slack/authorize", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let query = w.authorize("slack").await;
        assert_eq!(query["client_id"], "slack-client");
        // What sending and the events need, as the app manifest declares it.
        let manifest: Value =
            serde_json::from_str(include_str!("../../docs/slack-app-manifest.json")).unwrap();
        let declared: Vec<&str> = manifest["oauth_config"]["scopes"]["bot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let asked: Vec<&str> = query["scope"].split(',').collect();
        assert_eq!(asked, declared);
        for needed in ["chat:write", "im:write", "im:history", "app_mentions:read"] {
            assert!(asked.contains(&needed), "{needed}");
        }
        let events = &manifest["settings"]["event_subscriptions"];
        assert_eq!(events["bot_events"], json!(["message.im", "app_mention"]));
        assert!(
            events["request_url"]
                .as_str()
                .unwrap()
                .ends_with("/api/slack/events")
        );
        assert!(
            manifest["oauth_config"]["redirect_urls"][0]
                .as_str()
                .unwrap()
                .ends_with("/api/slack/callback")
        );
        assert_eq!(
            query["redirect_uri"],
            format!("{PUBLIC}/api/slack/callback")
        );
        let state = query["state"].clone();

        // Missing, altered and denied: a readable page, nothing written.
        refused(
            w.callback("slack", &[("code", fakes::slack::OAUTH_CODE)])
                .await,
            "missing",
        );
        let mut altered = state.clone();
        altered.replace_range(0..1, if altered.starts_with('A') { "B" } else { "A" });
        refused(
            w.callback(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &altered)],
            )
            .await,
            "expired",
        );
        refused(
            w.callback("slack", &[("error", "access_denied"), ("state", &state)])
                .await,
            "not granted",
        );
        // The denied state is spent.
        refused(
            w.callback(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &state)],
            )
            .await,
            "already used",
        );
        assert!(w.integrations("slack").await.is_empty());

        // An expired state.
        let stale = w.authorize("slack").await["state"].clone();
        w.sql("UPDATE connect_keys SET expires_at = 0").await;
        refused(
            w.callback(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &stale)],
            )
            .await,
            "expired",
        );

        let state = w.authorize("slack").await["state"].clone();
        let location = w
            .callback(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &state)],
            )
            .await
            .unwrap();
        assert_eq!(location, format!("{DASHBOARD}?connected=slack"));
        let rows = w.integrations("slack").await;
        assert_eq!(rows.len(), 1);
        let config = &rows[0]["config"];
        assert_eq!(config["bot_token"], "********");
        assert_eq!(
            (config["team_id"].as_str(), config["team_name"].as_str()),
            (Some(fakes::slack::TEAM_ID), Some("Test Workspace"))
        );
        assert_eq!(
            (
                config["bot_user_id"].as_str(),
                config["authed_user_id"].as_str()
            ),
            (Some("U0BOT"), Some(fakes::slack::USER_ID))
        );
        // Replayed: refused, nothing new.
        refused(
            w.callback(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &state)],
            )
            .await,
            "already used",
        );

        // A bad code from Slack is a refusal too.
        let state = w.authorize("slack").await["state"].clone();
        refused(
            w.callback("slack", &[("code", "forged"), ("state", &state)])
                .await,
            "invalid_code",
        );

        // Connecting again replaces the row in place, keeping its scope.
        let id = rows[0]["id"].as_str().unwrap().to_string();
        let (status, _) = w
            .api(
                "PATCH",
                &format!("/v1/integrations/{id}"),
                json!({"profile_ids": ["prof_vzfin"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let state = w.authorize("slack").await["state"].clone();
        w.callback(
            "slack",
            &[("code", fakes::slack::OAUTH_CODE), ("state", &state)],
        )
        .await
        .unwrap();
        let rows = w.integrations("slack").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], id.as_str());
        assert_eq!(rows[0]["profile_ids"], json!(["prof_vzfin"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_connects_with_pkce_and_a_refresh_token() {
    each_backend(async |w: World| {
        let query = w.authorize("gmail").await;
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(
            (query["access_type"].as_str(), query["prompt"].as_str()),
            ("offline", "consent")
        );
        assert_eq!(query["client_id"], fakes::gmail::CLIENT_ID);
        let redirect = format!("{PUBLIC}/api/gmail/callback");
        assert_eq!(query["redirect_uri"], redirect);
        assert!(query["scope"].contains("gmail.readonly"));
        let code = w
            .google
            .authorize(&query["code_challenge"], &redirect, true);
        // A state issued for Slack does not open the Gmail callback.
        let slack_state = w.authorize("slack").await["state"].clone();
        refused(
            w.callback("gmail", &[("code", &code), ("state", &slack_state)])
                .await,
            "expired",
        );
        let location = w
            .callback("gmail", &[("code", &code), ("state", &query["state"])])
            .await
            .unwrap();
        assert_eq!(location, format!("{DASHBOARD}?connected=gmail"));
        assert_eq!(w.google.exchanges(), 1);
        let rows = w.integrations("gmail").await;
        assert_eq!(rows.len(), 1);
        let config = &rows[0]["config"];
        assert_eq!(config["email"], fakes::gmail::EMAIL);
        assert_eq!(
            (
                config["refresh_token"].as_str(),
                config["access_token"].as_str()
            ),
            (Some("********"), Some("********"))
        );
        assert!(
            config["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s.as_str().unwrap().ends_with("gmail.send"))
        );
        assert!(config["expires_at"].as_i64().unwrap() > 0);
        // Replayed state: refused.
        refused(
            w.callback("gmail", &[("code", &code), ("state", &query["state"])])
                .await,
            "already used",
        );
        // The connected grant works: the API's test refreshes it and reads the mailbox.
        let id = rows[0]["id"].as_str().unwrap().to_string();
        let (status, tested) = w
            .api("POST", &format!("/v1/integrations/{id}/test"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{tested}");
        assert!(
            tested["detail"]
                .as_str()
                .unwrap()
                .contains(fakes::gmail::EMAIL),
            "{tested}"
        );

        // Google keeps the refresh token when the app already had access.
        let query = w.authorize("gmail").await;
        let code = w
            .google
            .authorize(&query["code_challenge"], &redirect, false);
        refused(
            w.callback("gmail", &[("code", &code), ("state", &query["state"])])
                .await,
            "remove the app",
        );

        // Reconnecting after a dead grant: same row, active again.
        let id = rows[0]["id"].as_str().unwrap().to_string();
        w.set_status(&id, "needs_reauth").await;
        let query = w.authorize("gmail").await;
        let code = w
            .google
            .authorize(&query["code_challenge"], &redirect, true);
        w.callback("gmail", &[("code", &code), ("state", &query["state"])])
            .await
            .unwrap();
        let rows = w.integrations("gmail").await;
        assert_eq!(
            (
                rows.len(),
                rows[0]["id"].as_str(),
                rows[0]["status"].as_str()
            ),
            (1, Some(id.as_str()), Some("active"))
        );

        // The PKCE verifier is bound to its own state: a code for another challenge fails.
        let query = w.authorize("gmail").await;
        let code = w.google.authorize(
            &URL_SAFE_NO_PAD.encode(Sha256::digest(b"someone else's verifier")),
            &redirect,
            true,
        );
        refused(
            w.callback("gmail", &[("code", &code), ("state", &query["state"])])
                .await,
            "Google did not complete",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teller_connect_needs_a_fresh_signed_nonce() {
    each_backend(async |w: World| {
        let enrollment = |nonce: &str, token: &str, enrollment: &str, bank: &str, signature: String| {
            json!({
                "accessToken": token, "user": {"id": "usr_1"},
                "enrollment": {"id": enrollment, "institution": {"id": bank.to_lowercase(), "name": bank}},
                "signatures": [signature], "nonce": nonce,
            })
        };
        let pnc = fakes::teller::PNC_TOKEN;
        let first = nonce(&w).await;
        let body = enrollment(&first, pnc, "enr_pnc", "PNC", w.sign(&first, pnc, "usr_1", "enr_pnc"));
        let (status, row) = w.api("POST", "/v1/integrations/teller/callback", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{row}");
        assert_eq!((row["label"].as_str(), row["config"]["access_token"].as_str()), (Some("PNC"), Some("********")));
        let id = row["id"].as_str().unwrap().to_string();

        // Replayed, forged, unsigned, or another user's nonce: 401, nothing written.
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let fresh = nonce(&w).await;
        let forged = STANDARD.encode([7u8; 64]);
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", enrollment(&fresh, pnc, "enr_pnc", "PNC", forged)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let tampered = enrollment(&fresh, pnc, "enr_other", "PNC", w.sign(&fresh, pnc, "usr_1", "enr_pnc"));
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", tampered).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (_, theirs) = w.api_as(&w.other_token, "POST", "/v1/integrations/teller/nonce", Value::Null).await;
        let theirs = theirs["nonce"].as_str().unwrap().to_string();
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", enrollment(&theirs, pnc, "enr_pnc", "PNC", w.sign(&theirs, pnc, "usr_1", "enr_pnc"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(w.integrations("teller").await.len(), 1);

        let (status, tested) = w.api("POST", &format!("/v1/integrations/{id}/test"), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{tested}");
        assert!(tested["detail"].as_str().unwrap().contains("account"), "{tested}");

        // Another enrollment's id with this token: refused.
        let n = nonce(&w).await;
        let (status, body) = w.api("POST", "/v1/integrations/teller/callback", json!({
            "accessToken": pnc, "user": {"id": "usr_1"},
            "enrollment": {"id": "enr_chase", "institution": {"name": "Chase"}},
            "signatures": [w.sign(&n, pnc, "usr_1", "enr_chase")], "nonce": n,
        })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_FAILED")), "{body}");

        // A token Teller refuses is not stored.
        let n = nonce(&w).await;
        let (status, body) = w.api("POST", "/v1/integrations/teller/callback", enrollment(&n, "test_token_bogus", "enr_bogus", "Bogus", w.sign(&n, "test_token_bogus", "usr_1", "enr_bogus"))).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");

        // The same enrollment again updates in place and clears needs_reauth; another bank is another row.
        w.set_status(&id, "needs_reauth").await;
        let (status, _) = w.api("PATCH", &format!("/v1/integrations/{id}"), json!({"profile_ids": ["prof_vzfin"]})).await;
        assert_eq!(status, StatusCode::OK);
        let n = nonce(&w).await;
        let (status, row) = w.api("POST", "/v1/integrations/teller/callback", enrollment(&n, pnc, "enr_pnc", "PNC", w.sign(&n, pnc, "usr_1", "enr_pnc"))).await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!((row["id"].as_str(), row["status"].as_str()), (Some(id.as_str()), Some("active")));
        assert_eq!(row["profile_ids"], json!(["prof_vzfin"]));
        let chase = fakes::teller::CHASE_TOKEN;
        let n = nonce(&w).await;
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", enrollment(&n, chase, "enr_chase", "Chase", w.sign(&n, chase, "usr_1", "enr_chase"))).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(w.integrations("teller").await.len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teller_webhooks_are_verified_and_mark_disconnected_enrollments() {
    each_backend(async |w: World| {
        let (_, nonce) = w.api("POST", "/v1/integrations/teller/nonce", Value::Null).await;
        let nonce = nonce["nonce"].as_str().unwrap();
        let pnc = fakes::teller::PNC_TOKEN;
        let body = json!({"accessToken": pnc, "user": {"id": "usr_1"}, "enrollment": {"id": "enr_pnc", "institution": {"name": "PNC"}}, "signatures": [w.sign(nonce, pnc, "usr_1", "enr_pnc")], "nonce": nonce});
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", body).await;
        assert_eq!(status, StatusCode::CREATED);

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let sign = |t: i64, body: &str, secret: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{t}.{body}").as_bytes());
            mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let post = |header: String, body: &'static str| {
            let request = w
                .http
                .post(format!("{}/api/teller/webhook", w.base))
                .header("content-type", "application/json")
                .header("teller-signature", header)
                .body(body);
            async move { request.send().await.unwrap().status() }
        };
        // After the connect above, before the reconnect below.
        let happened = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let event: &'static str = format!(r#"{{"id":"wh_1","type":"enrollment.disconnected","payload":{{"enrollment_id":"enr_pnc","reason":"disconnected.account_locked"}},"timestamp":"{happened}"}}"#).leak();
        for header in [
            format!("t={now},v1={}", sign(now, event, "wrong-secret")),
            format!("t={},v1={}", now - 600, sign(now - 600, event, WEBHOOK_SECRET)),
            String::new(),
        ] {
            assert_eq!(post(header, event).await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(w.integrations("teller").await[0]["status"], "active");
        let header = format!("t={now},v1={},v1={}", "ab".repeat(32), sign(now, event, WEBHOOK_SECRET));
        assert_eq!(post(header, event).await, StatusCode::OK);
        assert_eq!(w.integrations("teller").await[0]["status"], "needs_reauth");
        let other = r#"{"id":"wh_2","type":"transactions.processed","payload":{},"timestamp":"2026-11-23T12:00:00Z"}"#;
        assert_eq!(post(format!("t={now},v1={}", sign(now, other, WEBHOOK_SECRET)), other).await, StatusCode::OK);

        // The user reconnects; Teller redelivers the event from before: the row stays active.
        let n = self::nonce(&w).await;
        let body = json!({"accessToken": pnc, "user": {"id": "usr_1"}, "enrollment": {"id": "enr_pnc", "institution": {"name": "PNC"}}, "signatures": [w.sign(&n, pnc, "usr_1", "enr_pnc")], "nonce": n});
        let (status, _) = w.api("POST", "/v1/integrations/teller/callback", body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(w.integrations("teller").await[0]["status"], "active");
        assert_eq!(post(format!("t={now},v1={}", sign(now, event, WEBHOOK_SECRET)), event).await, StatusCode::OK);
        assert_eq!(w.integrations("teller").await[0]["status"], "active");

        // A timestamp at the edge of i64 is refused, and the server keeps serving.
        let header = format!("t={},v1={}", i64::MIN, sign(i64::MIN, event, WEBHOOK_SECRET));
        assert_eq!(post(header, event).await, StatusCode::UNAUTHORIZED);
        let header = format!("t={},v1={}", i64::MAX, sign(i64::MAX, event, WEBHOOK_SECRET));
        assert_eq!(post(header, event).await, StatusCode::UNAUTHORIZED);
        assert_eq!(w.integrations("teller").await.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_completed_in_another_browser_connects_nothing() {
    each_backend(async |w: World| {
        // The cookie is the callback's alone, unreadable by scripts, sent on
        // the provider's top-level redirect, and only over https here.
        let response = w
            .http
            .get(format!("{}/v1/integrations/slack/authorize", w.base))
            .bearer_auth(&w.token)
            .header("accept", "text/html, application/json;q=0.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set = w.keep_cookie("slack", &response);
        for attribute in [
            "Path=/api/slack/callback",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Max-Age=600",
        ] {
            assert!(
                set.split("; ").any(|a| a == attribute),
                "{attribute}: {set}"
            );
        }
        let body: Value = response.json().await.unwrap();
        let url = reqwest::Url::parse(body["url"].as_str().unwrap()).unwrap();
        assert!(
            url.as_str()
                .starts_with("https://slack.example/oauth/v2/authorize?"),
            "{url}"
        );
        let state: String = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into();

        // The caller sends the consent link to someone else, who completes it
        // in their own browser (no cookie, or their own): refused, spent, nothing written.
        let code = [
            ("code", fakes::slack::OAUTH_CODE),
            ("state", state.as_str()),
        ];
        refused(
            w.callback_from("slack", &code, None).await,
            "not started in this browser",
        );
        let other = w.authorize("slack").await["state"].clone();
        refused(
            w.callback_from(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &other)],
                Some("someone-elses-cookie"),
            )
            .await,
            "not started in this browser",
        );
        refused(w.callback("slack", &code).await, "already used");
        assert!(w.integrations("slack").await.is_empty());

        // Gmail likewise: the code is never even exchanged.
        let query = w.authorize("gmail").await;
        let redirect = format!("{PUBLIC}/api/gmail/callback");
        let code = w
            .google
            .authorize(&query["code_challenge"], &redirect, true);
        refused(
            w.callback_from(
                "gmail",
                &[("code", &code), ("state", &query["state"])],
                None,
            )
            .await,
            "not started in this browser",
        );
        assert_eq!(w.google.exchanges(), 0);
        assert!(w.integrations("gmail").await.is_empty());

        // A second binding cookie beside the right one (planted from a
        // sibling site) makes the flow ambiguous: refused, nothing written.
        let state = w.authorize("slack").await["state"].clone();
        let cookie = w.cookies.lock().unwrap()["slack"].clone();
        refused(
            w.callback_from(
                "slack",
                &[("code", fakes::slack::OAUTH_CODE), ("state", &state)],
                Some(&format!("{cookie}; integrations_connect=planted")),
            )
            .await,
            "not started in this browser",
        );
        assert!(w.integrations("slack").await.is_empty());

        // The browser that started it connects, and its cookie is removed.
        let state = w.authorize("slack").await["state"].clone();
        let cookie = w.cookies.lock().unwrap()["slack"].clone();
        let response = w
            .http
            .get(format!("{}/api/slack/callback", w.base))
            .query(&[("code", fakes::slack::OAUTH_CODE), ("state", &state)])
            .header("cookie", format!("integrations_connect={cookie}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_redirection());
        let cleared = response.headers()["set-cookie"].to_str().unwrap();
        assert!(
            cleared.starts_with("integrations_connect=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        assert_eq!(w.integrations("slack").await.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teller_token_proves_its_enrollment_and_changes_only_through_teller_connect() {
    each_backend(async |mut w: World| {
        // Without Teller's signing key, only the token itself can prove the enrollment.
        w.signed_teller = false;
        w.server.kill().await.unwrap();
        w.start().await;
        let connect = async |token: &str, user_token: &str, enrollment: &str| {
            w.api_as(
                user_token,
                "POST",
                "/v1/integrations/teller/callback",
                json!({
                    "accessToken": token, "user": {"id": "usr_x"},
                    "enrollment": {"id": enrollment, "institution": {"name": "PNC"}},
                }),
            )
            .await
        };
        // Someone's own token that shows no account at all (every account
        // revoked) claims another user's enrollment id: refused.
        let chase = fakes::teller::CHASE_TOKEN;
        for account in ["acc_chase_checking", "acc_chase_card"] {
            let status = w
                .http
                .delete(format!("{}/accounts/{account}", w.teller.base_url()))
                .basic_auth(chase, Some(""))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        let other = w.other_token.clone();
        let (status, body) = connect(chase, &other, "enr_pnc").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("VALIDATION_FAILED")),
            "{body}"
        );
        // So the enrollment's owner can still connect it.
        let (status, row) = connect(fakes::teller::PNC_TOKEN, &w.token.clone(), "enr_pnc").await;
        assert_eq!(status, StatusCode::CREATED, "{row}");
        let id = row["id"].as_str().unwrap().to_string();

        // A PATCH changes neither the token nor the enrollment.
        for change in [
            json!({"access_token": chase}),
            json!({"enrollment_id": "enr_chase"}),
        ] {
            let (status, body) = w
                .api(
                    "PATCH",
                    &format!("/v1/integrations/{id}"),
                    json!({"config": change}),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Teller Connect"),
                "{body}"
            );
        }
        let (status, tested) = w
            .api("POST", &format!("/v1/integrations/{id}/test"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{tested}");
        assert!(
            tested["detail"].as_str().unwrap().contains("account"),
            "{tested}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_one_user_connected_cannot_be_connected_by_another() {
    each_backend(async |w: World| {
        // The user connects Slack and Gmail through their providers.
        let slack = w.authorize("slack").await;
        w.callback(
            "slack",
            &[
                ("code", fakes::slack::OAUTH_CODE),
                ("state", &slack["state"]),
            ],
        )
        .await
        .unwrap();
        let gmail = w.authorize("gmail").await;
        let redirect = format!("{PUBLIC}/api/gmail/callback");
        let code = w
            .google
            .authorize(&gmail["code_challenge"], &redirect, true);
        w.callback("gmail", &[("code", &code), ("state", &gmail["state"])])
            .await
            .unwrap();
        let owned: Vec<String> = [w.integrations("slack").await, w.integrations("gmail").await]
            .iter()
            .map(|rows| rows[0]["id"].as_str().unwrap().to_string())
            .collect();

        // Another user's consent for the same Slack user and mailbox
        // connects nothing, and the page names no one.
        let slack = w.authorize_as(&w.other_token, "slack").await;
        let refused_slack = w
            .callback(
                "slack",
                &[
                    ("code", fakes::slack::OAUTH_CODE),
                    ("state", &slack["state"]),
                ],
            )
            .await;
        let gmail = w.authorize_as(&w.other_token, "gmail").await;
        let code = w
            .google
            .authorize(&gmail["code_challenge"], &redirect, true);
        let refused_gmail = w
            .callback("gmail", &[("code", &code), ("state", &gmail["state"])])
            .await;
        for (outcome, noun) in [
            (refused_slack, "Slack user"),
            (refused_gmail, "Gmail address"),
        ] {
            let (status, page) = outcome.unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                page.contains(&format!("this {noun} is already connected")),
                "{page}"
            );
            assert!(!page.contains(USER), "{page}");
            assert!(owned.iter().all(|id| !page.contains(id.as_str())), "{page}");
        }
        let (status, theirs) = w
            .api_as(&w.other_token, "GET", "/v1/integrations", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(theirs["integrations"], json!([]), "{theirs}");
        // The user's own rows are unchanged, and connect again in place.
        let slack = w.authorize("slack").await;
        w.callback(
            "slack",
            &[
                ("code", fakes::slack::OAUTH_CODE),
                ("state", &slack["state"]),
            ],
        )
        .await
        .unwrap();
        assert_eq!(w.integrations("slack").await[0]["id"], owned[0].as_str());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_cannot_be_reached_is_502_provider_unavailable_and_writes_nothing() {
    let mut w = World::new(Backend::sqlite("connect")).await;
    let pnc = fakes::teller::PNC_TOKEN;
    let enrollment = |nonce: &str, signature: String| {
        json!({
            "accessToken": pnc, "user": {"id": "usr_1"},
            "enrollment": {"id": "enr_pnc", "institution": {"name": "PNC"}},
            "signatures": [signature], "nonce": nonce,
        })
    };
    let n = nonce(&w).await;
    let signed = enrollment(&n, w.sign(&n, pnc, "usr_1", "enr_pnc"));
    let (status, row) = w
        .api("POST", "/v1/integrations/teller/callback", signed)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    let teller_id = row["id"].as_str().unwrap().to_string();
    let slack = w.authorize("slack").await;
    w.callback(
        "slack",
        &[
            ("code", fakes::slack::OAUTH_CODE),
            ("state", &slack["state"]),
        ],
    )
    .await
    .unwrap();
    let slack_id = w.integrations("slack").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Slack, Google and Teller are now where nothing answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    w.unreachable = Some(format!("http://{closed}"));
    w.start().await;

    for provider in ["slack", "gmail"] {
        let query = w.authorize(provider).await;
        let result = w
            .callback(provider, &[("state", &query["state"]), ("code", "a-code")])
            .await;
        let Err((status, page)) = result else {
            panic!("{provider}: {result:?}");
        };
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{provider}: {page}");
        assert!(page.contains("could not be reached"), "{page}");
        assert!(page.contains("error=provider_unavailable"), "{page}");
        let expected = usize::from(provider == "slack");
        assert_eq!(w.integrations(provider).await.len(), expected);
    }

    let n = nonce(&w).await;
    let signed = enrollment(&n, w.sign(&n, pnc, "usr_1", "enr_pnc"));
    let (status, body) = w
        .api("POST", "/v1/integrations/teller/callback", signed)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "PROVIDER_UNAVAILABLE", "{body}");
    assert_eq!(w.integrations("teller").await.len(), 1);

    let (status, body) = w
        .api(
            "POST",
            &format!("/v1/integrations/{teller_id}/test"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "PROVIDER_UNAVAILABLE", "{body}");

    // A notification channel's test too: Slack was never reached.
    let (status, body) = w
        .api(
            "POST",
            &format!("/v1/integrations/{slack_id}/test"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "PROVIDER_UNAVAILABLE", "{body}");
}
