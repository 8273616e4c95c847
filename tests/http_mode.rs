//! The sidecars as a service (issue 16): MCP over streamable HTTP with
//! per-session capability tokens. `mcp-teller serve` and `integrations serve`
//! run as processes against the fake Teller; tokens are minted by the real
//! `resolver plan --transport http` (and `POST /v1/sessions`); the agent is
//! rmcp's streamable-HTTP client; the CLI changes the store meanwhile. On
//! SQLite and, with `INTEGRATIONS_TEST_POSTGRES`, on PostgreSQL.

use std::path::Path;

use reqwest::StatusCode;
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/mcp.rs"]
mod mcp;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/service.rs"]
mod service;

use service::{OTHER, Served, Store, USER};

/// The token of server `name` in a Claude Code plan over HTTP.
fn token_of(plan: &Value, name: &str) -> String {
    plan["mcpServers"][name]["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

/// `resolver plan ... --transport http` for `profile` in `session`.
fn http_plan(store: &Store, profile: &str, session: &str, base: &str, format: &str) -> String {
    store.plan(profile, session, "http", base, format)
}

impl Served {
    /// A raw POST to `path`: its status, `WWW-Authenticate` and body.
    async fn post(
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

/// rmcp's streamable-HTTP client at `url` with `token`: the stateless
/// protocol of 2026-07-28, or (`handshake`) the session of 2025-11-25.
async fn agent(
    url: &str,
    token: &str,
    handshake: bool,
) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token),
    );
    if handshake {
        ClientConfig::default()
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .serve(transport)
            .await
            .unwrap()
    } else {
        let stateless = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        ClientConfig::default()
            .serve_with_lifecycle(transport, stateless)
            .await
            .unwrap()
    }
}

async fn enrollments(agent: &RunningService<RoleClient, ClientConfig>) -> usize {
    let result = mcp::call(agent, "teller_list_enrollments", json!({})).await;
    mcp::ok(result)["enrollments"].as_array().unwrap().len()
}

/// The request got past the token and Origin checks (rmcp answers the
/// bare `tools/list` itself).
fn assert_passes(status: StatusCode) {
    assert!(
        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
        "{status}"
    );
}

fn assert_unauthorized((status, challenge, body): (StatusCode, Option<String>, String)) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{challenge:?}"
    );
}

async fn teller_over_http(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Served::teller(store, &teller).await;
    let url = format!("{}/mcp/teller", served.base);

    // The plan: each server an http entry with the token, no key material.
    let text = http_plan(store, "prof_vzfin", "sess_1", &served.base, "claude-code");
    for canary in [
        "keys.json",
        "CANARY",
        "INTEGRATIONS_",
        store.url.as_str(),
        store.keys.as_str(),
        fakes::teller::PNC_TOKEN,
        "command",
    ] {
        assert!(!text.contains(canary), "the plan holds {canary}: {text}");
    }
    let plan: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan["mcpServers"]["teller"]["type"], "http");
    assert_eq!(plan["mcpServers"]["teller"]["url"], url);
    let token = token_of(&plan, "teller");
    assert_eq!(token, token_of(&plan, "notify"));
    assert!(token.starts_with("mct_"));

    // Both transports of rmcp 3.9: the stateless protocol and the session.
    let stateless = agent(&url, &token, false).await;
    let session = agent(&url, &token, true).await;
    assert_eq!(
        session.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    assert_eq!(
        stateless.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    assert_eq!(enrollments(&stateless).await, 1);
    assert_eq!(enrollments(&session).await, 1);
    let accounts = mcp::call(
        &session,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_pnc"}),
    )
    .await;
    assert!(!mcp::ok(accounts)["accounts"].as_array().unwrap().is_empty());

    // Identity never comes from arguments: the same denial as on stdio.
    let refused = mcp::err(
        mcp::call(
            &stateless,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_pnc", "user_id": OTHER}),
        )
        .await,
    );
    assert!(!refused.is_empty());

    // The audit rows carry the token's session.
    let rows = store
        .query(
            "SELECT tool FROM audit_log WHERE session_id = 'sess_1' AND profile_id = 'prof_vzfin'",
        )
        .await;
    assert!(
        rows.iter().any(|(t,)| t == "teller_list_accounts"),
        "{rows:?}"
    );

    // A scope change is seen on the next call, with stdio's sentence.
    store.cli(&["scope", &store.teller_id, "--agents", "prof_coding"]);
    assert_eq!(enrollments(&stateless).await, 0);
    let denied = mcp::err(
        mcp::call(
            &session,
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
    assert_eq!(enrollments(&session).await, 1);

    // A token whose plan did not grant teller: 403, not a tool result.
    let coding: Value = serde_json::from_str(&http_plan(
        store,
        "prof_coding",
        "sess_2",
        &served.base,
        "claude-code",
    ))
    .unwrap();
    assert!(coding["mcpServers"].get("teller").is_none());
    let coding_token = token_of(&coding, "notify");
    let (status, _, _) = served.post("/mcp/teller", Some(&coding_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Missing, unknown and altered tokens: 401 with WWW-Authenticate.
    assert_unauthorized(served.post("/mcp/teller", None, None).await);
    assert_unauthorized(served.post("/mcp/teller", Some("mct_nonsense"), None).await);
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert_unauthorized(served.post("/mcp/teller", Some(&altered), None).await);

    // An expired token: 401.
    let expiring: Value = serde_json::from_str(&http_plan(
        store,
        "prof_vzfin",
        "sess_3",
        &served.base,
        "claude-code",
    ))
    .unwrap();
    let expiring = token_of(&expiring, "teller");
    assert_passes(served.post("/mcp/teller", Some(&expiring), None).await.0);
    store
        .execute("UPDATE capability_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 'sess_3'")
        .await;
    assert_unauthorized(served.post("/mcp/teller", Some(&expiring), None).await);

    // Origin: a foreign one is refused, the server's own and none pass.
    let (status, _, _) = served
        .post("/mcp/teller", Some(&token), Some("http://evil.example"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let own = served.base.replace("127.0.0.1", "localhost");
    assert_passes(served.post("/mcp/teller", Some(&token), Some(&own)).await.0);
    assert_passes(served.post("/mcp/teller", Some(&token), None).await.0);

    // Revoking the session ends its token on the next request.
    let out = store.resolver(&["revoke", "--session", "sess_1"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"revoked":1}"#
    );
    assert_unauthorized(served.post("/mcp/teller", Some(&token), None).await);
    let after = stateless
        .call_tool(rmcp::model::CallToolRequestParams::new(
            "teller_list_enrollments",
        ))
        .await;
    assert!(after.is_err(), "a revoked token was served: {after:?}");

    let health = reqwest::get(format!("{}/healthz", served.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // The log says why tokens were refused, and never holds one.
    let log = served.log();
    assert!(log.contains("revoked"), "{log}");
    for secret in [&token, &coding_token, &expiring, &altered] {
        assert!(!log.contains(secret.as_str()), "a token was logged");
    }
    let _ = session.cancel().await;
    let _ = stateless.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teller_over_http_with_capability_tokens_on_sqlite() {
    teller_over_http(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teller_over_http_with_capability_tokens_on_postgres() {
    match Store::postgres().await {
        Some(store) => teller_over_http(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

async fn integrations_serve_mints_and_serves(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Served::start(
        Path::new(cli::BIN),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("INTEGRATIONS_DB", &store.url),
            ("INTEGRATIONS_KEYS", &store.keys),
            ("TELLER_API_BASE", teller.base_url()),
        ],
    )
    .await;
    let api = |user: &str| {
        store
            .cli(&["tokens", "create", "--user", user])
            .trim()
            .to_string()
    };
    let (mine, theirs) = (api(USER), api(OTHER));
    let http = reqwest::Client::new();
    let mint = |token: String, body: Value| {
        let http = http.clone();
        let url = format!("{}/v1/sessions", served.base);
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };

    // Another user's API token cannot mint for this user's profile.
    let (status, body) = mint(
        theirs.clone(),
        json!({"profile_id": "prof_vzfin", "session_id": "sess_r"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "PROFILE_NOT_FOUND");

    let (status, body) = mint(
        mine.clone(),
        json!({"profile_id": "prof_vzfin", "session_id": "sess_r", "ttl_seconds": 600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["session_id"], "sess_r");
    assert!(body["expires_at"].is_string());
    let text = body.to_string();
    for canary in [
        store.keys.as_str(),
        store.url.as_str(),
        fakes::teller::PNC_TOKEN,
        "INTEGRATIONS_",
    ] {
        assert!(!text.contains(canary), "the plan holds {canary}");
    }
    let plan = &body["plan"];
    let token = token_of(plan, "teller");
    for name in ["teller", "notify"] {
        assert_eq!(
            plan["mcpServers"][name]["url"],
            format!("{}/mcp/{name}", served.base)
        );
    }

    // One process serves all three beside the API.
    let teller_agent = agent(
        plan["mcpServers"]["teller"]["url"].as_str().unwrap(),
        &token,
        false,
    )
    .await;
    assert_eq!(enrollments(&teller_agent).await, 1);
    let notify_agent = agent(
        plan["mcpServers"]["notify"]["url"].as_str().unwrap(),
        &token,
        true,
    )
    .await;
    let tools = notify_agent.list_all_tools().await.unwrap();
    assert_eq!(
        tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(),
        ["notify_user"]
    );
    assert_eq!(
        served.post("/mcp/gmail", Some(&token), None).await.0,
        StatusCode::FORBIDDEN
    );

    // Another user's DELETE revokes nothing; the owner's does.
    let revoke = |token: String| {
        let http = http.clone();
        let url = format!("{}/v1/sessions/sess_r", served.base);
        async move {
            let response = http.delete(url).bearer_auth(token).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(revoke(theirs).await.1["revoked"], 0);
    assert_eq!(enrollments(&teller_agent).await, 1);
    let (status, body) = revoke(mine).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revoked"], 1);
    assert_unauthorized(served.post("/mcp/teller", Some(&token), None).await);
    assert_unauthorized(served.post("/mcp/notify", Some(&token), None).await);
    assert!(!served.log().contains(&token), "a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_serve_mints_over_rest_and_serves_every_sidecar_on_sqlite() {
    integrations_serve_mints_and_serves(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_serve_mints_over_rest_and_serves_every_sidecar_on_postgres() {
    match Store::postgres().await {
        Some(store) => integrations_serve_mints_and_serves(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}
