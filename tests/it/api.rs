//! `integrations serve` over real HTTP, for what only the process shows (the
//! API itself is `api_router`'s, in-process): on a SQLite file and (with
//! `INTEGRATIONS_TEST_POSTGRES`) a fresh PostgreSQL database, request ids,
//! the tests against the fakes and secrets never in a log line; a PATCH seen
//! by a running sidecar; graceful shutdown; and 200 concurrent clients.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fakes::Fault;
use fakes::webhook::FakeWebhook;
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

use crate::BIN;
use crate::api_answers::{failed, ok};
use testkit::{Backend, Database, cli, serve};

const USER: &str = "u_amouzou";
const OTHER: &str = "u_other";
/// Secret values that must never be logged.
const CANARIES: &[&str] = &[
    "re_CANARY_key_1",
    "re_CANARY_key_2",
    "CANARY-secret-value",
    "CANARY-rotated",
    "whsec_CANARYsigningkey",
];

/// A store (SQLite file or fresh PostgreSQL database) with a keyring.
struct Store {
    /// The database (dropped with the store).
    _db: Database,
    url: String,
    keys: String,
    name: &'static str,
}

impl Store {
    async fn sqlite() -> Self {
        Self::on(Backend::sqlite("api"), "sqlite")
    }

    /// A fresh database on the server of `INTEGRATIONS_TEST_POSTGRES`, if set.
    async fn postgres() -> Option<Self> {
        Backend::postgres("api").map(|db| Self::on(db, "postgres"))
    }

    fn on(db: Database, name: &'static str) -> Self {
        let mut store = Self {
            url: db.url.clone(),
            _db: db,
            keys: String::new(),
            name,
        };
        store.keys = store.cli(&["keys", "generate"]).trim().to_string();
        store
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        cli::command(&self.url, &self.keys, args)
    }

    fn cli(&self, args: &[&str]) -> String {
        cli::run(&self.url, &self.keys, args)
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        cli::run_with_stdin(&self.url, &self.keys, args, stdin)
    }

    fn token(&self, user: &str) -> String {
        self.cli(&["tokens", "create", "--user", user])
            .trim()
            .to_string()
    }
}

/// A running `integrations serve`, its stderr kept for the log checks.
struct Server {
    child: tokio::process::Child,
    base: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Server {
    async fn start(store: &Store, extra: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("INTEGRATIONS_DB", &store.url)
            .env("INTEGRATIONS_KEYS", &store.keys)
            .env("RUST_LOG", "trace")
            .envs(extra.iter().copied());
        let (child, base, log) = serve::spawn(&mut cmd).await;
        Self {
            child,
            base,
            log,
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            response.headers().contains_key("x-request-id"),
            "{method} {path}: no request id"
        );
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// What only the process shows, on `store`: a request id on every answer,
/// the tests reaching the fake webhook receiver and Resend (their base URLs
/// come from the environment), and no secret or token in a log line at
/// `trace` while every secret goes through, on success and on refusal.
/// Every endpoint and every error themselves are `api_router`'s.
async fn what_only_the_process_shows(store: &Store) {
    let webhook = FakeWebhook::start().await.unwrap();
    let resend = fakes::resend::FakeResend::start().await.unwrap();
    let server = Server::start(
        store,
        &[
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1"),
            ("RESEND_API_BASE", &resend.base_url()),
        ],
    )
    .await;
    let me = store.token(USER);
    let them = store.token(OTHER);
    let token = me;
    let me = Some(token.as_str());

    // Refused tokens, and the caller's request id kept.
    for bad in [None, Some("itk_not-a-token")] {
        failed(
            server.send("GET", "/v1/integrations", bad, None).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        );
    }
    let echoed = server
        .http
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "req-from-the-caller-1")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-from-the-caller-1");

    // Every secret through the API, stored or refused.
    let email = ok(
        server
            .send("POST", "/v1/integrations", me, Some(json!({"type": "email", "config": {"api_key": "re_CANARY_key_1", "from_address": "alerts@app.example", "to_address": "me@example.com"}})))
            .await,
        StatusCode::CREATED,
    );
    let email_id = email["id"].as_str().unwrap().to_string();
    failed(
        server.send("POST", "/v1/integrations", me, Some(json!({"type": "email", "config": {"api_key": "re_CANARY_key_2", "from_address": "a@b.example", "to_address": "c@d.example"}}))).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    let hook = ok(
        server
            .send("POST", "/v1/integrations", me, Some(json!({"type": "webhook", "config": {"url": webhook.url("/hooks/1"), "secret": "whsec_CANARYsigningkey"}})))
            .await,
        StatusCode::CREATED,
    );
    let hook_id = hook["id"].as_str().unwrap().to_string();
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{email_id}"),
                me,
                Some(json!({"config": {"api_key": "re_CANARY_key_2"}, "enabled": false})),
            )
            .await,
        StatusCode::OK,
    );
    for body in [
        b"{\"label\": \"x\", \"password\": \"CANARY-secret-value\"}".to_vec(),
        b"{\"enabled\": \"CANARY-secret-value\"}".to_vec(),
    ] {
        let (status, _) = server
            .raw(
                "PATCH",
                &format!("/v1/integrations/{hook_id}"),
                &token,
                body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    failed(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{hook_id}"),
                Some(&them),
                Some(json!({"label": "x"})),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let secret = ok(
        server
            .send(
                "POST",
                "/v1/secrets",
                me,
                Some(json!({"name": "OPENAI_API_KEY", "value": "CANARY-secret-value"})),
            )
            .await,
        StatusCode::CREATED,
    );
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/secrets/{}", secret["id"].as_str().unwrap()),
                me,
                Some(json!({"value": "CANARY-rotated"})),
            )
            .await,
        StatusCode::OK,
    );

    // Test: a signed webhook, an email through Resend, a failure.
    let tested = ok(
        server
            .send(
                "POST",
                &format!("/v1/integrations/{hook_id}/test"),
                me,
                None,
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(tested["status"], "ok");
    assert_eq!(webhook.received().len(), 1);
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{email_id}"),
                me,
                Some(json!({"enabled": true, "config": {"api_key": fakes::resend::API_KEY}})),
            )
            .await,
        StatusCode::OK,
    );
    ok(
        server
            .send(
                "POST",
                &format!("/v1/integrations/{email_id}/test"),
                me,
                None,
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(resend.sent().len(), 1);
    webhook
        .faults()
        .inject(Fault::status("/hooks/1", 410, json!({})));
    failed(
        server
            .send(
                "POST",
                &format!("/v1/integrations/{hook_id}/test"),
                me,
                None,
            )
            .await,
        StatusCode::BAD_GATEWAY,
        "DELIVERY_FAILED",
    );

    // No secret nor token in a log line (logging at trace).
    let log = server.log.lock().unwrap().clone();
    for canary in CANARIES
        .iter()
        .chain([token.as_str(), them.as_str()].iter())
    {
        assert!(!log.contains(canary), "{} logged {canary}", store.name);
    }
    assert!(
        log.contains("request_id"),
        "one structured line per request: {log}"
    );
}

// Multi-threaded: the fakes answer the server while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_provider_tests_and_quiet_logs_on_sqlite() {
    what_only_the_process_shows(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_provider_tests_and_quiet_logs_on_postgres() {
    match Store::postgres().await {
        Some(store) => what_only_the_process_shows(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_through_the_api_is_seen_by_a_running_sidecar() {
    let store = Store::sqlite().await;
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let server = Server::start(&store, &[]).await;
    let token = store.token(USER);
    for (id, slug) in [("prof_vzfin", "vzfin"), ("prof_coding", "coding")] {
        ok(
            server
                .send(
                    "PUT",
                    &format!("/v1/profiles/{id}"),
                    Some(&token),
                    Some(json!({"slug": slug})),
                )
                .await,
            StatusCode::CREATED,
        );
    }
    let config = json!({"enrollment_id": "enr_pnc", "access_token": fakes::teller::PNC_TOKEN, "institution_name": "PNC"});
    let id = store
        .cli_with_stdin(
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
    let sidecar = testkit::bin("mcp-teller");
    let command = tokio::process::Command::new(sidecar).configure(|cmd| {
        cmd.env_clear()
            .env("INTEGRATIONS_DB", &store.url)
            .env("INTEGRATIONS_KEYS", &store.keys)
            .env("INTEGRATIONS_USER_ID", USER)
            .env("INTEGRATIONS_PROFILE_ID", "prof_vzfin")
            .env("TELLER_API_BASE", teller.base_url());
    });
    let agent = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();
    let listed = || async {
        let result = agent
            .call_tool(CallToolRequestParams::new("teller_list_enrollments"))
            .await
            .unwrap();
        result.structured_content.unwrap()["enrollments"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed().await, 1);
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{id}"),
                Some(&token),
                Some(json!({"profile_ids": ["prof_coding"]})),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(listed().await, 0);
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{id}"),
                Some(&token),
                Some(json!({"scope": "all"})),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(listed().await, 1);
    ok(
        server
            .send(
                "PATCH",
                &format!("/v1/integrations/{id}"),
                Some(&token),
                Some(json!({"enabled": false})),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(listed().await, 0);
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    let store = Store::sqlite().await;
    let webhook = FakeWebhook::start().await.unwrap();
    let mut server = Server::start(&store, &[("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1")]).await;
    let token = store.token(USER);
    let hook = ok(
        server
            .send(
                "POST",
                "/v1/integrations",
                Some(&token),
                Some(json!({"type": "webhook", "config": {"url": webhook.url("/slow")}})),
            )
            .await,
        StatusCode::CREATED,
    );
    webhook
        .faults()
        .inject(Fault::delay("/slow", Duration::from_millis(1500)));
    let (http, base, id) = (
        server.http.clone(),
        server.base.clone(),
        hook["id"].as_str().unwrap().to_string(),
    );
    let in_flight = tokio::spawn(async move {
        http.post(format!("{base}/v1/integrations/{id}/test"))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = server.child.id().unwrap() as i32;
    assert_eq!(unsafe_kill(pid), 0);
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        StatusCode::OK,
        "the request in flight finished"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(server.log.lock().unwrap().contains("shutting down"));
}

/// SIGTERM through the `kill` command (no libc binding in this crate).
fn unsafe_kill(pid: i32) -> i32 {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_or(-1, |s| s.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_for_ten_seconds_lose_nothing() {
    const CLIENTS: usize = 200;
    let store = Store::sqlite().await;
    let server = Arc::new(Server::start(&store, &[]).await);
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let user = format!("u_load_{n}");
        let token = store.token(&user);
        let hook = ok(
            server
                .send("POST", "/v1/integrations", Some(&token), Some(json!({"type": "webhook", "config": {"url": format!("https://hooks.example.com/{n}")}})))
                .await,
            StatusCode::CREATED,
        );
        clients.push((token, hook["id"].as_str().unwrap().to_string()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (token, id)) in clients.into_iter().enumerate() {
        let server = Arc::clone(&server);
        tasks.spawn(async move {
            let (mut last, mut writes, mut errors) = (None, 0u32, Vec::new());
            let mut i = 0u32;
            while Instant::now() < deadline {
                i += 1;
                let (status, body) = if (i + n as u32).is_multiple_of(3) {
                    let label = format!("client {n} write {i}");
                    let done = server
                        .send(
                            "PATCH",
                            &format!("/v1/integrations/{id}"),
                            Some(&token),
                            Some(json!({"label": label})),
                        )
                        .await;
                    if done.0 == StatusCode::OK {
                        last = Some(label);
                        writes += 1;
                    }
                    done
                } else {
                    server
                        .send("GET", "/v1/integrations", Some(&token), None)
                        .await
                };
                if status != StatusCode::OK {
                    errors.push(format!("{status} {body}"));
                }
            }
            (token, last, writes, errors)
        });
    }
    let mut total_writes = 0;
    while let Some(done) = tasks.join_next().await {
        let (token, last, writes, errors) = done.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        total_writes += writes;
        let (_, now) = server
            .send("GET", "/v1/integrations", Some(&token), None)
            .await;
        if let Some(last) = last {
            assert_eq!(
                now["integrations"][0]["label"],
                last.as_str(),
                "an update was lost"
            );
        }
    }
    assert!(total_writes > 0);
}

async fn platform_notifications(store: &Store) {
    let webhook = FakeWebhook::start().await.unwrap();
    let resend = fakes::resend::FakeResend::start().await.unwrap();
    for (user, id, slug) in [
        (USER, "prof_vzfin", "vzfin"),
        (USER, "prof_coding", "coding"),
        (OTHER, "prof_theirs", "theirs"),
    ] {
        store.cli(&["profiles", "add", id, "--user", user, "--slug", slug]);
    }
    let server = Server::start(
        store,
        &[
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1"),
            ("RESEND_API_BASE", &resend.base_url()),
            ("NOTIFY_MAX_PER_MINUTE", "4"),
        ],
    )
    .await;
    let (me, them) = (store.token(USER), store.token(OTHER));
    let me = Some(me.as_str());
    ok(
        server
            .send("POST", "/v1/integrations", me, Some(json!({"type": "webhook", "config": {"url": webhook.url("/hooks/platform")}, "profile_ids": ["prof_vzfin"]})))
            .await,
        StatusCode::CREATED,
    );
    ok(
        server
            .send("POST", "/v1/integrations", me, Some(json!({"type": "email", "config": {"api_key": fakes::resend::API_KEY, "from_address": "alerts@app.example", "to_address": "me@example.com"}})))
            .await,
        StatusCode::CREATED,
    );
    let notify = |body: Value| server.send("POST", "/v1/notifications", me, Some(body));

    // Each channel granted to the profile: one result and one log row each.
    let ask = json!({"profile_id": "prof_vzfin", "message": "**Nightly report** is ready",
        "title": "Report", "urgency": "high", "channels": ["webhook", "email"], "idempotency_key": "nightly-1"});
    let sent = ok(notify(ask.clone()).await, StatusCode::OK);
    let results = sent["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{sent}");
    for (result, channel) in results.iter().zip(["webhook", "email"]) {
        assert_eq!(result["channel"], channel, "{sent}");
        assert_eq!(result["status"], "sent", "{sent}");
        assert!(
            result["notification_id"]
                .as_str()
                .unwrap()
                .starts_with("ntf_")
        );
        assert!(result.get("error").is_none(), "{sent}");
    }
    assert_eq!(webhook.received().len(), 1);
    assert_eq!(resend.sent().len(), 1);

    // The same key again: the first results, nothing sent again.
    let again = ok(notify(ask).await, StatusCode::OK);
    assert_eq!(again["results"], sent["results"]);
    assert_eq!(webhook.received().len(), 1);

    // A channel not granted to the profile fails in words; the default
    // channel is chosen among the granted ones.
    let coding = ok(
        notify(json!({"profile_id": "prof_coding", "message": "hi", "channels": ["webhook"]}))
            .await,
        StatusCode::OK,
    );
    assert_eq!(coding["results"][0]["status"], "failed", "{coding}");
    assert!(
        coding["results"][0]["notification_id"].is_string(),
        "{coding}"
    );
    assert!(
        coding["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("webhook"),
        "{coding}"
    );
    let default = ok(
        notify(json!({"profile_id": "prof_coding", "message": "hi"})).await,
        StatusCode::OK,
    );
    assert_eq!(default["results"][0]["channel"], "email", "{default}");
    assert_eq!(default["results"][0]["status"], "sent", "{default}");

    // Another user's profile, a channel named twice, an empty message: 400.
    failed(
        notify(json!({"profile_id": "prof_theirs", "message": "hi"})).await,
        StatusCode::BAD_REQUEST,
        "PROFILE_NOT_FOUND",
    );
    failed(
        notify(
            json!({"profile_id": "prof_vzfin", "message": "hi", "channels": ["email", "email"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    failed(
        notify(json!({"profile_id": "prof_vzfin", "message": "  "})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );

    // They count against the profile's limit (4 a minute): two sent, two
    // more pass, the fifth is refused.
    for n in 0..2 {
        let one = ok(
            notify(json!({"profile_id": "prof_vzfin", "message": format!("ping {n}"), "channels": ["webhook"]})).await,
            StatusCode::OK,
        );
        assert_eq!(one["results"][0]["status"], "sent", "{one}");
    }
    let over = ok(
        notify(
            json!({"profile_id": "prof_vzfin", "message": "one too many", "channels": ["webhook"]}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(over["results"][0]["status"], "failed", "{over}");
    assert!(
        over["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("Too many notifications"),
        "{over}"
    );
    assert_eq!(webhook.received().len(), 3);

    // The log: the caller's own rows, paged by cursor.
    let page = ok(
        server
            .send(
                "GET",
                "/v1/notifications?profile_id=prof_vzfin&limit=2",
                me,
                None,
            )
            .await,
        StatusCode::OK,
    );
    let rows = page["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{page}");
    assert!(
        rows.iter()
            .all(|r| r["source"] == "platform" && r["status"] == "sent"),
        "{page}"
    );
    // Sent at once, the two channels' rows may be in either order.
    let mut logged: Vec<String> = rows
        .iter()
        .map(|r| r["notification_id"].to_string())
        .collect();
    let mut answered: Vec<String> = results
        .iter()
        .map(|r| r["notification_id"].to_string())
        .collect();
    logged.sort();
    answered.sort();
    assert_eq!(logged, answered);
    let rest = ok(
        server
            .send(
                "GET",
                &format!(
                    "/v1/notifications?profile_id=prof_vzfin&after={}",
                    page["next_cursor"]
                ),
                me,
                None,
            )
            .await,
        StatusCode::OK,
    );
    // The two pings, and the refused one: every channel named has its row.
    let rest_rows = rest["notifications"].as_array().unwrap();
    assert_eq!(rest_rows.len(), 3, "{rest}");
    assert_eq!(rest_rows[2]["status"], "failed");
    assert_eq!(
        rest_rows[2]["notification_id"],
        over["results"][0]["notification_id"]
    );
    let all = ok(
        server.send("GET", "/v1/notifications", me, None).await,
        StatusCode::OK,
    );
    assert_eq!(all["notifications"].as_array().unwrap().len(), 7, "{all}");
    let theirs = ok(
        server
            .send("GET", "/v1/notifications", Some(&them), None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(theirs["notifications"], json!([]));

    // `integrations notify` takes the same path.
    let out = store
        .command(&[
            "notify",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--channels",
            "email",
            "--message",
            "from the CLI",
        ])
        .env("RESEND_API_BASE", resend.base_url())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("email: sent via email (ntf_"), "{printed}");
    assert_eq!(resend.sent().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_notifications_over_the_api_on_sqlite() {
    platform_notifications(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_notifications_over_the_api_on_postgres() {
    match Store::postgres().await {
        Some(store) => platform_notifications(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

/// Issue 24, point 3, on the REST API: a write whose API token is revoked
/// while its body is still arriving is 401 once the body has come, and
/// stores nothing.
#[tokio::test]
async fn a_write_whose_token_is_revoked_while_its_body_arrives_is_refused_and_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let store = Store::sqlite().await;
    let server = Server::start(&store, &[]).await;
    let token = store.token(USER);
    let token_id = store
        .cli(&["tokens", "list", "--user", USER])
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let body =
        json!({"type": "webhook", "config": {"url": "https://hooks.example.com/in"}}).to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/integrations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The head has passed the token check; the body is not whole yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.cli(&["tokens", "revoke", &token_id, "--user", USER]);
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let fresh = store.token(USER);
    let listed = ok(
        server
            .send("GET", "/v1/integrations", Some(&fresh), None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(
        listed["integrations"],
        json!([]),
        "nothing stored: {listed}"
    );
}
