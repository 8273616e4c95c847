//! `integrations import vonzio` (issue 19) on real PostgreSQL: the product's
//! tables laid out in a fresh database and filled with rows sealed by an
//! independent implementation (Python's `cryptography`, tests/it/vonzio_seal.py),
//! imported into a fresh store, then served by the real sidecars against the
//! fakes: a Teller enrollment scoped to a profile, a Gmail grant with its
//! refresh token, a Telegram bot bound to a profile, a webhook signed the
//! product's way. Also: a dry run writes nothing and prints the same report,
//! a second run imports nothing, skipped and failed rows carry their reasons
//! and the run goes on. Runs with `INTEGRATIONS_TEST_POSTGRES`, which then
//! also requires python3 with `cryptography`.

use std::process::{Output, Stdio};

use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use sqlx::Connection;

use testkit::{Backend, Database, cli, mcp, serve};

const USER: &str = "u_amouzou";
const OTHER: &str = "u_other";
const PASSPHRASE: &str = "vonzio-production-encryption-key-for-tests";
const HOOK_SECRET: &str = "vz-hook-signing-secret";

/// The product's tables, from the columns issue 19 lists (and a few more,
/// which the import must not mind).
const PRODUCT_SCHEMA: &str = r#"
CREATE TABLE "user" (id text PRIMARY KEY, email text, name text);
CREATE TABLE profiles (id text PRIMARY KEY, user_id text REFERENCES "user"(id), name text NOT NULL,
    slug text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), system_prompt text);
CREATE TABLE user_integrations (id text PRIMARY KEY, user_id text NOT NULL REFERENCES "user"(id),
    type text NOT NULL, external_id text, encrypted_config text NOT NULL, enabled boolean NOT NULL DEFAULT true,
    is_default boolean NOT NULL DEFAULT false, scope text NOT NULL DEFAULT 'all',
    profile_ids jsonb NOT NULL DEFAULT '[]', created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE user_secrets (id text PRIMARY KEY, user_id text NOT NULL REFERENCES "user"(id), name text NOT NULL,
    encrypted_value text NOT NULL, scope text NOT NULL DEFAULT 'all', profile_ids jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
"#;

/// Seals `(plaintext, info)` pairs with tests/it/vonzio_seal.py.
fn seal(values: &[(String, &str)]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/vonzio_seal.py");
    let request = json!({
        "key": PASSPHRASE,
        "values": values.iter().map(|(p, info)| json!({"plaintext": p, "info": info})).collect::<Vec<_>>(),
    });
    let out = fakes::python::run(script.as_ref(), None, request.to_string().as_bytes())
        .expect("python3 is required with INTEGRATIONS_TEST_POSTGRES (the import test seals its rows with it)");
    assert!(
        out.status.success(),
        "python3 with the `cryptography` package is required with INTEGRATIONS_TEST_POSTGRES (pip install cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One product integration row: id, type, config, scope, profile ids,
/// is_default, created_at, the HKDF info it is sealed with.
struct Row {
    id: &'static str,
    kind: &'static str,
    config: Value,
    scope: &'static str,
    profile_ids: Value,
    is_default: bool,
    created_at: &'static str,
    info: &'static str,
}

fn row(id: &'static str, kind: &'static str, config: Value, created_at: &'static str) -> Row {
    Row {
        id,
        kind,
        config,
        scope: "all",
        profile_ids: json!([]),
        is_default: false,
        created_at,
        info: "vonzio-encryption",
    }
}

async fn lay_out_product(url: &str, webhook_url: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(PRODUCT_SCHEMA).execute(&mut c).await.unwrap();
    sqlx::raw_sql(&format!(
        r#"INSERT INTO "user" VALUES ('{USER}', 'amouzou@example.com', 'A'), ('{OTHER}', NULL, 'O');
        INSERT INTO profiles (id, user_id, name, slug, created_at) VALUES
          ('prof_vzfin', '{USER}', 'VZ Finance', 'vzfin', '2025-01-01T09:00:00.123456Z'),
          ('prof_coding', '{USER}', 'Coding', 'coding', '2025-02-01T09:00:00Z'),
          ('prof_shared', NULL, 'Shared', 'shared', '2024-12-01T09:00:00Z'),
          ('prof_ops', '{USER}', 'Ops', 'Ops Team', '2025-02-02T09:00:00Z'),
          ('prof_theirs', '{OTHER}', 'Theirs', 'theirs', '2025-03-01T09:00:00Z');"#
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let rows = vec![
        Row {
            scope: "agents",
            profile_ids: json!(["prof_vzfin", "prof_theirs", "prof_shared"]),
            // Written before the product's migration 20.
            info: "reclaude-encryption",
            ..row(
                "int_teller_pnc",
                "teller",
                json!({"access_token": fakes::teller::PNC_TOKEN, "enrollment_id": "enr_pnc",
                       "teller_user_id": "usr_1", "enrolled_at": "2025-01-02T00:00:00Z"}),
                "2025-01-03T10:00:00Z",
            )
        },
        Row {
            scope: "agents",
            profile_ids: json!(["prof_theirs"]),
            ..row(
                "int_teller_chase",
                "teller",
                json!({"access_token": fakes::teller::CHASE_TOKEN, "enrollment_id": "enr_chase",
                       "institution_name": "Chase"}),
                "2025-01-04T10:00:00Z",
            )
        },
        row(
            "int_gmail_old",
            "gmail",
            json!({"email": "old@example.com", "refresh_token": "1//old"}),
            "2025-01-05T10:00:00Z",
        ),
        row(
            "int_gmail",
            "gmail",
            json!({"email": fakes::gmail::EMAIL, "refresh_token": fakes::gmail::REFRESH_TOKEN,
                   "access_token": "ya29.long-expired", "token_expiry": 1_000_000}),
            "2025-01-06T10:00:00Z",
        ),
        Row {
            scope: "agents",
            profile_ids: json!(["prof_vzfin", "prof_ops"]),
            ..row(
                "int_tg_fin",
                "telegram",
                json!({"bot_token": fakes::telegram::BOT_TOKEN, "bot_username": fakes::telegram::BOT_USERNAME,
                       "owner_tg_user_id": fakes::telegram::OWNER_CHAT, "link_code": "LINK123",
                       "bound_profile_id": "prof_vzfin"}),
                "2025-01-07T10:00:00Z",
            )
        },
        row(
            "int_tg_platform",
            "telegram",
            json!({"is_platform_owned": true, "bot_token": "", "owner_tg_user_id": fakes::telegram::OTHER_CHAT}),
            "2025-01-08T10:00:00Z",
        ),
        Row {
            is_default: true,
            ..row(
                "int_webhook",
                "webhook",
                json!({"url": webhook_url, "secret": HOOK_SECRET}),
                "2025-01-09T10:00:00Z",
            )
        },
        row(
            "int_slack",
            "slack",
            json!({"bot_token": "xoxb-1", "team_id": "", "authed_user_id": "U1", "channel_id": "C1"}),
            "2025-01-10T10:00:00Z",
        ),
        row(
            "int_email",
            "email",
            json!({"api_key": "re_test_key", "from_address": "alerts@app.vonz.io"}),
            "2025-01-11T10:00:00Z",
        ),
        row(
            "int_tampered",
            "teller",
            json!({"access_token": "t", "enrollment_id": "enr_x", "institution_name": "X"}),
            "2025-01-12T10:00:00Z",
        ),
    ];
    let sealed = seal(
        &rows
            .iter()
            .map(|r| (r.config.to_string(), r.info))
            .collect::<Vec<_>>(),
    );
    for (r, sealed) in rows.iter().zip(sealed) {
        let sealed = if r.id == "int_tampered" {
            // One hex digit of the ciphertext flipped.
            let mut parts: Vec<String> = sealed.split(':').map(str::to_string).collect();
            let flipped = if parts[2].starts_with('0') { "1" } else { "0" };
            parts[2].replace_range(0..1, flipped);
            parts.join(":")
        } else {
            sealed
        };
        sqlx::query(
            "INSERT INTO user_integrations (id, user_id, type, encrypted_config, enabled, is_default, scope, \
             profile_ids, created_at, updated_at) VALUES ($1, $2, $3, $4, true, $5, $6, $7::jsonb, $8::timestamptz, $8::timestamptz)",
        )
        .bind(r.id)
        .bind(USER)
        .bind(r.kind)
        .bind(sealed)
        .bind(r.is_default)
        .bind(r.scope)
        .bind(r.profile_ids.to_string())
        .bind(r.created_at)
        .execute(&mut c)
        .await
        .unwrap();
    }
    let secrets = seal(&[
        ("sk-test-openai-123".to_string(), "vonzio-encryption"),
        ("whatever".to_string(), "vonzio-encryption"),
    ]);
    for (id, name, sealed) in [
        ("sec_openai", "OPENAI_API_KEY", &secrets[0]),
        ("sec_bad", "not-an-env-name", &secrets[1]),
    ] {
        sqlx::query(
            "INSERT INTO user_secrets (id, user_id, name, encrypted_value, scope, profile_ids, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'agents', '[\"prof_coding\"]', '2025-01-20T10:00:00Z', '2025-01-21T10:00:00Z')",
        )
        .bind(id)
        .bind(USER)
        .bind(name)
        .bind(sealed)
        .execute(&mut c)
        .await
        .unwrap();
    }
}

struct Setup {
    product: Database,
    store: Database,
    keys: String,
    telegram: fakes::telegram::FakeTelegram,
}

impl Setup {
    /// `integrations import vonzio --from-env VONZIO_DB <extra>` into the
    /// store.
    fn import(&self, extra: &[&str]) -> Output {
        self.import_into(&self.store.url, extra)
    }

    /// The same into the store at `url`.
    fn import_into(&self, url: &str, extra: &[&str]) -> Output {
        let mut args = vec!["import", "vonzio", "--from-env", "VONZIO_DB"];
        args.extend(extra);
        cli::command(url, &self.keys, &args)
            .env("VONZIO_DB", &self.product.url)
            .env("VONZIO_ENCRYPTION_KEY", PASSPHRASE)
            .env("TELEGRAM_API_BASE", self.telegram.base_url())
            .env(
                "PLATFORM_TELEGRAM_BOT_TOKEN",
                fakes::telegram::PLATFORM_BOT_TOKEN,
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    async fn rows(&self, sql: &str) -> Vec<String> {
        let mut c = sqlx::PgConnection::connect(&self.store.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The report line of row `id`.
fn line<'a>(report: &'a str, id: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.contains(&format!(" {id} ")))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{report}"))
}

async fn agent(
    bin: &str,
    setup: &Setup,
    profile: &str,
    env: &[(&str, String)],
) -> RunningService<RoleClient, ClientConfig> {
    let program = testkit::bin(bin);
    let command = tokio::process::Command::new(program).configure(|cmd| {
        cmd.env_clear()
            .env("INTEGRATIONS_DB", &setup.store.url)
            .env("INTEGRATIONS_KEYS", &setup.keys)
            .env("INTEGRATIONS_USER_ID", USER)
            .env("INTEGRATIONS_PROFILE_ID", profile)
            .env("INTEGRATIONS_SESSION_ID", "sess_import")
            .envs(env.iter().map(|(k, v)| (k, v)));
    });
    ClientConfig::default()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vonzio_database_is_imported_and_served() {
    let (Some(product), Some(store)) = (Backend::postgres("vonzio"), Backend::postgres("imported"))
    else {
        eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: skipping the import test");
        return;
    };
    let hook = fakes::webhook::FakeWebhook::start().await.unwrap();
    lay_out_product(&product.url, &hook.url("/hooks/zapier")).await;
    let keys = cli::run(&store.url, "", &["keys", "generate"])
        .trim()
        .to_string();
    let setup = Setup {
        product,
        store,
        keys,
        telegram: fakes::telegram::FakeTelegram::start().await.unwrap(),
    };

    // A dry run: the report, and nothing written.
    let dry = setup.import(&["--dry-run"]);
    let dry_report = stdout(&dry);
    assert_eq!(
        dry.status.code(),
        Some(1),
        "a failed row fails the run: {dry_report}"
    );
    assert!(String::from_utf8_lossy(&dry.stderr).contains("dry run: nothing was written"));
    for table in ["profiles", "user_integrations", "user_secrets"] {
        let n = setup
            .rows(&format!("SELECT count(*)::text FROM {table}"))
            .await;
        assert_eq!(n, ["0"], "the dry run wrote into {table}");
    }

    // The real run prints the same report.
    let run = setup.import(&[]);
    let report = stdout(&run);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(report, dry_report);
    for secret in [
        PASSPHRASE,
        fakes::teller::PNC_TOKEN,
        fakes::gmail::REFRESH_TOKEN,
        HOOK_SECRET,
        fakes::telegram::BOT_TOKEN,
        &setup.product.url,
    ] {
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            !report.contains(secret) && !err.contains(secret),
            "a secret in the output"
        );
    }
    assert!(line(&report, "prof_vzfin").starts_with("imported"));
    assert!(
        line(&report, "prof_shared").contains("skipped")
            && line(&report, "prof_shared").contains("shared profile")
    );
    let pnc = line(&report, "int_teller_pnc");
    assert!(
        pnc.starts_with("imported") && pnc.contains("dropped profile ids prof_theirs, prof_shared"),
        "{pnc}"
    );
    assert!(line(&report, "int_teller_chase").contains("imported disabled"));
    assert!(line(&report, "prof_ops").starts_with("skipped"));
    assert!(line(&report, "int_tg_fin").contains("dropped profile ids prof_ops"));
    assert!(line(&report, "int_gmail_old").contains("newer gmail integration, int_gmail"));
    assert!(line(&report, "int_slack").contains("reconnect Slack"));
    let tampered = line(&report, "int_tampered");
    assert!(
        tampered.starts_with("failed") && tampered.contains("does not open"),
        "{tampered}"
    );
    assert!(line(&report, "int_tg_platform").contains("paired with the platform's bot"));
    assert!(line(&report, "sec_bad").starts_with("skipped"));
    assert!(line(&report, "sec_openai").starts_with("imported"));
    assert!(
        report.ends_with("11 imported, 0 already imported, 5 skipped, 1 failed\n"),
        "{report}"
    );

    // Ids, scope, profile ids, default, enabled and times kept; the
    // label derived; the binding in its column.
    let got = setup
        .rows(
            "SELECT id || ' ' || label || ' ' || scope || ' ' || profile_ids || ' ' || enabled::text || ' ' \
             || is_default::text || ' ' || coalesce(bound_profile_id, '-') || ' ' || created_at \
             FROM user_integrations ORDER BY created_at",
        )
        .await;
    assert_eq!(
        got,
        [
            "int_teller_pnc Bank agents [\"prof_vzfin\"] true false - 2025-01-03T10:00:00.000000Z",
            "int_teller_chase Chase agents [] false false - 2025-01-04T10:00:00.000000Z",
            "int_gmail vz.finance@example.com all [] true false - 2025-01-06T10:00:00.000000Z",
            "int_tg_fin @vz_test_bot agents [\"prof_vzfin\"] true false prof_vzfin 2025-01-07T10:00:00.000000Z",
            "int_tg_platform @vz_platform_bot all [] true false - 2025-01-08T10:00:00.000000Z",
            "int_webhook 127.0.0.1 all [] true true - 2025-01-09T10:00:00.000000Z",
            "int_email alerts@app.vonz.io all [] true false - 2025-01-11T10:00:00.000000Z",
        ]
    );
    assert_eq!(
        setup
            .rows("SELECT id || ' ' || is_default::text || ' ' || created_at FROM profiles ORDER BY created_at")
            .await,
        [
            "prof_vzfin true 2025-01-01T09:00:00.123456Z",
            "prof_coding false 2025-02-01T09:00:00.000000Z",
            "prof_theirs true 2025-03-01T09:00:00.000000Z",
        ]
    );
    let shown = cli::run(
        &setup.store.url,
        &setup.keys,
        &["show", "int_email", "--json"],
    );
    assert!(shown.contains("amouzou@example.com"), "{shown}");
    let shown = cli::run(
        &setup.store.url,
        &setup.keys,
        &["show", "int_gmail", "--json"],
    );
    assert!(
        shown.contains("gmail.send") && shown.contains("\"expires_at\": 1000"),
        "{shown}"
    );
    let env = cli::run(
        &setup.store.url,
        &setup.keys,
        &["secrets", "env", "--user", USER, "--profile", "prof_coding"],
    );
    assert_eq!(env, "OPENAI_API_KEY=sk-test-openai-123\n");
    let env = cli::run(
        &setup.store.url,
        &setup.keys,
        &["secrets", "env", "--user", USER, "--profile", "prof_vzfin"],
    );
    assert_eq!(env, "");

    // A second run imports nothing twice.
    let again = setup.import(&[]);
    let again_report = stdout(&again);
    assert!(line(&again_report, "int_teller_pnc").starts_with("already imported"));
    assert!(line(&again_report, "sec_openai").starts_with("already imported"));
    assert!(
        again_report.ends_with("0 imported, 11 already imported, 5 skipped, 1 failed\n"),
        "{again_report}"
    );
    assert_eq!(
        setup
            .rows("SELECT count(*)::text FROM user_integrations")
            .await,
        ["7"]
    );
    let json: Value = serde_json::from_slice(&setup.import(&["--json"]).stdout).unwrap();
    assert_eq!(json["counts"]["already_imported"], 11);
    let tampered = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "int_tampered")
        .unwrap();
    assert_eq!(tampered["outcome"], "failed");

    // Into a SQLite store, the same report.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("imported.db").display()
    );
    let into_sqlite = setup.import_into(&sqlite, &[]);
    assert_eq!(stdout(&into_sqlite), report);
    let listed = cli::run(&sqlite, &setup.keys, &["list", "--user", USER, "--json"]);
    assert!(
        listed.contains("int_tg_fin") && listed.contains("prof_vzfin"),
        "{listed}"
    );

    // The sidecars serve the imported rows. Teller: the enrollment scoped
    // to prof_vzfin, not to prof_coding.
    let teller = fakes::teller::FakeTeller::start().await.unwrap();
    let teller_env = [("TELLER_API_BASE", teller.base_url().to_string())];
    let fin = agent("mcp-teller", &setup, "prof_vzfin", &teller_env).await;
    let listed = mcp::ok(mcp::call(&fin, "teller_list_enrollments", json!({})).await);
    assert_eq!(
        listed["enrollments"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let accounts = mcp::ok(
        mcp::call(
            &fin,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_pnc"}),
        )
        .await,
    );
    assert!(!accounts["accounts"].as_array().unwrap().is_empty());
    fin.cancel().await.unwrap();
    let coding = agent("mcp-teller", &setup, "prof_coding", &teller_env).await;
    let listed = mcp::ok(mcp::call(&coding, "teller_list_enrollments", json!({})).await);
    assert_eq!(listed["enrollments"].as_array().unwrap().len(), 0);
    let refused = mcp::err(
        mcp::call(
            &coding,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_pnc"}),
        )
        .await,
    );
    assert!(!refused.contains(fakes::teller::PNC_TOKEN));
    coding.cancel().await.unwrap();

    // Gmail: the refresh token refreshes, and the scopes the product
    // requested let it send.
    let gmail = fakes::gmail::FakeGmail::start().await.unwrap();
    let gmail_env = [
        ("GMAIL_API_BASE", gmail.api_base()),
        ("GOOGLE_TOKEN_URL", gmail.token_url()),
        ("GOOGLE_REVOKE_URL", gmail.revoke_url()),
        ("GMAIL_CLIENT_ID", fakes::gmail::CLIENT_ID.to_string()),
        (
            "GMAIL_CLIENT_SECRET",
            fakes::gmail::CLIENT_SECRET.to_string(),
        ),
    ];
    let mail = agent("mcp-gmail", &setup, "prof_coding", &gmail_env).await;
    mcp::ok(
        mcp::call(
            &mail,
            "gmail_send_message",
            json!({"to": "friend@example.com", "subject": "Imported", "body": "It still sends."}),
        )
        .await,
    );
    assert_eq!(gmail.sent().len(), 1);
    assert!(gmail.refreshes() >= 1);
    mail.cancel().await.unwrap();

    // Notify: the bot bound to prof_vzfin, and the webhook the product's way.
    let notify_env = [
        ("TELEGRAM_API_BASE", setup.telegram.base_url()),
        ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1".to_string()),
    ];
    let notify = agent("mcp-notify", &setup, "prof_vzfin", &notify_env).await;
    mcp::ok(
        mcp::call(
            &notify,
            "notify_user",
            json!({"message": "From the finance bot", "channel": "telegram"}),
        )
        .await,
    );
    let sent = setup.telegram.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, fakes::telegram::OWNER_CHAT);
    mcp::ok(
        mcp::call(
            &notify,
            "notify_user",
            json!({"message": "Hook, *vonzio* style", "urgency": "high"}),
        )
        .await,
    );
    let received = hook.received();
    assert_eq!(received.len(), 1);
    received[0]
        .verify(fakes::webhook::Signed::Vonzio, HOOK_SECRET)
        .unwrap();
    assert!(
        received[0]
            .verify(fakes::webhook::Signed::StandardWebhooks, HOOK_SECRET)
            .is_err()
    );
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["message"], "Hook, *vonzio* style");
    assert_eq!(body["urgency"], "high");
    notify.cancel().await.unwrap();
}

/// The hostile import of the review: the product's database holds a row of
/// another user, back-dated, that names the Slack user who connected Slack
/// here; and two users' rows that name one Gmail address.
async fn lay_out_hostile_product(url: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(PRODUCT_SCHEMA).execute(&mut c).await.unwrap();
    sqlx::raw_sql(&format!(
        r#"INSERT INTO "user" VALUES ('{USER}', 'amouzou@example.com', 'A'), ('{OTHER}', NULL, 'O'), ('u_third', NULL, 'T');"#
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let slack = json!({"bot_token": fakes::slack::SLACK_TOKEN, "team_id": fakes::slack::TEAM_ID,
                       "authed_user_id": fakes::slack::USER_ID});
    let rows = [
        ("int_hostile", OTHER, "slack", slack, "2001-01-01T00:00:00Z"),
        (
            "int_mail_other",
            OTHER,
            "gmail",
            json!({"email": "Shared@Example.com", "refresh_token": "1//a"}),
            "2025-01-01T00:00:00Z",
        ),
        (
            "int_mail_third",
            "u_third",
            "gmail",
            json!({"email": "shared@example.com", "refresh_token": "1//b"}),
            "2025-01-02T00:00:00Z",
        ),
    ];
    let sealed = seal(
        &rows
            .iter()
            .map(|r| (r.3.to_string(), "vonzio-encryption"))
            .collect::<Vec<_>>(),
    );
    for ((id, user, kind, _, at), sealed) in rows.iter().zip(sealed) {
        sqlx::query(
            "INSERT INTO user_integrations (id, user_id, type, encrypted_config, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz)",
        )
        .bind(id)
        .bind(user)
        .bind(kind)
        .bind(sealed)
        .bind(at)
        .execute(&mut c)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_back_dated_import_of_another_users_identity_is_skipped_and_routes_nothing() {
    let (Some(product), Some(store)) = (Backend::postgres("hostile"), Backend::postgres("victim"))
    else {
        eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: skipping the import test");
        return;
    };
    lay_out_hostile_product(&product.url).await;
    let keys = cli::run(&store.url, "", &["keys", "generate"])
        .trim()
        .to_string();
    let setup = Setup {
        product,
        store,
        keys,
        telegram: fakes::telegram::FakeTelegram::start().await.unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("victim.db").display()
    );
    for url in [setup.store.url.clone(), sqlite] {
        // The victim connected Slack here.
        let slack = json!({"bot_token": fakes::slack::SLACK_TOKEN, "team_id": fakes::slack::TEAM_ID,
                           "authed_user_id": fakes::slack::USER_ID});
        let victims = cli::run_with_stdin(
            &url,
            &setup.keys,
            &["add", "slack", "--user", USER, "--config", "-"],
            &slack.to_string(),
        )
        .trim()
        .to_string();
        let run = setup.import_into(&url, &[]);
        let report = stdout(&run);
        assert_eq!(run.status.code(), Some(0), "{report}");
        let hostile = line(&report, "int_hostile");
        assert!(
            hostile.starts_with("skipped") && hostile.contains("Slack user is already connected"),
            "{url}: {hostile}"
        );
        assert!(
            !hostile.contains(USER) && !hostile.contains(&victims),
            "{hostile}"
        );
        for id in ["int_mail_other", "int_mail_third"] {
            let shared = line(&report, id);
            assert!(
                shared.starts_with("skipped") && shared.contains("same Gmail address"),
                "{url}: {shared}"
            );
        }
        assert!(
            report.ends_with("0 imported, 0 already imported, 3 skipped, 0 failed\n"),
            "{report}"
        );

        // The victim's DMs go to the victim, and none to the importer.
        let slack = fakes::slack::FakeSlack::start().await.unwrap();
        let mut cmd = tokio::process::Command::new(crate::BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("INTEGRATIONS_DB", &url)
            .env("INTEGRATIONS_KEYS", &setup.keys)
            .env("SLACK_SIGNING_SECRET", fakes::slack::events::SIGNING_SECRET)
            .env("SLACK_API_BASE", slack.base_url());
        let (_server, base, _log) = serve::spawn(&mut cmd).await;
        slack
            .set_request_url(&format!("{base}/api/slack/events"))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let mut tokens = Vec::new();
        for user in [USER, OTHER] {
            let token = cli::run(&url, &setup.keys, &["tokens", "create", "--user", user])
                .trim()
                .to_string();
            let created = http
                .put(format!("{base}/v1/profiles/prof_{user}"))
                .bearer_auth(&token)
                .json(&json!({"slug": "main", "is_default": true}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), reqwest::StatusCode::CREATED);
            tokens.push(token);
        }
        let dm = fakes::slack::events::dm(
            fakes::slack::USER_ID,
            "pay my rent from checking",
            "1700000100.000001",
        );
        let attempts = slack.deliver(&slack.envelope(dm)).await.unwrap();
        assert_eq!(attempts[0].status, Some(200), "{attempts:?}");
        let inbound = async |token: &str| -> Vec<Value> {
            let page: Value = http
                .get(format!("{base}/v1/inbound?after=0"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["messages"].as_array().unwrap().clone()
        };
        let theirs = inbound(&tokens[0]).await;
        assert_eq!(theirs.len(), 1, "{url}: {theirs:?}");
        assert_eq!(theirs[0]["integration_id"], victims.as_str());
        assert_eq!(inbound(&tokens[1]).await, Vec::<Value>::new(), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_string_in_the_product_cannot_forge_a_line_of_the_report() {
    let (Some(product), Some(store)) =
        (Backend::postgres("hostile"), Backend::postgres("imported"))
    else {
        eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: skipping the import test");
        return;
    };
    let mut c = sqlx::PgConnection::connect(&product.url).await.unwrap();
    sqlx::raw_sql(PRODUCT_SCHEMA).execute(&mut c).await.unwrap();
    // A slug that ends its line, clears the terminal's and writes a line of
    // its own, in red, right to left.
    let forged = "ops\r\n\u{1b}[2K\u{1b}[31mimported         profiles prof_fake (fake)\u{202e}";
    sqlx::query(r#"INSERT INTO "user" VALUES ($1, NULL, 'A')"#)
        .bind(USER)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO profiles (id, user_id, name, slug) VALUES ('prof_\u{1b}]0;t\u{7}x', $1, 'Ops', $2)")
        .bind(USER)
        .bind(forged)
        .execute(&mut c)
        .await
        .unwrap();
    let keys = cli::run(&store.url, "", &["keys", "generate"]);
    let out = cli::command(
        &store.url,
        keys.trim(),
        &["import", "vonzio", "--from-env", "VONZIO_DB", "--dry-run"],
    )
    .env("VONZIO_DB", &product.url)
    .env("VONZIO_ENCRYPTION_KEY", PASSPHRASE)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let report = stdout(&out);
    assert_eq!(report.lines().count(), 2, "{report:?}");
    assert!(
        report.starts_with("skipped          profiles prof_"),
        "{report:?}"
    );
    assert!(
        !report.lines().any(|l| l.starts_with("imported")),
        "{report:?}"
    );
    assert!(
        !report
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{report:?}"
    );
    assert!(report.contains(r"ops\r\n\u{1b}[2K"), "{report:?}");
}
