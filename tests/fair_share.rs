//! Fair share between tenants (issue 24, points 3, 4 and 5), from outside:
//! `mcp-teller serve` and `mcp-notify serve` on loopback, tokens minted by
//! the real `resolver plan --transport http`, requests sent raw where a
//! client would misbehave. One token's stalled bodies stay inside the
//! memory bound while another user is served; one user's slow webhook
//! holds up no other user's calls and loses no notification; a token
//! revoked while its call waits for its body is refused before any provider
//! is reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/mcp.rs"]
#[allow(dead_code)]
mod mcp;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/service.rs"]
#[allow(dead_code)]
mod service;

use service::{OTHER, Served, Store, USER};

/// The largest body an MCP endpoint reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// docs/http-mode.md's bound on a service process's peak RSS with the default
/// limits (`MCP_BODY_BUDGET_BYTES`): 32 MiB + the budget (64 MiB) +
/// `MCP_MAX_IN_FLIGHT` (128) × 128 KiB + the connections open × 64 KiB, in
/// MiB.
fn stated_bound_mib(connections: u64) -> u64 {
    const BASE: u64 = 32;
    const BUDGET: u64 = 64;
    const IN_FLIGHT_KIB: u64 = 128 * 128;
    const CONNECTION_KIB: u64 = 64;
    BASE + BUDGET + (IN_FLIGHT_KIB + connections * CONNECTION_KIB) / 1024
}

/// The capability token of `server` in an HTTP plan for `user`'s `profile`
/// in `session`, minted by the real resolver.
fn token(
    store: &Store,
    user: &str,
    profile: &str,
    session: &str,
    base: &str,
    server: &str,
) -> String {
    let out = store.resolver(&[
        "plan",
        "--user",
        user,
        "--profile",
        profile,
        "--session",
        session,
        "--transport",
        "http",
        "--url",
        base,
        "--format",
        "claude-code",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["mcpServers"][server]["headers"]["Authorization"]
        .as_str()
        .unwrap_or_else(|| panic!("no {server} in the plan: {plan}"))
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

/// `integrations add <kind> --user <user> --agents <profiles>` with `config`
/// on stdin: the new integration's id.
fn add(store: &Store, kind: &str, user: &str, profiles: &str, config: &Value) -> String {
    use std::io::Write;
    let args = [
        "add", kind, "--user", user, "--agents", profiles, "--config", "-",
    ];
    let mut child = cli::command(&store.url, &store.keys, &args)
        .env("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(config.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `tools/call` of `tool` with `arguments`.
fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// One JSON-RPC message POSTed to `<base>/mcp/<server>` with `token`: the
/// status and the body.
async fn rpc(base: &str, server: &str, token: &str, message: &Value) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp/{server}"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .bearer_auth(token)
        .json(message)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// A tool call's result answered 200 without `isError`.
fn succeeded((status, body): &(StatusCode, String)) -> bool {
    *status == StatusCode::OK
        && serde_json::from_str::<Value>(body).is_ok_and(|answer| {
            answer["result"]["isError"] != json!(true) && answer["result"].is_object()
        })
}

/// The head of a raw HTTP/1 POST of `length` bytes to `/mcp/<server>`.
fn head(base: &str, server: &str, token: &str, length: usize) -> String {
    let host = base.strip_prefix("http://").unwrap();
    format!(
        "POST /mcp/{server} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// The peak resident memory of process `pid` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Waits (at most `within`) until `done` holds.
async fn until(within: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_of_one_token_stay_inside_the_stated_bound_and_another_user_is_served() {
    const STALLED: usize = 300;
    let store = Store::sqlite().await;
    let theirs = json!({"enrollment_id": "enr_theirs", "access_token": "test_token_theirs", "institution_name": "Chase"});
    add(&store, "teller", OTHER, "prof_theirs", &theirs);
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Served::teller(&store, &teller).await;
    let flood = token(
        &store,
        USER,
        "prof_vzfin",
        "sess_flood",
        &served.base,
        "teller",
    );
    let calm = token(
        &store,
        OTHER,
        "prof_theirs",
        "sess_calm",
        &served.base,
        "teller",
    );

    // Each connection sends its head and all of a 4 MiB body but its last
    // byte, then holds on.
    let addr = served.base.strip_prefix("http://").unwrap().to_string();
    let body = Arc::new(vec![b' '; MAX_BODY]);
    let started = Arc::new(AtomicUsize::new(0));
    let mut stalled = tokio::task::JoinSet::new();
    for _ in 0..STALLED {
        let (addr, body, started) = (addr.clone(), Arc::clone(&body), Arc::clone(&started));
        let head = head(&served.base, "teller", &flood, MAX_BODY);
        stalled.spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            started.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&body[..MAX_BODY - 1]).await;
            std::future::pending::<()>().await;
        });
    }
    until(
        Duration::from_secs(30),
        "every stalled request sent its head",
        || started.load(Ordering::SeqCst) == STALLED,
    )
    .await;

    // Meanwhile, and past the moment the flood's waits run out, the other
    // user's calls complete within 2 s each.
    let enrollments = tool_call(1, "teller_list_enrollments", json!({}));
    for _ in 0..12 {
        let asked = Instant::now();
        let answer = rpc(&served.base, "teller", &calm, &enrollments).await;
        let took = asked.elapsed();
        assert!(succeeded(&answer), "{answer:?}");
        assert!(answer.1.contains("enr_theirs"), "{answer:?}");
        assert!(
            took < Duration::from_secs(2),
            "another user's call took {took:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let peak = peak_rss_kib(served.pid()) / 1024;
    let bound = stated_bound_mib(STALLED as u64);
    assert!(
        peak < bound,
        "peak RSS {peak} MiB, over the stated {bound} MiB"
    );
    assert!(bound < 256, "the stated bound is {bound} MiB");
    eprintln!("peak RSS {peak} MiB under {STALLED} stalled 4 MiB bodies (bound {bound} MiB)");
    let log = served.log();
    assert!(log.contains("past the user's share"), "{log}");
    assert!(!log.contains(&flood), "a token was logged");
    stalled.abort_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_of_one_user_holds_up_no_other_users_calls_and_loses_nothing() {
    const PROFILES: usize = 4;
    const CALLS_EACH: usize = 6;
    let store = Store::sqlite().await;
    let webhook = fakes::webhook::FakeWebhook::start().await.unwrap();
    webhook
        .faults()
        .inject(fakes::Fault::delay("/slow", Duration::from_secs(5)).times(1000));
    let slow_user = "u_slow";
    let profiles: Vec<String> = (0..PROFILES).map(|n| format!("prof_s{n}")).collect();
    for (n, id) in profiles.iter().enumerate() {
        let slug = format!("s{n}");
        store.cli(&["profiles", "add", id, "--user", slow_user, "--slug", &slug]);
    }
    add(
        &store,
        "webhook",
        slow_user,
        &profiles.join(","),
        &json!({"url": webhook.url("/slow")}),
    );
    add(
        &store,
        "webhook",
        OTHER,
        "prof_theirs",
        &json!({"url": webhook.url("/calm")}),
    );
    // Fewer turns than the slow user's calls: without a share per user,
    // they would hold every one.
    let served = Served::start(
        &Store::bin("mcp-notify"),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("INTEGRATIONS_DB", store.url.as_str()),
            ("INTEGRATIONS_KEYS", store.keys.as_str()),
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1"),
            ("MCP_MAX_IN_FLIGHT", "16"),
            ("MCP_MAX_IN_FLIGHT_PER_USER", "4"),
        ],
    )
    .await;
    let base = served.base.clone();
    let calm = token(&store, OTHER, "prof_theirs", "sess_calm", &base, "notify");

    let mut flood = tokio::task::JoinSet::new();
    for (n, profile) in profiles.iter().enumerate() {
        let session = format!("sess_slow_{n}");
        let token = token(&store, slow_user, profile, &session, &base, "notify");
        for m in 0..CALLS_EACH {
            let (base, token) = (base.clone(), token.clone());
            let message = tool_call(
                1,
                "notify_user",
                json!({"message": format!("slow {n}.{m}")}),
            );
            flood.spawn(async move { rpc(&base, "notify", &token, &message).await });
        }
    }
    until(
        Duration::from_secs(30),
        "the slow receiver holds four calls",
        || webhook.faults().requests().len() >= 4,
    )
    .await;

    for n in 0..3 {
        let message = tool_call(1, "notify_user", json!({"message": format!("calm {n}")}));
        let asked = Instant::now();
        let answer = rpc(&base, "notify", &calm, &message).await;
        let took = asked.elapsed();
        assert!(succeeded(&answer), "{answer:?}");
        assert!(
            took < Duration::from_secs(2),
            "another user's call took {took:?}"
        );
    }

    // Every call of the slow user was either delivered and logged, or
    // refused (429) before anything was claimed.
    let answers = tokio::time::timeout(Duration::from_secs(90), flood.join_all())
        .await
        .expect("the slow user's calls end");
    let accepted = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    for answer in &answers {
        match answer.0 {
            StatusCode::OK => assert!(succeeded(answer), "{answer:?}"),
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    answer
                        .1
                        .contains("as many requests in flight as one user may"),
                    "{answer:?}"
                )
            }
            _ => panic!("{answer:?}"),
        }
    }
    assert!(
        accepted >= 4,
        "{accepted} of the slow user's calls were served"
    );
    let logged = |user: &str| {
        format!(
            "SELECT notification_id FROM notification_log WHERE user_id = '{user}' AND status = 'sent'"
        )
    };
    assert_eq!(store.query(&logged(slow_user)).await.len(), accepted);
    assert_eq!(store.query(&logged(OTHER)).await.len(), 3);
    let delivered = |path: &str| webhook.received().iter().filter(|d| d.path == path).count();
    assert_eq!(delivered("/slow"), accepted);
    assert_eq!(delivered("/calm"), 3);
}

/// A tool call whose token is revoked while its body is on its way: 401,
/// and the fake Teller hears nothing of it.
async fn revoked_while_its_body_arrives(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Served::teller(store, &teller).await;
    let token = token(
        store,
        USER,
        "prof_vzfin",
        "sess_late",
        &served.base,
        "teller",
    );
    let body = tool_call(
        1,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_pnc"}),
    )
    .to_string();
    let (first, second) = body.as_bytes().split_at(body.len() / 2);

    let addr = served.base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = head(&served.base, "teller", &token, body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    // The token was checked when the request came; its body is being read.
    until(
        Duration::from_secs(30),
        "the request's token was checked",
        || served.log().contains("token live; reading the request"),
    )
    .await;
    let out = store.resolver(&["revoke", "--session", "sess_late"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"revoked":1}"#
    );
    stream.write_all(second).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("the capability token was revoked"),
        "{answer}"
    );
    assert!(
        teller.faults().requests().is_empty(),
        "{:?}",
        teller.faults().requests()
    );
    let audited = store
        .query("SELECT tool FROM audit_log WHERE session_id = 'sess_late' AND server = 'teller'")
        .await;
    assert!(audited.is_empty(), "{audited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_call_waits_is_refused_before_any_provider_on_sqlite() {
    revoked_while_its_body_arrives(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_call_waits_is_refused_before_any_provider_on_postgres() {
    match Store::postgres().await {
        Some(store) => revoked_while_its_body_arrives(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}
