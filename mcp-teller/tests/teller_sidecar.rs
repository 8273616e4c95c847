//! `mcp-teller` spawned as the agent runtime spawns it, driven through rmcp's
//! client, against the fake Teller, while an operator changes the store with
//! the `integrations` CLI.

use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use fakes::Fault;
use fakes::teller::{BUSY_ACCOUNT, CHASE_TOKEN, FakeTeller, PNC_TOKEN};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use testkit::Account;
use testkit::mcp::{self, call, err, ok};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-teller");
const USER: &str = Account::USER;

/// A store seeded with the product's example, a keyring, and the fake Teller.
struct World {
    dir: tempfile::TempDir,
    keys: String,
    teller: FakeTeller,
    pnc: String,
    chase: String,
}

impl World {
    async fn new() -> Self {
        Self::with_teller(FakeTeller::start().await.unwrap()).await
    }

    async fn with_teller(teller: FakeTeller) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut world = Self {
            dir,
            keys: String::new(),
            teller,
            pnc: String::new(),
            chase: String::new(),
        };
        world.keys = world.cli(&["keys", "generate"], None).trim().to_string();
        Account::seed(&world.db_url(), &world.keys);
        world.cli(
            &[
                "profiles",
                "add",
                "prof_other",
                "--user",
                "u_other",
                "--slug",
                "other",
            ],
            None,
        );
        world.pnc = world.add_teller(USER, "enr_pnc", PNC_TOKEN, "PNC", Some("prof_vzfin"));
        world.chase = world.add_teller(USER, "enr_chase", CHASE_TOKEN, "Chase", Some("prof_vzfin"));
        world.add_teller(
            "u_other",
            "enr_other",
            "test_token_other",
            "Other Bank",
            None,
        );
        world
    }

    fn db_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("store.db").display()
        )
    }

    fn cli_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = std::process::Command::new(testkit::cli::integrations());
        cmd.args(args)
            .env_clear()
            .env("INTEGRATIONS_DB", self.db_url())
            .env("INTEGRATIONS_KEYS", &self.keys)
            .env("TELLER_API_BASE", self.teller.base_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli_output(args, stdin);
        assert!(
            out.status.success(),
            "integrations {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn add_teller(
        &self,
        user: &str,
        enrollment: &str,
        token: &str,
        bank: &str,
        only: Option<&str>,
    ) -> String {
        let config =
            json!({"enrollment_id": enrollment, "access_token": token, "institution_name": bank})
                .to_string();
        let mut args = vec!["add", "teller", "--user", user, "--config", "-"];
        if let Some(profile) = only {
            args.extend(["--agents", profile]);
        }
        self.cli(&args, Some(&config)).trim().to_string()
    }

    /// Spawns the sidecar for `profile` the way the agent runtime does.
    async fn sidecar(&self, profile: &str, env: &[(&str, &str)]) -> RunningService<RoleClient, ()> {
        let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
            cmd.env_clear()
                .env("INTEGRATIONS_DB", self.db_url())
                .env("INTEGRATIONS_KEYS", &self.keys)
                .env("INTEGRATIONS_USER_ID", USER)
                .env("INTEGRATIONS_PROFILE_ID", profile)
                .env("INTEGRATIONS_SESSION_ID", "sess_test")
                .env("TELLER_API_BASE", self.teller.base_url());
            for (k, v) in env {
                cmd.env(k, v);
            }
        });
        ().serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    async fn audit(
        &self,
    ) -> Vec<(
        String,
        Option<String>,
        String,
        Option<String>,
        i64,
        Option<String>,
    )> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url())
            .await
            .unwrap();
        sqlx::query_as(
            "SELECT tool, integration_id, decision, detail, duration_us, session_id FROM audit_log ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }
}

fn enrollment_ids(v: &Value) -> Vec<String> {
    v["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["enrollment_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_store_change_shows_on_the_very_next_call() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let pnc = json!({"enrollment_id": "enr_pnc"});
    assert_eq!(
        enrollment_ids(&ok(call(&agent, "teller_list_enrollments", json!({})).await)),
        ["enr_pnc", "enr_chase"]
    );
    assert_eq!(
        ok(call(&agent, "teller_list_accounts", pnc.clone()).await)["accounts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    w.cli(&["scope", &w.pnc, "--agents", "prof_coding"], None);
    assert!(
        err(call(&agent, "teller_list_accounts", pnc.clone()).await)
            .contains("No Teller enrollment 'enr_pnc'")
    );
    assert_eq!(
        enrollment_ids(&ok(call(&agent, "teller_list_enrollments", json!({})).await)),
        ["enr_chase"]
    );

    w.cli(
        &["scope", &w.pnc, "--agents", "prof_vzfin,prof_coding"],
        None,
    );
    ok(call(&agent, "teller_list_accounts", pnc.clone()).await);

    w.cli(&["disable", &w.pnc], None);
    assert!(
        err(call(&agent, "teller_list_accounts", pnc.clone()).await)
            .contains("teller_list_enrollments")
    );
    w.cli(&["enable", &w.pnc], None);
    ok(call(&agent, "teller_list_accounts", pnc.clone()).await);

    w.cli(&["profiles", "rm", "prof_vzfin", "--user", USER], None);
    assert_eq!(
        enrollment_ids(&ok(call(&agent, "teller_list_enrollments", json!({})).await)),
        Vec::<String>::new()
    );
    w.cli(
        &[
            "profiles",
            "add",
            "prof_vzfin",
            "--user",
            USER,
            "--slug",
            "vzfin",
        ],
        None,
    );

    w.cli(&["rm", &w.pnc, "--local-only"], None);
    assert!(
        err(call(&agent, "teller_list_accounts", pnc.clone()).await)
            .contains("No Teller enrollment")
    );
    w.add_teller(USER, "enr_pnc", PNC_TOKEN, "PNC", Some("prof_vzfin"));
    ok(call(&agent, "teller_list_accounts", pnc).await);
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn an_enrollment_out_of_scope_answers_exactly_like_a_missing_one() {
    let w = World::new().await;
    let coding = w.sidecar("prof_coding", &[]).await;
    let mut answers = Vec::new();
    for enrollment in ["enr_pnc", "enr_other", "enr_missing"] {
        for tool in [
            "teller_list_accounts",
            "teller_get_balance",
            "teller_list_transactions",
            "teller_get_account_details",
        ] {
            let args = json!({"enrollment_id": enrollment, "account_id": "acc_pnc_checking"});
            let args = if tool == "teller_list_accounts" {
                json!({"enrollment_id": enrollment})
            } else {
                args
            };
            let message = err(call(&coding, tool, args).await);
            assert!(message.contains("teller_list_enrollments"), "{message}");
            assert!(
                !message.contains("PNC") && !message.contains("Other Bank"),
                "{message}"
            );
            answers.push(message.replace(enrollment, "<id>"));
        }
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
    assert!(
        w.teller.faults().requests().is_empty(),
        "Teller was called for an ungranted enrollment"
    );
}

#[tokio::test]
async fn identity_comes_from_the_spawn_never_from_arguments() {
    let w = World::new().await;
    let coding = w.sidecar("prof_coding", &[]).await;
    let sneaky = json!({"enrollment_id": "enr_pnc", "profile_id": "prof_vzfin", "user_id": USER});
    let message = err(call(&coding, "teller_list_accounts", sneaky).await);
    assert!(
        message.contains("Ignored 'profile_id', 'user_id': who is calling comes from the session"),
        "{message}"
    );
    let listed = ok(call(
        &coding,
        "teller_list_enrollments",
        json!({"profile_id": "prof_vzfin", "user_id": USER}),
    )
    .await);
    assert_eq!(enrollment_ids(&listed), Vec::<String>::new());
    assert!(w.teller.faults().requests().is_empty());
}

/// Calls the product's servers took are not refused for their shape: an
/// integral float, an unknown argument (named in the text), an
/// identity-shaped one (ignored, never used).
#[tokio::test]
async fn calls_written_for_the_products_servers_are_taken() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let result = call(
        &agent,
        "teller_list_transactions",
        json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT, "count": 5.0,
               "format": "json", "user_id": "u_someone_else"}),
    )
    .await;
    let said = mcp::text(&result);
    let data = ok(result);
    assert_eq!(data["transactions"].as_array().unwrap().len(), 5);
    assert!(
        said.contains("Ignored argument(s) this tool does not take: 'format'."),
        "{said}"
    );
    assert!(said.contains("Ignored 'user_id'"), "{said}");
    let refused = err(call(
        &agent,
        "teller_list_transactions",
        json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT, "count": 5.5}),
    )
    .await);
    assert!(refused.contains("5.5"), "{refused}");
}

#[tokio::test]
async fn bank_data_comes_back_exact_paged_and_filtered() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let accounts = ok(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_chase"}),
    )
    .await);
    let kinds: Vec<&str> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["depository", "credit"]);
    assert_eq!(accounts["accounts"][0]["institution"], "Chase");

    let balance = ok(call(
        &agent,
        "teller_get_balance",
        json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT}),
    )
    .await);
    assert_eq!(
        balance,
        json!({"account_id": BUSY_ACCOUNT, "available": "4301.07", "ledger": "4698.93", "currency": "USD"})
    );
    let card = ok(call(
        &agent,
        "teller_get_balance",
        json!({"enrollment_id": "enr_pnc", "account_id": "acc_pnc_card"}),
    )
    .await);
    // None is an absent member: the output schemas have no null type.
    assert_eq!(card.get("available"), None);

    let args = |extra: Value| {
        let mut base = json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let first = ok(call(&agent, "teller_list_transactions", args(json!({}))).await);
    let page: Vec<Value> = first["transactions"].as_array().unwrap().clone();
    assert_eq!(page.len(), 50, "default count");
    assert_eq!(page[0]["status"], "pending");
    let next = first["next_from_id"].as_str().unwrap().to_string();
    assert_eq!(next, page[49]["id"].as_str().unwrap());
    let second = ok(call(
        &agent,
        "teller_list_transactions",
        args(json!({"from_id": next, "count": 100})),
    )
    .await);
    let second_page = second["transactions"].as_array().unwrap();
    assert_eq!(second_page.len(), 100);
    assert!(second_page[0]["date"].as_str() <= page[49]["date"].as_str());
    assert_ne!(second_page[0]["id"], page[49]["id"]);

    let all = ok(call(
        &agent,
        "teller_list_transactions",
        args(json!({"count": 5000})),
    )
    .await);
    assert_eq!(
        all["transactions"].as_array().unwrap().len(),
        250,
        "count is clamped to 250"
    );
    let tiny = ok(call(
        &agent,
        "teller_list_transactions",
        args(json!({"count": 0})),
    )
    .await);
    assert_eq!(
        tiny["transactions"].as_array().unwrap().len(),
        1,
        "count is clamped to 1"
    );

    let ranged = ok(call(
        &agent,
        "teller_list_transactions",
        args(json!({"start_date": "2026-11-01", "end_date": "2026-11-10", "count": 250})),
    )
    .await);
    let dates: Vec<&str> = ranged["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates.len(), 20);
    assert!(
        dates
            .iter()
            .all(|d| ("2026-11-01"..="2026-11-10").contains(d))
    );
    assert_eq!(ranged.get("next_from_id"), None);
    let categories: std::collections::BTreeSet<&str> = ranged["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["category"].as_str().unwrap())
        .collect();
    assert!(categories.len() >= 5, "{categories:?}");

    let bad = err(call(
        &agent,
        "teller_list_transactions",
        args(json!({"start_date": "11/01/2026"})),
    )
    .await);
    assert!(bad.contains("start_date must be a date like"), "{bad}");
    let missing = err(call(
        &agent,
        "teller_get_balance",
        json!({"enrollment_id": "enr_pnc", "account_id": "acc_chase_card"}),
    )
    .await);
    assert!(missing.contains("teller_list_accounts"), "{missing}");

    let details = ok(call(
        &agent,
        "teller_get_account_details",
        json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT}),
    )
    .await);
    assert_eq!(details["account_number"], "142999287346");
    assert_eq!(details["routing_numbers"]["ach"], "066474405");
}

#[tokio::test]
async fn provider_faults_are_reported_and_the_sidecar_keeps_serving() {
    let w = World::new().await;
    let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
        cmd.env_clear()
            .env("INTEGRATIONS_DB", w.db_url())
            .env("INTEGRATIONS_KEYS", &w.keys)
            .env("INTEGRATIONS_USER_ID", USER)
            .env("INTEGRATIONS_PROFILE_ID", "prof_vzfin")
            .env("TELLER_API_BASE", w.teller.base_url())
            .env("TELLER_TIMEOUT_MS", "1500")
            .env("RUST_LOG", "trace");
    });
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as it comes: trace logs would otherwise fill the pipe and stall the sidecar.
    let logs = tokio::spawn(async move {
        let mut logs = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr.unwrap(), &mut logs)
            .await
            .unwrap();
        logs
    });
    let agent = ().serve(transport).await.unwrap();
    let chase = json!({"enrollment_id": "enr_chase"});
    let teller_error = |code: &str| json!({"error": {"code": code, "message": "fault"}});
    let faults = w.teller.faults();

    faults.inject(Fault::status("/accounts", 502, teller_error("bank_error")));
    let m = err(call(&agent, "teller_list_accounts", chase.clone()).await);
    assert!(
        m.contains("Chase is not answering") && m.contains("502"),
        "{m}"
    );
    ok(call(&agent, "teller_list_accounts", chase.clone()).await);

    faults.inject(Fault::delay("/accounts", Duration::from_millis(3000)));
    let m = err(call(&agent, "teller_list_accounts", chase.clone()).await);
    assert!(m.contains("did not answer in time"), "{m}");
    ok(call(&agent, "teller_list_accounts", chase.clone()).await);

    faults.inject(Fault::not_json("/accounts"));
    let m = err(call(&agent, "teller_list_accounts", chase.clone()).await);
    assert!(m.contains("could not be read"), "{m}");

    faults.clear_requests();
    faults.inject(Fault::status("/accounts", 429, teller_error("rate_limited")).retry_after(1));
    ok(call(&agent, "teller_list_accounts", chase.clone()).await);
    assert_eq!(
        faults.requests().len(),
        2,
        "one 429, then one retry after Retry-After"
    );

    faults.inject(
        Fault::status("/accounts", 429, teller_error("rate_limited"))
            .retry_after(1)
            .times(10),
    );
    let m = err(call(&agent, "teller_list_accounts", chase.clone()).await);
    assert!(m.contains("rate limiting"), "{m}");
    faults.clear_faults();
    ok(call(&agent, "teller_list_accounts", chase.clone()).await);

    // A wait that fits, then an absurd Retry-After: given up at once, within the deadline.
    faults.inject(Fault::status("/accounts", 429, teller_error("rate_limited")).retry_after(1));
    faults.inject(
        Fault::status("/accounts", 429, teller_error("rate_limited")).retry_after(u64::MAX),
    );
    let absurd = tokio::time::timeout(
        Duration::from_secs(10),
        call(&agent, "teller_list_accounts", chase.clone()),
    )
    .await
    .expect("the call outlived its deadline");
    let m = err(absurd);
    assert!(m.contains("rate limiting"), "{m}");
    ok(call(&agent, "teller_list_accounts", chase.clone()).await);

    for (status, code) in [(401, "missing_credentials"), (403, "invalid_access_token")] {
        faults.inject(Fault::status("/accounts", status, teller_error(code)));
        let m = err(call(&agent, "teller_list_accounts", chase.clone()).await);
        assert!(m.contains("the user must reconnect Chase"), "{m}");
    }
    w.teller
        .disconnect(PNC_TOKEN, "enrollment.disconnected.credentials_invalid");
    let m = err(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_pnc"}),
    )
    .await);
    assert!(
        m.contains("the user must reconnect PNC in Settings → Integrations"),
        "{m}"
    );
    let listed = ok(call(&agent, "teller_list_enrollments", json!({})).await);
    let statuses: Vec<(&str, &str)> = listed["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["enrollment_id"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [("enr_pnc", "needs_reauth"), ("enr_chase", "needs_reauth")]
    );

    agent.cancel().await.unwrap();
    let logs = logs.await.unwrap();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "no verbose logs captured"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{PNC_TOKEN}:"));
    for secret in [PNC_TOKEN, CHASE_TOKEN, basic.as_str()] {
        assert!(!logs.contains(secret), "a token leaked into the logs");
    }
}

#[tokio::test]
async fn every_call_writes_one_audit_row_without_secrets() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    ok(call(&agent, "teller_list_enrollments", json!({})).await);
    ok(call(
        &agent,
        "teller_get_account_details",
        json!({"enrollment_id": "enr_pnc", "account_id": BUSY_ACCOUNT}),
    )
    .await);
    err(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_other"}),
    )
    .await);
    w.teller.faults().inject(Fault::status(
        "/accounts",
        503,
        json!({"error": {"code": "x", "message": "y"}}),
    ));
    err(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_chase"}),
    )
    .await);
    err(call(&agent, "teller_list_accounts", json!({"enrollment_id": 7})).await);
    assert!(
        agent
            .call_tool(CallToolRequestParams::new("teller_transfer_money"))
            .await
            .is_err()
    );
    agent.cancel().await.unwrap();

    let rows = w.audit().await;
    let summary: Vec<(&str, Option<&str>, &str)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_deref(), r.2.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("teller_list_enrollments", None, "allow"),
            ("teller_get_account_details", Some(w.pnc.as_str()), "allow"),
            ("teller_list_accounts", None, "deny"),
            ("teller_list_accounts", Some(w.chase.as_str()), "error"),
            ("teller_list_accounts", None, "deny"),
            ("teller_transfer_money", None, "deny"),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r.4 > 0 && r.5.as_deref() == Some("sess_test"))
    );
    let all = format!("{rows:?}");
    for secret in [PNC_TOKEN, CHASE_TOKEN, "142999287346", "066474405"] {
        assert!(!all.contains(secret), "{secret} in the audit log");
    }
    assert!(rows[3].3.as_deref().unwrap().contains("503"));
}

#[tokio::test]
async fn mutual_tls_needs_the_platform_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::with_teller(FakeTeller::start_mtls(dir.path()).await.unwrap()).await;
    let pki = w.teller.pki().unwrap().clone();
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let chase = json!({"enrollment_id": "enr_chase"});

    let without = w.sidecar("prof_vzfin", &[("TELLER_CA_PATH", ca)]).await;
    let m = err(call(&without, "teller_list_accounts", chase.clone()).await);
    assert!(m.contains("could not be reached"), "{m}");

    let with = w
        .sidecar(
            "prof_vzfin",
            &[
                ("TELLER_CA_PATH", ca),
                ("TELLER_CERT_PATH", cert),
                ("TELLER_KEY_PATH", key),
                ("TELLER_ENVIRONMENT", "production"),
            ],
        )
        .await;
    let accounts = ok(call(&with, "teller_list_accounts", chase.clone()).await);
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 2);

    let unconfigured = w
        .sidecar(
            "prof_vzfin",
            &[
                ("TELLER_CA_PATH", ca),
                ("TELLER_ENVIRONMENT", "development"),
            ],
        )
        .await;
    let m = err(call(&unconfigured, "teller_list_accounts", chase).await);
    assert!(
        m.contains("set TELLER_CERT_PATH and TELLER_KEY_PATH"),
        "{m}"
    );
}

/// The sidecar spawned with plain pipes: `lines` are sent, then `count`
/// replies read.
async fn raw_session(
    w: &World,
    lines: &[String],
    count: usize,
) -> (tokio::process::Child, Vec<Value>) {
    let mut child = tokio::process::Command::new(SIDECAR)
        .env_clear()
        .env("INTEGRATIONS_DB", w.db_url())
        .env("INTEGRATIONS_KEYS", &w.keys)
        .env("INTEGRATIONS_USER_ID", USER)
        .env("INTEGRATIONS_PROFILE_ID", "prof_vzfin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut replies_in = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
    stdin.flush().await.unwrap();
    let mut replies = Vec::new();
    while replies.len() < count {
        let line = tokio::time::timeout(Duration::from_secs(10), replies_in.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        replies.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    drop(stdin);
    (child, replies)
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

#[tokio::test]
async fn a_malformed_json_rpc_line_gets_an_error_and_the_session_goes_on() {
    let w = World::new().await;
    let lines = [
        initialize(1).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        "{this is not json".into(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
    ];
    let (mut child, replies) = raw_session(&w, &lines, 3).await;
    assert!(
        replies
            .iter()
            .any(|r| r["id"] == 1 && r["result"]["serverInfo"].is_object()),
        "{replies:?}"
    );
    let parse_error = replies
        .iter()
        .find(|r| r["error"]["code"] == -32700)
        .expect("a parse error reply");
    assert_eq!(parse_error["id"], Value::Null);
    let tools = replies
        .iter()
        .find(|r| r["id"] == 2)
        .expect("the session went on");
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 5);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn a_line_over_4_mib_gets_an_error_and_the_session_goes_on() {
    let w = World::new().await;
    let mut huge = initialize(1);
    huge["params"]["clientInfo"]["name"] = "x".repeat(5 << 20).into();
    let lines = [
        huge.to_string(),
        initialize(2).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string(),
    ];
    let (mut child, replies) = raw_session(&w, &lines, 3).await;
    let too_long = replies
        .iter()
        .find(|r| r["error"]["code"] == -32600)
        .unwrap_or_else(|| panic!("no error for the long line: {replies:?}"));
    assert_eq!(too_long["id"], Value::Null);
    assert!(
        replies
            .iter()
            .any(|r| r["id"] == 2 && r["result"]["serverInfo"].is_object()),
        "{replies:?}"
    );
    let tools = replies
        .iter()
        .find(|r| r["id"] == 3)
        .expect("the session went on");
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 5);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn standalone_mode_lists_tools_and_runs_one_call() {
    let w = World::new().await;
    let out = std::process::Command::new(SIDECAR)
        .arg("--list-tools")
        .env_clear()
        .output()
        .unwrap();
    let tools: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "teller_get_account_details",
            "teller_get_balance",
            "teller_list_accounts",
            "teller_list_enrollments",
            "teller_list_transactions"
        ]
    );
    for tool in tools.as_array().unwrap() {
        assert_eq!(
            tool["annotations"]["readOnlyHint"], true,
            "{}",
            tool["name"]
        );
        assert!(tool["outputSchema"].is_object(), "{}", tool["name"]);
    }

    let db = w.db_url();
    // Async: the fake Teller runs on this test's runtime.
    let out = tokio::process::Command::new(SIDECAR)
        .args([
            "--db",
            &db,
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "call",
            "teller_list_accounts",
            r#"{"enrollment_id":"enr_pnc"}"#,
        ])
        .env_clear()
        .env("INTEGRATIONS_KEYS", &w.keys)
        .env("TELLER_API_BASE", w.teller.base_url())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["structuredContent"]["accounts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let out = std::process::Command::new(SIDECAR)
        .args(["--db", &db, "call", "teller_list_enrollments"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("set INTEGRATIONS_USER_ID and INTEGRATIONS_PROFILE_ID")
    );
}

// Multi-threaded: the CLI runs blocking while the fake Teller answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_enrollment_revokes_it_at_teller_first() {
    let w = World::new().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PNC_TOKEN}:"))
    );
    // Teller down: nothing is deleted, the operator is told to retry.
    w.teller.faults().inject(Fault::status(
        "/accounts",
        502,
        json!({"error": {"code": "bank_error", "message": "down"}}),
    ));
    let out = w.cli_output(&["rm", &w.pnc], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the integration is kept"));
    assert!(w.cli(&["show", &w.pnc, "--json"], None).contains("enr_pnc"));

    let said = w.cli(&["rm", &w.pnc], None);
    assert!(said.contains("enrollment revoked at Teller"), "{said}");
    assert!(w.teller.is_revoked(PNC_TOKEN));
    let deletes: Vec<_> = w
        .teller
        .faults()
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2);
    assert!(
        deletes
            .iter()
            .all(|r| r.path == "/accounts" && r.authorization.as_deref() == Some(basic.as_str()))
    );
    assert!(
        !w.cli_output(&["show", &w.pnc], None).status.success(),
        "the row is gone"
    );

    // A token that is already dead still lets the row go, and the output says so.
    w.teller.revoke(CHASE_TOKEN);
    let said = w.cli(&["rm", &w.chase], None);
    assert!(said.contains("already dead"), "{said}");
    assert!(!w.cli_output(&["show", &w.chase], None).status.success());
}

#[tokio::test]
async fn a_tampered_ciphertext_is_an_error_for_that_row_only() {
    use sqlx::Connection;
    let w = World::new().await;
    let mut conn = sqlx::SqliteConnection::connect(&w.db_url()).await.unwrap();
    // Chase's ciphertext copied into PNC's row: it does not open there.
    sqlx::query(
        "UPDATE user_integrations SET encrypted_config = (SELECT encrypted_config FROM user_integrations WHERE id = $1) WHERE id = $2",
    )
    .bind(&w.chase)
    .bind(&w.pnc)
    .execute(&mut conn)
    .await
    .unwrap();
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let m = err(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_pnc"}),
    )
    .await);
    assert!(m.contains("cannot be read"), "{m}");
    assert!(!m.contains(CHASE_TOKEN) && !m.contains(PNC_TOKEN), "{m}");
    ok(call(
        &agent,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_chase"}),
    )
    .await);
    assert!(
        w.teller.faults().requests().iter().all(|r| !r
            .authorization
            .as_deref()
            .unwrap_or("")
            .is_empty())
    );
    agent.cancel().await.unwrap();
    let rows = w.audit().await;
    assert_eq!(
        (rows[0].1.as_deref(), rows[0].2.as_str()),
        (Some(w.pnc.as_str()), "error")
    );
}
