//! Capability tokens answer to what minted them (issue 24), from outside:
//! `integrations serve` and the `resolver` on a store, the CLI revoking API
//! tokens meanwhile, the agent's requests at `/mcp/teller`. On SQLite and,
//! with `INTEGRATIONS_TEST_POSTGRES`, on PostgreSQL.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use testkit::{Server, cli, service};

use service::{OTHER, Store, USER};

/// `integrations serve` over `store` with `extra` in its environment.
async fn serve(
    store: &Store,
    teller: &fakes::teller::FakeTeller,
    extra: &[(&str, &str)],
) -> Server {
    Server::serving(Path::new(crate::BIN), store, teller, extra).await
}

/// An API token of `user` named `name`: its text and its id.
async fn api_token(store: &Store, user: &str, name: &str) -> (String, String) {
    let token = store
        .cli(&["tokens", "create", "--user", user, "--name", name])
        .trim()
        .to_string();
    let id = store
        .query(&format!(
            "SELECT id FROM api_tokens WHERE user_id = '{user}' AND name = '{name}'"
        ))
        .await;
    (token, id[0].0.clone())
}

/// `POST /v1/sessions`: status, `Retry-After` and body.
async fn mint(served: &Server, token: &str, body: Value) -> (StatusCode, Option<u64>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/sessions", served.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, response.json().await.unwrap())
}

/// The capability token of server `teller` in a minted plan.
fn teller_token(minted: &Value) -> String {
    minted["plan"]["mcpServers"]["teller"]["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

/// A `tools/list` at `/mcp/teller` with `token`: its status.
async fn at_teller(served: &Server, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/mcp/teller", served.base))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap()
        .status()
}

/// `GET` or `DELETE /v1/sessions` with `token`.
async fn sessions(served: &Server, token: &str, method: reqwest::Method) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/v1/sessions", served.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn tokens_die_with_what_minted_them(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = serve(store, &teller, &[]).await;
    let (a, a_id) = api_token(store, USER, "leaked").await;
    let (b, b_id) = api_token(store, USER, "kept").await;
    let session = |id: &str| json!({"profile_id": "prof_vzfin", "session_id": id});
    let (status, _, minted) = mint(&served, &a, session("sess_a")).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let from_a = teller_token(&minted);
    let from_b = teller_token(&mint(&served, &b, session("sess_b")).await.2);
    let plan = store.plan("prof_vzfin", "sess_c", "http", &served.base, "claude-code");
    let from_cli = teller_token(&json!({"plan": serde_json::from_str::<Value>(&plan).unwrap()}));
    for token in [&from_a, &from_b, &from_cli] {
        assert_eq!(at_teller(&served, token).await, StatusCode::OK);
    }

    // The caller's live sessions: what minted each, never a token.
    let (status, listed) = sessions(&served, &b, reqwest::Method::GET).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let rows = listed["sessions"].as_array().unwrap();
    let minters: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["session_id"].as_str().unwrap(),
                r["minted_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        minters,
        [
            ("sess_c", "cli"),
            ("sess_b", b_id.as_str()),
            ("sess_a", a_id.as_str())
        ]
    );
    assert_eq!(rows[2]["profile_id"], "prof_vzfin");
    assert_eq!(rows[2]["servers"], json!(["notify", "teller"]));
    assert!(rows[2]["expires_at"].is_string());
    assert!(rows[2].as_object().unwrap().contains_key("last_used_at"));
    for token in [&from_a, &from_b, &from_cli] {
        assert!(!listed.to_string().contains(&token[4..]));
    }
    // Another user sees none of them.
    let (theirs, _) = api_token(store, OTHER, "theirs").await;
    let (_, none) = sessions(&served, &theirs, reqwest::Method::GET).await;
    assert_eq!(none["sessions"], json!([]));

    // Revoking API token A ends what it minted on the next request.
    store.cli(&["tokens", "revoke", &a_id, "--user", USER]);
    assert_eq!(at_teller(&served, &from_a).await, StatusCode::UNAUTHORIZED);
    assert_eq!(at_teller(&served, &from_b).await, StatusCode::OK);
    assert_eq!(at_teller(&served, &from_cli).await, StatusCode::OK);

    // Every mint is an audit row, naming what minted it, never the token.
    let audited = store
        .query(
            "SELECT detail FROM audit_log WHERE server = 'sessions' AND tool = 'mint' ORDER BY id",
        )
        .await;
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert!(
        audited[0].0.contains(&a_id) && audited[2].0.contains("cli"),
        "{audited:?}"
    );
    for token in [&from_a, &from_b, &from_cli] {
        assert!(!format!("{audited:?}").contains(&token[4..]));
    }

    // DELETE /v1/sessions ends every live one, whatever minted it.
    let (status, ended) = sessions(&served, &b, reqwest::Method::DELETE).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["revoked"], 2);
    for token in [&from_b, &from_cli] {
        assert_eq!(at_teller(&served, token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        sessions(&served, &b, reqwest::Method::GET).await.1["sessions"],
        json!([])
    );

    // `resolver revoke --user U --all` does the same from the command line.
    let plan = store.plan("prof_vzfin", "sess_d", "http", &served.base, "claude-code");
    let from_cli = teller_token(&json!({"plan": serde_json::from_str::<Value>(&plan).unwrap()}));
    let out = store.resolver(&["revoke", "--user", USER, "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"revoked":1}"#
    );
    assert_eq!(
        at_teller(&served, &from_cli).await,
        StatusCode::UNAUTHORIZED
    );
    let out = store.resolver(&["revoke", "--all"]);
    assert!(!out.status.success());
    assert!(!served.log().contains(&from_a), "a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_tokens_die_with_the_api_token_that_minted_them_on_sqlite() {
    tokens_die_with_what_minted_them(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_tokens_die_with_the_api_token_that_minted_them_on_postgres() {
    match Store::postgres().await {
        Some(store) => tokens_die_with_what_minted_them(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

async fn racing_for_one_session(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = serve(store, &teller, &[("MCP_MAX_MINTS_PER_MINUTE", "0")]).await;
    let (mine, _) = api_token(store, USER, "mine").await;
    let (theirs, _) = api_token(store, OTHER, "theirs").await;
    for round in 0..25 {
        let session = format!("sess_race_{round}");
        let body = |profile: &str| json!({"profile_id": profile, "session_id": session});
        let (one, two) = tokio::join!(
            mint(&served, &mine, body("prof_vzfin")),
            mint(&served, &theirs, body("prof_theirs"))
        );
        let statuses = (one.0, two.0);
        let (owner, refused) = match statuses {
            (StatusCode::CREATED, StatusCode::BAD_REQUEST) => ((&mine, "prof_vzfin"), two.2),
            (StatusCode::BAD_REQUEST, StatusCode::CREATED) => ((&theirs, "prof_theirs"), one.2),
            other => panic!("round {round}: {other:?} {} {}", one.2, two.2),
        };
        // Refused as a malformed session id is, naming no one.
        assert_eq!(refused["error"]["code"], "VALIDATION_FAILED", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        for name in [USER, OTHER, "another user", "belongs"] {
            assert!(!message.contains(name), "{message}");
        }
        // Afterwards its owner mints into it again; the other still cannot.
        let loser = if owner.0 == &mine {
            (&theirs, "prof_theirs")
        } else {
            (&mine, "prof_vzfin")
        };
        assert_eq!(
            mint(&served, owner.0, body(owner.1)).await.0,
            StatusCode::CREATED
        );
        assert_eq!(
            mint(&served, loser.0, body(loser.1)).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    let owners = store
        .query("SELECT session_id FROM capability_sessions WHERE session_id LIKE 'sess_race_%'")
        .await;
    assert_eq!(owners.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_racing_for_one_session_id_leave_one_owner_and_no_409_on_sqlite() {
    racing_for_one_session(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_racing_for_one_session_id_leave_one_owner_and_no_409_on_postgres() {
    match Store::postgres().await {
        Some(store) => racing_for_one_session(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_over_rest_is_capped_in_lifetime_and_rate_limited_per_api_token() {
    let store = Store::sqlite().await;
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = serve(
        &store,
        &teller,
        &[
            ("MCP_MAX_TOKEN_TTL", "1h"),
            ("MCP_MAX_MINTS_PER_MINUTE", "3"),
        ],
    )
    .await;
    let (busy, _) = api_token(&store, USER, "busy").await;
    let (calm, _) = api_token(&store, USER, "calm").await;
    let body = |n: usize, ttl: Option<u64>| json!({"profile_id": "prof_vzfin", "session_id": format!("sess_{n}"), "ttl_seconds": ttl});

    // Past the cap: 400 naming it; at the cap: minted. The document says so.
    let (status, _, refused) = mint(&served, &busy, body(0, Some(3601))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("3600") && message.contains("MCP_MAX_TOKEN_TTL"),
        "{message}"
    );
    let doc: Value = reqwest::get(format!("{}/v1/openapi.json", served.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ttl = &doc["components"]["schemas"]["CreateSession"]["properties"]["ttl_seconds"];
    assert_eq!(ttl["anyOf"][0]["maximum"], 3600, "{ttl}");

    // Three mints a minute per API token: eight in a row meet a 429 (they
    // straddle at most one minute's end).
    let mut limited = None;
    for n in 1..=8 {
        let (status, retry, answer) = mint(&served, &busy, body(n, Some(3600))).await;
        match status {
            StatusCode::CREATED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                limited = Some((retry, answer));
                break;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    let (retry, answer) = limited.expect("no mint was refused");
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
    assert_eq!(answer["error"]["code"], "RATE_LIMITED");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 a minute")
    );
    // Another API token has its own count.
    assert_eq!(
        mint(&served, &calm, body(20, None)).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback_for_plans_relays_and_the_public_url() {
    let store = Store::sqlite().await;
    let plan = |transport: &str, url: &str| {
        store.resolver(&[
            "plan",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--session",
            "sess_h",
            "--transport",
            transport,
            "--url",
            url,
        ])
    };
    for transport in ["http", "relay"] {
        for url in [
            "http://10.1.2.3:8080",
            "http://mcp.example.com",
            "http://127.0.0.1.example.com",
            "ftp://127.0.0.1",
            "http://agent:secret@127.0.0.1:9",
        ] {
            let out = plan(transport, url);
            assert!(!out.status.success(), "{transport} {url}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("https://") && stderr.contains("loopback"),
                "{stderr}"
            );
        }
        for url in [
            "https://mcp.example.com",
            "http://127.0.0.1:9",
            "http://127.8.9.10:9",
            "http://localhost:9",
            "http://[::1]:9",
        ] {
            let out = plan(transport, url);
            assert!(
                out.status.success(),
                "{transport} {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // A URL that parsers might read two ways is handed out normalized, as
    // every WHATWG client reads it: the host is the loopback one.
    let out = plan("http", "http://127.0.0.1:8080\\@mcp.example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let urls: Vec<&str> = handed["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|server| server["url"].as_str())
        .collect();
    assert!(!urls.is_empty(), "{handed}");
    for url in urls {
        assert!(
            url.starts_with("http://127.0.0.1:8080/@mcp.example.com/mcp/"),
            "{url}"
        );
    }

    // Nothing was minted for a refused plan.
    let minted = store.query("SELECT minted_by FROM capability_tokens").await;
    assert_eq!(minted.len(), 11);

    // The relay refuses at start.
    let relay = tokio::process::Command::new(testkit::bin("mcp-teller"))
        .env_clear()
        .kill_on_drop(true)
        .env("INTEGRATIONS_URL", "http://192.0.2.1:8080")
        .env("INTEGRATIONS_TOKEN", "mct_canary")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), relay)
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INTEGRATIONS_URL") && stderr.contains("https://"),
        "{stderr}"
    );

    // So does `integrations serve` with a plain-http MCP_PUBLIC_URL.
    for public in ["http://mcp.example.com", "http://10.0.0.7:8080"] {
        let mut serve = tokio::process::Command::from(cli::command(
            &store.url,
            &store.keys,
            &["serve", "--listen", "127.0.0.1:0"],
        ));
        serve
            .env("MCP_PUBLIC_URL", public)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let serve = tokio::time::timeout(Duration::from_secs(30), serve.output())
            .await
            .expect("serve starts with a plain-http MCP_PUBLIC_URL")
            .unwrap();
        assert!(!serve.status.success(), "{public}");
        let stderr = String::from_utf8_lossy(&serve.stderr);
        assert!(
            stderr.contains("MCP_PUBLIC_URL") && stderr.contains("loopback"),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&serve.stdout).contains("listening"));
    }
}
