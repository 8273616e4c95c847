//! The `resolver` binary on the product's own example
//! (`shared/seeds/integrations-and-scope.txt`), driven from outside.

use std::path::Path;
use std::process::Command;

use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use serde_json::Value;
use store::{NewIntegration, NewProfile, Store};
use vault::Keyring;
use zeroize::Zeroizing;

const BIN: &str = env!("CARGO_BIN_EXE_resolver");
const USER: &str = "u_amouzou";

/// The seeded example: the store, and the ids of its integrations.
struct Example {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
    gmail: String,
    pnc: String,
    chase: String,
    vonzio_bot: String,
    finance_bot: String,
    slack: String,
}

async fn add(
    store: &Store,
    keyring: &Keyring,
    kind: IntegrationType,
    json: &str,
    agents: &[&str],
    bound: Option<&str>,
) -> String {
    let config = DecryptedConfig::validate(kind, Zeroizing::new(json.as_bytes().to_vec())).unwrap();
    let new = NewIntegration {
        user_id: USER.into(),
        kind,
        label: None,
        is_default: false,
        scope: if agents.is_empty() {
            Scope::All
        } else {
            Scope::Agents
        },
        profile_ids: agents.iter().map(|s| s.to_string()).collect(),
        bound_profile_id: bound.map(Into::into),
    };
    store
        .add_integration(keyring, &new, &config)
        .await
        .unwrap()
        .id
}

async fn example() -> Example {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    seed(dir, url, store).await
}

async fn seed(dir: tempfile::TempDir, url: String, store: Store) -> Example {
    let k = Keyring::parse(&Keyring::generate_entry()).unwrap();
    for (id, slug, default) in [
        ("prof_vzfin", "vzfin", true),
        ("prof_coding", "coding", false),
    ] {
        let p = NewProfile {
            id: id.into(),
            user_id: USER.into(),
            slug: slug.into(),
            name: None,
            is_default: default,
        };
        store.add_profile(&p).await.unwrap();
    }
    // Another user, to show a plan never crosses users.
    let other = NewProfile {
        id: "prof_other".into(),
        user_id: "u_other".into(),
        slug: "other".into(),
        name: None,
        is_default: true,
    };
    store.add_profile(&other).await.unwrap();

    use IntegrationType::*;
    let slack = add(
        &store,
        &k,
        Slack,
        r#"{"bot_token":"xoxb-1","team_id":"T1","team_name":"Vox Gateway","authed_user_id":"U1"}"#,
        &[],
        None,
    )
    .await;
    let vonzio_bot = add(
        &store,
        &k,
        Telegram,
        r#"{"bot_token":"1:A","bot_user_id":1,"bot_username":"VonzioBot"}"#,
        &[],
        None,
    )
    .await;
    let finance_bot = add(
        &store,
        &k,
        Telegram,
        r#"{"bot_token":"2:A","bot_user_id":2,"bot_username":"VZFinance_bot"}"#,
        &["prof_vzfin"],
        Some("prof_vzfin"),
    )
    .await;
    let gmail = add(
        &store,
        &k,
        Gmail,
        r#"{"email":"amouzou@gmail.com","refresh_token":"1//r"}"#,
        &[],
        None,
    )
    .await;
    let pnc = add(
        &store,
        &k,
        Teller,
        r#"{"enrollment_id":"enr_pnc","access_token":"test_token_p","institution_name":"PNC"}"#,
        &["prof_vzfin"],
        None,
    )
    .await;
    let chase = add(
        &store,
        &k,
        Teller,
        r#"{"enrollment_id":"enr_chase","access_token":"test_token_c","institution_name":"Chase"}"#,
        &["prof_vzfin"],
        None,
    )
    .await;
    add(&store, &k, Email, r#"{"api_key":"re_1","from_address":"alerts@app.vonz.io","to_address":"amouzou@gmail.com"}"#, &[], None).await;
    add(
        &store,
        &k,
        Webhook,
        r#"{"url":"https://hooks.zapier.com/hooks/catch/1/x"}"#,
        &[],
        None,
    )
    .await;
    Example {
        _dir: dir,
        url,
        store,
        gmail,
        pnc,
        chase,
        vonzio_bot,
        finance_bot,
        slack,
    }
}

/// Runs the binary with no keyring in its environment.
fn resolver(url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("INTEGRATIONS_DB", url)
        .env("RUST_LOG", "trace")
        .env_remove("INTEGRATIONS_KEYS")
        .env_remove("INTEGRATIONS_KEYS_FILE")
        .env_remove("GMAIL_CLIENT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn plan(ex: &Example, profile: &str) -> Value {
    let out = resolver(
        &ex.url,
        &["plan", "--user", USER, "--profile", profile],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names(plan: &Value) -> Vec<String> {
    plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_product_example_plans_per_profile_and_follows_every_change() {
    let ex = example().await;

    let fin = plan(&ex, "prof_vzfin");
    assert_eq!(names(&fin), ["notify", "gmail", "teller"]);
    assert_eq!(
        strings(&fin["allowed_tools"]),
        [
            "mcp__notify__notify_user",
            "mcp__gmail__*",
            "mcp__teller__*"
        ]
    );
    assert_eq!(
        strings(&fin["notification_channels"]),
        [
            "slack".to_string(),
            format!("telegram:{}", ex.vonzio_bot),
            format!("telegram:{}", ex.finance_bot),
            "email".into(),
            "webhook".into()
        ]
    );
    let inbound: Vec<(String, String)> = fin["inbound"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["integration_id"].as_str().unwrap().into(),
                s["routing"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        inbound,
        [
            (ex.slack.clone(), "default".into()),
            (ex.vonzio_bot.clone(), "default".into()),
            (ex.finance_bot.clone(), "bound".into())
        ]
    );

    let coding = plan(&ex, "prof_coding");
    assert_eq!(names(&coding), ["notify", "gmail"]);
    assert_eq!(
        strings(&coding["allowed_tools"]),
        ["mcp__notify__notify_user", "mcp__gmail__*"]
    );
    let channels = strings(&coding["notification_channels"]);
    assert!(
        !channels.contains(&format!("telegram:{}", ex.finance_bot)),
        "{channels:?}"
    );
    assert!(channels.contains(&format!("telegram:{}", ex.vonzio_bot)));
    let coding_inbound = coding["inbound"].to_string();
    assert!(
        !coding_inbound.contains(&ex.finance_bot) && coding_inbound.contains("mention"),
        "{coding_inbound}"
    );

    ex.store.set_enabled(&ex.gmail, false).await.unwrap();
    assert_eq!(names(&plan(&ex, "prof_vzfin")), ["notify", "teller"]);
    assert_eq!(names(&plan(&ex, "prof_coding")), ["notify"]);

    ex.store
        .set_scope(&ex.chase, Scope::Agents, &["prof_coding".into()])
        .await
        .unwrap();
    assert_eq!(
        names(&plan(&ex, "prof_vzfin")),
        ["notify", "teller"],
        "PNC remains"
    );
    ex.store
        .set_scope(&ex.pnc, Scope::Agents, &["prof_coding".into()])
        .await
        .unwrap();
    assert_eq!(names(&plan(&ex, "prof_vzfin")), ["notify"]);
    assert_eq!(names(&plan(&ex, "prof_coding")), ["notify", "teller"]);
}

#[tokio::test]
async fn an_unknown_profile_or_another_users_profile_is_an_error() {
    let ex = example().await;
    for profile in ["prof_nope", "prof_other"] {
        let out = resolver(
            &ex.url,
            &["plan", "--user", USER, "--profile", profile],
            &[],
        );
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "profile '{profile}' is not a profile of user '{USER}'"
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn claude_code_format_is_an_mcp_json_with_sidecars_beside_the_resolver() {
    let ex = example().await;
    let out = resolver(
        &ex.url,
        &[
            "plan",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--session",
            "sess_1",
            "--format",
            "claude-code",
        ],
        &[("TELLER_API_BASE", "http://127.0.0.1:9")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers = config["mcpServers"].as_object().unwrap();
    assert_eq!(
        servers.keys().collect::<Vec<_>>(),
        ["notify", "gmail", "teller"]
    );
    let bin_dir = Path::new(BIN).parent().unwrap();
    let teller = &servers["teller"];
    assert_eq!(teller["type"], "stdio");
    assert_eq!(
        teller["command"],
        bin_dir.join("mcp-teller").display().to_string()
    );
    assert_eq!(teller["args"], serde_json::json!([]));
    let env = teller["env"].as_object().unwrap();
    assert_eq!(env["INTEGRATIONS_DB"], ex.url.as_str());
    assert_eq!(env["INTEGRATIONS_USER_ID"], USER);
    assert_eq!(env["INTEGRATIONS_PROFILE_ID"], "prof_vzfin");
    assert_eq!(env["INTEGRATIONS_SESSION_ID"], "sess_1");
    assert_eq!(env["INTEGRATIONS_KEYS"], "${INTEGRATIONS_KEYS}");
    assert_eq!(env["TELLER_API_BASE"], "http://127.0.0.1:9");
    assert!(
        !servers["notify"]["env"]
            .as_object()
            .unwrap()
            .contains_key("TELLER_API_BASE")
    );

    let out = resolver(
        &ex.url,
        &[
            "plan",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--bin-dir",
            "/opt/sidecars",
            "--format",
            "claude-code",
        ],
        &[("INTEGRATIONS_KEYS_FILE", "/etc/integrations/keys")],
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        config["mcpServers"]["notify"]["command"],
        "/opt/sidecars/mcp-notify"
    );
    assert_eq!(
        config["mcpServers"]["notify"]["env"]["INTEGRATIONS_KEYS_FILE"],
        "/etc/integrations/keys"
    );
    assert!(
        config["mcpServers"]["notify"]["env"]
            .get("INTEGRATIONS_KEYS")
            .is_none()
    );
}

/// Checks that no output format of a plan carries any of `canaries`.
fn assert_no_secret(url: &str, env: &[(&str, &str)], canaries: &[&str]) {
    for format in ["json", "claude-code"] {
        for profile in ["prof_vzfin", "prof_coding"] {
            let out = resolver(
                url,
                &[
                    "plan",
                    "--user",
                    USER,
                    "--profile",
                    profile,
                    "--format",
                    format,
                ],
                env,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for canary in canaries {
                assert!(!all.contains(canary), "{canary} leaked in {format}: {all}");
            }
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_any_output_format() {
    let ex = example().await;
    let key = "k1=Q0FOQVJZS0VZQ0FOQVJZS0VZQ0FOQVJZS0VZQ0FOQVI=";
    let env = [
        ("INTEGRATIONS_KEYS", key),
        ("GMAIL_CLIENT_SECRET", "CANARY-client-secret"),
        ("GMAIL_CLIENT_ID", "client-id.apps.googleusercontent.com"),
    ];
    assert_no_secret(&ex.url, &env, &["Q0FOQVJZS0VZ", "CANARY-client-secret"]);
    let out = resolver(
        &ex.url,
        &["plan", "--user", USER, "--profile", "prof_vzfin"],
        &env,
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gmail = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gmail")
        .unwrap();
    assert_eq!(
        gmail["env"]["GMAIL_CLIENT_SECRET"],
        "${GMAIL_CLIENT_SECRET}"
    );
    assert_eq!(
        gmail["env"]["GMAIL_CLIENT_ID"],
        "client-id.apps.googleusercontent.com"
    );

    // A password-bearing PostgreSQL URL is passed by reference only.
    let Some(db) = testkit::Backend::postgres("resolver") else {
        return;
    };
    let (scheme_user, server_db) = db.url.split_once('@').expect("the test URL names a user");
    // The machine's PostgreSQL trusts local connections, so the password is never checked.
    let with_password = format!("{scheme_user}:CANARYPASSWORD@{server_db}");
    let store = Store::connect(&with_password).await.unwrap();
    let pg = seed(tempfile::tempdir().unwrap(), with_password.clone(), store).await;
    assert_no_secret(
        &pg.url,
        &env,
        &["CANARYPASSWORD", "Q0FOQVJZS0VZ", "CANARY-client-secret"],
    );
    let out = resolver(
        &pg.url,
        &["plan", "--user", USER, "--profile", "prof_vzfin"],
        &env,
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["servers"][0]["env"]["INTEGRATIONS_DB"],
        "${INTEGRATIONS_DB}"
    );
}

#[tokio::test]
async fn inbound_messages_route_by_mention_binding_and_default_within_grants() {
    let ex = example().await;
    let route = |integration: &str, text: &str| {
        resolver(
            &ex.url,
            &["route", "--integration", integration, "--text", text],
            &[],
        )
    };
    let ok = |integration: &str, text: &str| -> Value {
        let out = route(integration, text);
        assert!(
            out.status.success(),
            "{text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(
        ok(&ex.finance_bot, "what did I spend?"),
        serde_json::json!({"profile_id": "prof_vzfin", "text": "what did I spend?"})
    );
    assert_eq!(
        ok(&ex.vonzio_bot, "@coding: fix the build"),
        serde_json::json!({"profile_id": "prof_coding", "text": "fix the build"})
    );
    assert_eq!(
        ok(&ex.slack, "hello"),
        serde_json::json!({"profile_id": "prof_vzfin", "text": "hello"})
    );

    for (integration, text, needle) in [
        (
            ex.finance_bot.as_str(),
            "@coding fix the build",
            "@VZFinance_bot is not granted to profile @coding",
        ),
        (
            ex.slack.as_str(),
            "@nobody hi",
            "no profile is named @nobody",
        ),
        (ex.gmail.as_str(), "hi", "only slack and telegram"),
        ("int_missing", "hi", "does not exist"),
    ] {
        let out = route(integration, text);
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
}
