//! Stdio without the keyring (issue 16, point 10): a sidecar started with
//! only `INTEGRATIONS_URL` and `INTEGRATIONS_TOKEN`, as the real `resolver
//! plan --transport relay` emits it, relays every message to `mcp-teller
//! serve` on the fake Teller. The agent is rmcp's child-process client (and,
//! for what a client cannot send, raw lines on the relay's stdin); the CLI
//! changes the store meanwhile. On SQLite and, with
//! `INTEGRATIONS_TEST_POSTGRES`, on PostgreSQL.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use testkit::{Server, serve, service};

use service::{Store, enrollments};

/// How long the test waits for any one answer.
const WAIT: Duration = Duration::from_secs(30);

/// Server `name` of a relay plan (`--format json`), as a command to spawn
/// exactly as the plan says: its command, args and env, nothing else (and
/// `RUST_LOG=debug`, so that the log checks see everything it could log).
fn command(plan: &Value, name: &str) -> Command {
    let server = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {plan}"));
    let mut cmd = Command::new(server["command"].as_str().unwrap());
    cmd.args(
        server["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    )
    .env_clear()
    .envs(
        server["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k, v.as_str().unwrap())),
    )
    .env("RUST_LOG", "debug")
    .kill_on_drop(true);
    cmd
}

/// rmcp's child-process client over `cmd`: the `initialize` handshake, or
/// (`discover`) the stateless protocol of 2026-07-28. Also the relay's stderr.
async fn agent(
    cmd: Command,
    discover: bool,
) -> (RunningService<RoleClient, ClientConfig>, Arc<Mutex<String>>) {
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = serve::collect(stderr.unwrap());
    let client = async move {
        if discover {
            let stateless = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            ClientConfig::default()
                .serve_with_lifecycle(transport, stateless)
                .await
        } else {
            ClientConfig::default().serve(transport).await
        }
    };
    let client = tokio::time::timeout(WAIT, client)
        .await
        .expect("the relay answers initialize")
        .unwrap();
    (client, log)
}

/// The JSON-RPC error of a call the relay answered with one.
async fn call_error(agent: &RunningService<RoleClient, ClientConfig>) -> String {
    let answer = agent
        .call_tool(CallToolRequestParams::new("teller_list_enrollments"))
        .await;
    match answer {
        Err(e) => e.to_string(),
        Ok(result) => panic!("the call was served: {result:?}"),
    }
}

/// A relay driven with raw lines on its stdin.
struct Raw {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: Arc<Mutex<String>>,
}

impl Raw {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = serve::collect(child.stderr.take().unwrap());
        Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            log,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line the relay writes, which must be one JSON message.
    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("the relay answers")
            .unwrap()
            .expect("the relay is still running");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not one JSON line: {line}"))
    }

    async fn initialize(&mut self) -> Value {
        self.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#).await;
        let answer = self.recv().await;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        answer
    }
}

async fn relayed_teller(store: &Store) {
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let served = Server::teller(store, &teller).await;

    // The plan: stdio servers whose environment is the URL and the token.
    let text = store.plan(
        "prof_vzfin",
        "sess_relay",
        "relay",
        &served.base,
        "claude-code",
    );
    let plan: Value = serde_json::from_str(&text).unwrap();
    let teller_entry = &plan["mcpServers"]["teller"];
    assert_eq!(teller_entry["type"], "stdio");
    assert_eq!(
        teller_entry["command"],
        testkit::bin("mcp-teller").display().to_string()
    );
    let env = teller_entry["env"].as_object().unwrap();
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        ["INTEGRATIONS_TOKEN", "INTEGRATIONS_URL"]
    );
    assert_eq!(env["INTEGRATIONS_URL"], served.base);
    let token = env["INTEGRATIONS_TOKEN"].as_str().unwrap().to_string();
    assert!(token.starts_with("mct_"), "{token}");
    assert_eq!(plan["mcpServers"]["notify"]["env"], teller_entry["env"]);
    let json_text = store.plan("prof_vzfin", "sess_relay", "relay", &served.base, "json");
    for text in [&text, &json_text] {
        for canary in [
            "keys.json",
            "CANARY",
            "INTEGRATIONS_DB",
            "INTEGRATIONS_KEYS",
            "INTEGRATIONS_USER_ID",
            store.url.as_str(),
            store.keys.as_str(),
            fakes::teller::PNC_TOKEN,
        ] {
            assert!(!text.contains(canary), "the plan holds {canary}: {text}");
        }
    }
    let json_plan: Value = serde_json::from_str(&json_text).unwrap();
    assert!(json_plan["expires_at"].is_string(), "{json_plan}");

    // Spawned as the plan says, it serves the direct sidecar's tools.
    let (relayed, relay_log) = agent(command(&json_plan, "teller"), false).await;
    let direct = std::process::Command::new(testkit::bin("mcp-teller"))
        .arg("--list-tools")
        .env_clear()
        .output()
        .unwrap();
    let direct: Value = serde_json::from_slice(&direct.stdout).unwrap();
    let tools = serde_json::to_value(relayed.list_all_tools().await.unwrap()).unwrap();
    assert_eq!(tools, direct);
    assert_eq!(enrollments(&relayed).await, 1);

    // The stateless protocol of 2026-07-28 is relayed too.
    let (stateless, stateless_log) = agent(command(&json_plan, "teller"), true).await;
    assert_eq!(
        stateless.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    assert_eq!(enrollments(&stateless).await, 1);

    // The audit rows carry the token's session.
    let rows = store
        .query("SELECT tool FROM audit_log WHERE session_id = 'sess_relay'")
        .await;
    assert!(
        rows.iter().any(|(t,)| t == "teller_list_enrollments"),
        "{rows:?}"
    );

    // A scope change is seen on the next call.
    service::a_scope_change_is_seen_on_the_next_call(store, &relayed, &relayed).await;

    // Raw lines: a malformed one is answered and the next is served; a
    // ping is answered while a slow tool call is still in flight.
    let mut raw = Raw::spawn(command(&json_plan, "teller"));
    let initialized = raw.initialize().await;
    assert_eq!(
        initialized["result"]["protocolVersion"], "2025-11-25",
        "{initialized}"
    );
    raw.send("{this is not json").await;
    let parse_error = raw.recv().await;
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"teller_list_enrollments","arguments":{}}}"#).await;
    let served_call = raw.recv().await;
    assert_eq!(served_call["id"], 1, "{served_call}");
    assert_eq!(
        served_call["result"]["structuredContent"]["enrollments"][0]["enrollment_id"], "enr_pnc",
        "{served_call}"
    );
    teller
        .faults()
        .inject(fakes::Fault::delay("/accounts", Duration::from_secs(3)));
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"teller_list_accounts","arguments":{"enrollment_id":"enr_pnc"}}}"#).await;
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#)
        .await;
    let first = raw.recv().await;
    assert_eq!(
        first["id"], 3,
        "the ping waited behind the slow call: {first}"
    );
    let second = raw.recv().await;
    assert_eq!(second["id"], 2, "{second}");
    assert!(
        second["result"]["structuredContent"]["accounts"].is_array(),
        "{second}"
    );

    // An expired token: the service's own sentence, for that request.
    store
        .execute("UPDATE capability_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 'sess_relay'")
        .await;
    let expired = call_error(&relayed).await;
    assert!(expired.contains("has expired"), "{expired}");
    store
        .execute("UPDATE capability_tokens SET expires_at = '2999-01-01T00:00:00.000000Z' WHERE session_id = 'sess_relay'")
        .await;
    assert_eq!(enrollments(&relayed).await, 1);

    // Revoking the session: the next call reads why, and the relay goes on.
    let out = store.resolver(&["revoke", "--session", "sess_relay"]);
    assert!(out.status.success());
    for _ in 0..2 {
        let revoked = call_error(&relayed).await;
        assert!(
            revoked.contains("the capability token was revoked"),
            "{revoked}"
        );
    }
    raw.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#)
        .await;
    let refused = raw.recv().await;
    assert_eq!(refused["id"], 4, "{refused}");
    assert_eq!(refused["error"]["data"]["http_status"], 401, "{refused}");

    // No log holds the token, the store URL or the keyring.
    let _ = relayed.cancel().await;
    let _ = stateless.cancel().await;
    drop(raw.stdin);
    let _ = tokio::time::timeout(WAIT, raw.child.wait()).await;
    for log in [&relay_log, &stateless_log, &raw.log] {
        let log = log.lock().unwrap().clone();
        assert!(log.contains("relaying MCP messages"), "{log}");
        for secret in [token.as_str(), store.url.as_str(), store.keys.as_str()] {
            assert!(!log.contains(secret), "the relay logged a secret: {log}");
        }
    }
    assert!(
        !served.log().contains(&token),
        "the service logged the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_only_its_token_and_serves_the_sidecar_on_sqlite() {
    relayed_teller(&Store::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_only_its_token_and_serves_the_sidecar_on_postgres() {
    match Store::postgres().await {
        Some(store) => relayed_teller(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL variant not run"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_only_its_token_and_serves_the_sidecar_through_pgbouncer() {
    match Store::pgbouncer().await {
        Some(store) => relayed_teller(&store).await,
        None => eprintln!("INTEGRATIONS_TEST_PGBOUNCER is not set: the PgBouncer variant not run"),
    }
}

/// A relay whose store URL and keyring are set but unreadable, so that
/// opening either would show.
fn relay_to(url: &str, token: Option<&str>) -> Command {
    let mut cmd = Command::new(testkit::bin("mcp-teller"));
    cmd.env_clear()
        .env("INTEGRATIONS_URL", url)
        .env("INTEGRATIONS_DB", "sqlite:///nonexistent/dir/store.db")
        .env("INTEGRATIONS_KEYS_FILE", "/nonexistent/keys.json")
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    if let Some(token) = token {
        cmd.env("INTEGRATIONS_TOKEN", token);
    }
    cmd
}

#[tokio::test]
async fn a_relay_to_a_closed_port_answers_a_clear_error_and_keeps_serving() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let token = "mct_closedportcanary";
    let mut raw = Raw::spawn(relay_to(&url, Some(token)));
    let answer = raw.initialize().await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(answer["id"], 0, "{answer}");
    assert!(
        message.contains(&format!("{url}/mcp/teller")) && message.contains("refused"),
        "{answer}"
    );
    for id in 1..3 {
        raw.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#))
            .await;
        let answer = raw.recv().await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], -32000, "{answer}");
        assert!(!answer.to_string().contains(token), "{answer}");
    }
    drop(raw.stdin);
    let status = tokio::time::timeout(WAIT, raw.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let log = raw.log.lock().unwrap().clone();
    assert!(!log.contains(token), "{log}");
    assert!(
        !log.contains("nonexistent"),
        "the relay opened a store: {log}"
    );
}

#[tokio::test]
async fn a_relay_without_its_token_says_so_and_exits() {
    for token in [None, Some(""), Some("   ")] {
        let out = relay_to("http://127.0.0.1:1", token)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("INTEGRATIONS_TOKEN"), "{stderr}");
    }
}
