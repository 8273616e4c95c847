//! The sidecars as a service (issue 16): MCP over streamable HTTP with
//! per-session capability tokens. `mcp-teller serve` and `integrations serve`
//! run as processes against the fake Teller; tokens are minted by the real
//! `resolver plan --transport http` (and `POST /v1/sessions`); the agent is
//! rmcp's streamable-HTTP client; the CLI changes the store meanwhile. On
//! SQLite and, with `INTEGRATIONS_TEST_POSTGRES`, on PostgreSQL; with
//! `INTEGRATIONS_TEST_PGBOUNCER` too (a PgBouncer in transaction mode in
//! front of that server), two replicas serve one store through it.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

use testkit::{Server, mcp, serve, service};

use service::{OTHER, Store, USER, enrollments};

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
    let served = Server::teller(store, &teller).await;
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

    // Identity never comes from arguments: one naming another user is
    // ignored, as on stdio, and the call answers for the token's user.
    let ignored = mcp::call(
        &stateless,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_pnc", "user_id": OTHER}),
    )
    .await;
    let said = mcp::text(&ignored);
    assert!(said.contains("Ignored 'user_id'"), "{said}");
    assert_eq!(mcp::ok(ignored)["enrollment_id"], "enr_pnc");

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
    service::a_scope_change_is_seen_on_the_next_call(store, &stateless, &session).await;

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
    let served = Server::start(
        Path::new(crate::BIN),
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
    // The session is this user's: another user cannot mint into it, and is
    // answered as for a malformed session id, which says nothing of whose it is.
    let (status, refused) = mint(
        theirs.clone(),
        json!({"profile_id": "prof_theirs", "session_id": "sess_r"}),
    )
    .await;
    let (_, malformed) = mint(
        theirs.clone(),
        json!({"profile_id": "prof_theirs", "session_id": "sess r"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .replace("sess_r", "sess r"),
        malformed["error"]["message"]
    );
    assert_eq!(refused["error"]["code"], malformed["error"]["code"]);
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

/// The JSON-RPC `tools/call` of `teller_list_enrollments`.
fn list_enrollments(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "teller_list_enrollments", "arguments": {}}})
}

async fn calls_past_the_limit(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let program = testkit::bin("mcp-teller");
    let served = Server::serving(
        &program,
        store,
        &teller,
        &[("MCP_MAX_CALLS_PER_MINUTE", "2")],
    )
    .await;
    let plan = |session: &str| -> String {
        let plan = http_plan(store, "prof_vzfin", session, &served.base, "claude-code");
        token_of(&serde_json::from_str(&plan).unwrap(), "teller")
    };
    let (busy, other) = (plan("sess_busy"), plan("sess_calm"));

    // Seven calls fall in at most two minutes: one of them holds more than
    // two, so at least one call is refused whenever the test runs.
    let mut refused = 0;
    for id in 0..7 {
        let (status, headers, body) = rpc_at(&served, &busy, list_enrollments(id)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&wait), "Retry-After: {wait}");
            assert!(
                body.contains("more than 2 tool calls this minute"),
                "{body}"
            );
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.contains("enr_pnc"), "{body}");
        }
    }
    assert!((1..=5).contains(&refused), "{refused} of 7 calls refused");

    // Only tool calls count, and only the token's own.
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    assert_eq!(rpc_at(&served, &busy, list).await.0, StatusCode::OK);
    let (status, _, body) = rpc_at(&served, &other, list_enrollments(1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let log = served.log();
    assert!(
        log.contains("past the token's calls of the minute"),
        "{log}"
    );
    assert!(!log.contains(&busy), "a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_its_tool_calls_of_the_minute_is_refused_with_429_on_sqlite() {
    calls_past_the_limit(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_its_tool_calls_of_the_minute_is_refused_with_429_on_postgres() {
    match Store::postgres().await {
        Some(store) => calls_past_the_limit(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

/// The order in which `mcp-teller serve` (with `extra` in its environment)
/// audits two calls of session `session`: a `teller_list_accounts` that the
/// fake Teller holds for 5 seconds, and a `teller_list_enrollments` (the
/// store only) sent once the fake holds the first.
async fn audited_while_teller_holds_one(
    store: &Store,
    session: &str,
    extra: &[(&str, &str)],
) -> Vec<String> {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    teller
        .faults()
        .inject(fakes::Fault::delay("/accounts", Duration::from_secs(5)));
    let served = Server::serving(&testkit::bin("mcp-teller"), store, &teller, extra).await;
    let plan = http_plan(store, "prof_vzfin", session, &served.base, "claude-code");
    let token = token_of(&serde_json::from_str(&plan).unwrap(), "teller");
    let call = |message: Value| {
        let (url, token) = (format!("{}/mcp/teller", served.base), token.clone());
        tokio::spawn(async move {
            let (status, _, body) = rpc(url, token, message).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(!body.contains(r#""isError":true"#), "{body}");
        })
    };
    let accounts = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "teller_list_accounts", "arguments": {"enrollment_id": "enr_pnc"}}});
    let held = call(accounts);
    let deadline = Instant::now() + Duration::from_secs(30);
    while teller.faults().requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the call never reached the fake Teller"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = call(list_enrollments(2));
    for call in [held, other] {
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap()
            .unwrap();
    }
    let sql = format!(
        "SELECT tool FROM audit_log WHERE session_id = '{session}' AND server = 'teller' ORDER BY id"
    );
    store
        .query(&sql)
        .await
        .into_iter()
        .map(|(tool,)| tool)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_mcp_max_in_flight_wait_for_their_turn() {
    let store = Store::sqlite().await;
    // By default, a call waiting on its provider holds up no other.
    assert_eq!(
        audited_while_teller_holds_one(&store, "sess_free", &[]).await,
        ["teller_list_enrollments", "teller_list_accounts"]
    );
    // One request at a time: the second is served once the first is done.
    let one = [("MCP_MAX_IN_FLIGHT", "1")];
    assert_eq!(
        audited_while_teller_holds_one(&store, "sess_turns", &one).await,
        ["teller_list_accounts", "teller_list_enrollments"]
    );
    // A limit that is not a number stops the server at its start.
    let started = tokio::process::Command::new(testkit::bin("mcp-teller"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("INTEGRATIONS_DB", &store.url)
        .env("MCP_MAX_IN_FLIGHT", "many")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), started)
        .await
        .expect("the server stops at once")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MCP_MAX_IN_FLIGHT must be a number of requests served at once"),
        "{stderr}"
    );
}

/// One JSON-RPC message POSTed to `/mcp/teller` of `served` with `token`.
async fn rpc_at(
    served: &Server,
    token: &str,
    message: Value,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    rpc(
        format!("{}/mcp/teller", served.base),
        token.to_string(),
        message,
    )
    .await
}

/// One JSON-RPC message POSTed to `url` with `token`, as a client of
/// protocol 2025-11-25 sends it after its handshake: the status, the
/// headers and the body.
async fn rpc(
    url: String,
    token: String,
    message: Value,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .bearer_auth(token)
        .json(&message)
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_pgbouncer_serve_one_token_and_see_one_revocation() {
    let Some(store) = Store::pgbouncer().await else {
        eprintln!("INTEGRATIONS_TEST_PGBOUNCER is not set: the replica test not run");
        return;
    };
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let program = Path::new(crate::BIN);
    let pool = [("INTEGRATIONS_DB_POOL", "3")];
    let one = Server::serving(program, &store, &teller, &pool).await;
    let two = Server::serving(program, &store, &teller, &pool).await;

    // Minted over REST on one replica.
    let api_token = store.cli(&["tokens", "create", "--user", USER]);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/sessions", one.base))
        .bearer_auth(api_token.trim())
        .json(&json!({"profile_id": "prof_vzfin", "session_id": "sess_rep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let plan: Value = response.json().await.unwrap();
    let token = token_of(&plan["plan"], "teller");

    // The handshake of 2025-11-25 on one replica, the rest on the other: no
    // session lives in either.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "replica-test", "version": "1"}}});
    let (status, headers, body) = rpc_at(&one, &token, init).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("2025-11-25"), "{body}");
    assert!(headers.get("mcp-session-id").is_none(), "{headers:?}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = rpc_at(&two, &token, initialized).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Calls at once on both, more than their pools and PgBouncer's two
    // server connections: every one is served.
    let mut calls = tokio::task::JoinSet::new();
    for id in 0..24u64 {
        let base = if id % 2 == 0 { &one.base } else { &two.base };
        calls.spawn(rpc(
            format!("{base}/mcp/teller"),
            token.clone(),
            list_enrollments(id),
        ));
    }
    while let Some(done) = calls.join_next().await {
        let (status, _, body) = done.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("enr_pnc"), "{body}");
    }
    let audited = store
        .query("SELECT tool FROM audit_log WHERE session_id = 'sess_rep' AND server = 'teller'")
        .await;
    assert_eq!(audited.len(), 24, "{audited:?}");

    // A scope change through the CLI is seen by the other replica...
    store.cli(&["scope", &store.teller_id, "--agents", "prof_coding"]);
    let (_, _, body) = rpc_at(&two, &token, list_enrollments(30)).await;
    assert!(!body.contains("enr_pnc"), "{body}");
    store.cli(&["scope", &store.teller_id, "--agents", "prof_vzfin"]);

    // ...and a revocation through one replica on the next call at the other.
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/sessions/sess_rep", one.base))
        .bearer_auth(api_token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, headers, body) = rpc_at(&two, &token, list_enrollments(31)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    assert!(body.contains("revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_tool_call_in_flight_finish() {
    let store = Store::sqlite().await;
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    // Started by hand, to be signalled.
    let mut cmd = tokio::process::Command::new(testkit::bin("mcp-teller"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("RUST_LOG", "info")
        .env("INTEGRATIONS_DB", &store.url)
        .env("INTEGRATIONS_KEYS", &store.keys)
        .env("TELLER_API_BASE", teller.base_url());
    let (mut child, base, log) = serve::spawn(&mut cmd).await;
    let plan: Value = serde_json::from_str(&http_plan(
        &store,
        "prof_vzfin",
        "sess_term",
        &base,
        "claude-code",
    ))
    .unwrap();
    let token = token_of(&plan, "teller");
    teller.faults().inject(fakes::Fault::delay(
        "/accounts",
        std::time::Duration::from_millis(1500),
    ));
    let accounts = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "teller_list_accounts", "arguments": {"enrollment_id": "enr_pnc"}}});
    let in_flight = tokio::spawn(rpc(format!("{base}/mcp/teller"), token, accounts));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("acc_pnc"),
        "the call in flight finished: {body}"
    );
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("the server stops after its calls")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(log.lock().unwrap().contains("shutting down"));
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = Store::sqlite().await;
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Server::teller(&store, &teller).await;
    let addr = served.base.trim_start_matches("http://").to_string();
    // Half a request's head, then silence: the server must not wait for the
    // rest forever (a slowloris holds connections that way).
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /mcp/teller HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    // Meanwhile another client is served.
    let health = reqwest::get(format!("{}/healthz", served.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The slow one is cut off: its read ends (an error answer or none),
    // well within this test's own bound.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), slow.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server still holds a connection whose head never came"
    );
}
