//! The whole flow on an embedded store against fake providers: seed the
//! product's example, print the resolver's plans, spawn `mcp-teller`,
//! `mcp-gmail` and `mcp-notify` for each profile through an MCP client,
//! change a scope while they run, then serve `mcp-teller` over HTTP to
//! agents that hold only a capability token each.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! The sidecars it spawns are this program itself, run under their names
//! (`mcp-teller`, ... links to it, as a multi-call binary): the same
//! `sidecar::standalone::main` as the `mcp-*` binaries, and nothing to
//! build but the example.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use fakes::gmail::FakeGmail;
use fakes::resend::FakeResend;
use fakes::slack::FakeSlack;
use fakes::telegram::FakeTelegram;
use fakes::teller::{CHASE_TOKEN, FakeTeller, PNC_TOKEN};
use fakes::webhook::FakeWebhook;
use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use resolver::{Plan, PlanRequest, SidecarEnv};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use store::{Minter, NewIntegration, NewProfile, Store};
use vault::Keyring;
use zeroize::Zeroizing;

const USER: &str = "u_amouzou";

fn main() -> ExitCode {
    // Spawned under a sidecar's name (see `sidecars`): be that sidecar.
    let called = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(name) = called.as_deref()
        && name.starts_with("mcp-")
    {
        return sidecar(name);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The sidecar `name`, as its binary runs it (its crate's `main`).
fn sidecar(name: &str) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        match name {
            "mcp-teller" => mcp_teller::main().await,
            "mcp-gmail" => mcp_gmail::main().await,
            "mcp-notify" => mcp_notify::main().await,
            other => {
                eprintln!("demo: no sidecar is called {other}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn demo() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let bin_dir = sidecars(dir.path())?;
    eprintln!(
        "The sidecars below are this program itself, run as {}/mcp-teller, mcp-gmail and mcp-notify (links to it): nothing else was built.",
        bin_dir.display()
    );
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("integrations.db").display()
    );
    let keys_file = dir.path().join("keys");
    write_private(&keys_file, Keyring::generate_entry().as_bytes())?;
    let keyring = Keyring::parse(&std::fs::read_to_string(&keys_file)?)?;
    let teller = FakeTeller::start().await?;
    let gmail = FakeGmail::start().await?;
    let fakes = Fakes {
        slack: FakeSlack::start().await?,
        telegram: FakeTelegram::start().await?,
        resend: FakeResend::start().await?,
        webhook: FakeWebhook::start().await?,
    };

    heading("1. Seed the product's example (shared/seeds/integrations-and-scope.txt)");
    let store = Store::connect(&db).await?;
    let ids = seed(&store, &keyring, &fakes).await?;
    for i in store.integrations(USER, None).await? {
        let scope = match i.scope {
            Scope::All => "scope=all".to_string(),
            Scope::Agents => format!("scope=agents profile_ids={:?}", i.profile_ids),
        };
        let bound = i
            .bound_profile_id
            .as_deref()
            .map(|b| format!(" bound_profile_id={b}"))
            .unwrap_or_default();
        println!("  {:<9} {:<22} {scope}{bound}", i.kind.as_str(), i.label);
    }

    // The platform's environment: the sidecars learn where the fakes are
    // and where the keyring file is, never the key itself.
    let vars = [
        (
            "INTEGRATIONS_KEYS_FILE".to_string(),
            keys_file.display().to_string(),
        ),
        ("TELLER_API_BASE".to_string(), teller.base_url().to_string()),
        ("GMAIL_API_BASE".to_string(), gmail.api_base()),
        ("GOOGLE_TOKEN_URL".to_string(), gmail.token_url()),
        (
            "GMAIL_CLIENT_ID".to_string(),
            fakes::gmail::CLIENT_ID.into(),
        ),
        ("SLACK_API_BASE".to_string(), fakes.slack.base_url()),
        ("TELEGRAM_API_BASE".to_string(), fakes.telegram.base_url()),
        ("RESEND_API_BASE".to_string(), fakes.resend.base_url()),
        // The fake webhook receiver listens on loopback.
        ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE".to_string(), "1".into()),
    ];
    let env = SidecarEnv::from_vars(&db, vars);

    heading("2. The resolver's plans");
    let mut plans = Vec::new();
    for profile in ["prof_vzfin", "prof_coding"] {
        let request = PlanRequest {
            user_id: USER,
            profile_id: profile,
            session_id: Some("sess_demo"),
            bin_dir: &bin_dir,
        };
        let plan = resolver::plan(&store, &env, &request).await?;
        println!("  {profile}:");
        println!(
            "    servers:               {:?}",
            plan.servers.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        println!("    allowed_tools:         {:?}", plan.allowed_tools);
        println!(
            "    notification_channels: {:?}",
            plan.notification_channels
        );
        println!(
            "    inbound:               {:?}",
            plan.inbound
                .iter()
                .map(|s| format!("{} ({:?})", s.label, s.routing))
                .collect::<Vec<_>>()
        );
        plans.push(plan);
    }

    heading("3. The finance agent's teller sidecar, spawned from its plan");
    let finance =
        spawn(server(&plans[0], "teller").context("prof_vzfin gets a teller server")?).await?;
    let enrollments = call(&finance, "teller_list_enrollments", json!({})).await?;
    show("teller_list_enrollments", &enrollments);
    let accounts = call(
        &finance,
        "teller_list_accounts",
        json!({"enrollment_id": "enr_chase"}),
    )
    .await?;
    show("teller_list_accounts {enr_chase}", &accounts);
    let txns = call(
        &finance,
        "teller_list_transactions",
        json!({"enrollment_id": "enr_pnc", "account_id": "acc_pnc_checking", "count": 5}),
    )
    .await?;
    show(
        "teller_list_transactions {enr_pnc, acc_pnc_checking, count 5}",
        &txns,
    );

    heading("4. The coding agent");
    println!(
        "  its plan has no teller server: {:?}",
        plans[1].servers.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // Spawned by hand anyway, with the coding profile's identity:
    let mut by_hand = plans[0]
        .servers
        .iter()
        .find(|s| s.name == "teller")
        .unwrap()
        .clone();
    by_hand
        .env
        .insert("INTEGRATIONS_PROFILE_ID".into(), "prof_coding".into());
    let coding = spawn(&by_hand).await?;
    show(
        "teller_list_enrollments (spawned by hand)",
        &call(&coding, "teller_list_enrollments", json!({})).await?,
    );
    show(
        "teller_list_accounts {enr_pnc} (spawned by hand)",
        &call(
            &coding,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_pnc"}),
        )
        .await?,
    );

    heading("5. Scope Chase away from prof_vzfin while the sidecar runs");
    store
        .set_scope(&ids.chase, Scope::Agents, &["prof_coding".to_string()])
        .await?;
    println!("  integrations scope {} --agents prof_coding", ids.chase);
    show(
        "teller_list_enrollments (next call)",
        &call(&finance, "teller_list_enrollments", json!({})).await?,
    );
    show(
        "teller_list_accounts {enr_chase} (next call)",
        &call(
            &finance,
            "teller_list_accounts",
            json!({"enrollment_id": "enr_chase"}),
        )
        .await?,
    );
    show(
        "teller_list_enrollments as prof_coding (next call)",
        &call(&coding, "teller_list_enrollments", json!({})).await?,
    );

    heading("6. notify_user for each profile, spawned from its plan");
    let notify_finance =
        spawn(server(&plans[0], "notify").context("every plan has notify")?).await?;
    let notify_coding =
        spawn(server(&plans[1], "notify").context("every plan has notify")?).await?;
    for (profile, plan, client, asks) in [
        (
            "prof_vzfin",
            &plans[0],
            &notify_finance,
            vec![
                json!({}),
                json!({"channel": "telegram"}),
                json!({"channel": "email", "urgency": "high"}),
            ],
        ),
        (
            "prof_coding",
            &plans[1],
            &notify_coding,
            vec![
                json!({}),
                json!({"channel": "telegram"}),
                json!({"channel": format!("telegram:{}", ids.finance_bot)}),
            ],
        ),
    ] {
        println!("  {profile} may use {:?}", plan.notification_channels);
        for mut ask in asks {
            let channel = ask["channel"].as_str().unwrap_or("(default)").to_string();
            ask["message"] = json!(format!("**Demo**: hello from {profile}"));
            show(
                &format!("notify_user {{channel: {channel}}}"),
                &call(client, "notify_user", ask).await?,
            );
        }
    }
    println!(
        "  the fakes received: {} Slack DM(s), {} Telegram message(s), {} email(s), {} webhook(s)",
        fakes.slack.posted().len(),
        fakes.telegram.sent().len(),
        fakes.resend.sent().len(),
        fakes.webhook.received().len()
    );

    heading("7. The finance agent's gmail sidecar, spawned from its plan");
    let mail = spawn(server(&plans[0], "gmail").context("prof_vzfin gets a gmail server")?).await?;
    let found = call(
        &mail,
        "gmail_search",
        json!({"query": "lunch", "max_results": 3}),
    )
    .await?;
    show("gmail_search {query: lunch}", &found);
    let first = found
        .structured_content
        .as_ref()
        .and_then(|v| v["messages"][0]["message_id"].as_str())
        .context("the fake mailbox has a lunch mail")?
        .to_string();
    show(
        &format!("gmail_read_message {{{first}}}"),
        &call(
            &mail,
            "gmail_read_message",
            json!({"message_id": first, "max_chars": 400}),
        )
        .await?,
    );
    println!(
        "  Google's token endpoint was asked {} time(s); the token is kept, encrypted, for the next call",
        gmail.refreshes()
    );
    mail.cancel().await?;

    heading("8. The same agents over HTTP: one `mcp-teller serve`, a capability token each");
    let served = Served::teller(&bin_dir, &db, &keys_file, teller.base_url()).await?;
    let ttl = std::time::Duration::from_secs(600);
    let finance_http =
        resolver::mint(&store, plans[0].clone(), &served.base, ttl, Minter::Cli).await?;
    let coding_http =
        resolver::mint(&store, plans[1].clone(), &served.base, ttl, Minter::Cli).await?;
    let entry = &finance_http.claude_code()["mcpServers"]["teller"];
    let finance_token = bearer(entry)?;
    println!(
        "  prof_vzfin's plan entry: {{\"type\": \"http\", \"url\": {}, \"headers\": {{\"Authorization\": \"Bearer mct_…\"}}}}",
        entry["url"]
    );
    println!("  (no keyring, no store URL, no provider secret: the token is all it holds)");
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp/teller", served.base))
            .auth_header(finance_token.as_str()),
    );
    let over_http = ().serve(transport).await?;
    show(
        "teller_list_enrollments over HTTP",
        &call(&over_http, "teller_list_enrollments", json!({})).await?,
    );
    let coding_token = bearer(&coding_http.claude_code()["mcpServers"]["notify"])?;
    println!(
        "  the coding agent's token at /mcp/teller: {}",
        served.refusal(&coding_token).await?
    );
    let revoked = store.revoke_session(Some(USER), "sess_demo").await?;
    println!("  resolver revoke --session sess_demo: {revoked} token(s) revoked");
    println!(
        "  the finance agent's next request: {}",
        served.refusal(&finance_token).await?
    );
    over_http.cancel().await?;

    finance.cancel().await?;
    coding.cancel().await?;
    notify_finance.cancel().await?;
    notify_coding.cancel().await?;
    println!(
        "\ndone in {:.2} s; the temporary store is removed",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Seeded {
    chase: String,
    finance_bot: String,
}

/// The fake providers `mcp-notify` delivers to.
struct Fakes {
    slack: FakeSlack,
    telegram: FakeTelegram,
    resend: FakeResend,
    webhook: FakeWebhook,
}

async fn seed(store: &Store, keyring: &Keyring, fakes: &Fakes) -> anyhow::Result<Seeded> {
    for (id, slug, name, default) in [
        ("prof_vzfin", "vzfin", "VZ Finance", true),
        ("prof_coding", "coding", "Coding", false),
    ] {
        let profile = NewProfile {
            id: id.into(),
            user_id: USER.into(),
            slug: slug.into(),
            name: Some(name.into()),
            is_default: default,
        };
        store.add_profile(&profile).await?;
    }
    use IntegrationType::*;
    let fin = &["prof_vzfin"][..];
    let rows: [(IntegrationType, Value, &[&str], Option<&str>); 8] = [
        (
            Slack,
            json!({"bot_token": fakes::slack::SLACK_TOKEN, "team_id": fakes::slack::TEAM_ID, "team_name": "Vox Gateway", "authed_user_id": fakes::slack::USER_ID}),
            &[],
            None,
        ),
        (
            Telegram,
            json!({"bot_token": "111:demo", "bot_user_id": 111, "bot_username": "VonzioBot"}),
            &[],
            None,
        ),
        (
            Telegram,
            json!({"bot_token": fakes::telegram::BOT_TOKEN, "bot_user_id": fakes::telegram::BOT_ID, "bot_username": "VZFinance_bot", "owner_chat_id": fakes::telegram::OWNER_CHAT}),
            fin,
            Some("prof_vzfin"),
        ),
        (
            Gmail,
            json!({"email": "amouzou@gmail.com", "refresh_token": fakes::gmail::REFRESH_TOKEN, "scopes": fakes::gmail::SCOPES.split(' ').collect::<Vec<_>>()}),
            &[],
            None,
        ),
        (
            Teller,
            json!({"enrollment_id": "enr_pnc", "access_token": PNC_TOKEN, "institution_name": "PNC"}),
            fin,
            None,
        ),
        (
            Teller,
            json!({"enrollment_id": "enr_chase", "access_token": CHASE_TOKEN, "institution_name": "Chase"}),
            fin,
            None,
        ),
        (
            Email,
            json!({"api_key": fakes::resend::API_KEY, "from_address": "alerts@app.vonz.io", "to_address": "amouzou@gmail.com"}),
            &[],
            None,
        ),
        (
            Webhook,
            json!({"url": fakes.webhook.url("/hooks/catch/1/demo")}),
            &[],
            None,
        ),
    ];
    let (mut chase, mut finance_bot) = (String::new(), String::new());
    for (kind, config, agents, bound) in rows {
        let config =
            DecryptedConfig::validate(kind, Zeroizing::new(config.to_string().into_bytes()))?;
        let new = NewIntegration {
            user_id: USER.into(),
            kind,
            label: None,
            is_default: kind == Slack,
            scope: if agents.is_empty() {
                Scope::All
            } else {
                Scope::Agents
            },
            profile_ids: agents.iter().map(|s| s.to_string()).collect(),
            bound_profile_id: bound.map(Into::into),
        };
        let row = store.add_integration(keyring, &new, &config).await?;
        match row.label.as_str() {
            "Chase" => chase = row.id,
            "@VZFinance_bot" => finance_bot = row.id,
            _ => {}
        }
    }
    Ok(Seeded { chase, finance_bot })
}

/// A directory in `dir` where `mcp-teller`, `mcp-gmail` and `mcp-notify`
/// are links to this program, which runs as the sidecar it is called.
fn sidecars(dir: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin_dir = dir.join("bin");
    std::fs::create_dir(&bin_dir)?;
    for name in ["mcp-teller", "mcp-gmail", "mcp-notify"] {
        std::os::unix::fs::symlink(&exe, bin_dir.join(name))?;
    }
    Ok(bin_dir)
}

/// `mcp-teller serve` on a free port, killed on drop.
struct Served {
    _child: tokio::process::Child,
    base: String,
}

impl Served {
    async fn teller(bin_dir: &Path, db: &str, keys: &Path, teller: &str) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(bin_dir.join("mcp-teller"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("INTEGRATIONS_DB", db)
            .env("INTEGRATIONS_KEYS_FILE", keys)
            .env("TELLER_API_BASE", teller)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("its stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("mcp-teller serve did not start")??;
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .context("mcp-teller serve prints its address")?
            .to_string();
        Ok(Self {
            _child: child,
            base,
        })
    }

    /// What `/mcp/teller` answers a `tools/list` with `token`, in a few words.
    async fn refusal(&self, token: &str) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}/mcp/teller", self.base))
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        Ok(format!(
            "HTTP {status}: {}",
            body["error"]["message"].as_str().unwrap_or("(served)")
        ))
    }
}

/// The token of a plan entry's `Authorization` header.
fn bearer(entry: &Value) -> anyhow::Result<Zeroizing<String>> {
    let header = entry["headers"]["Authorization"]
        .as_str()
        .context("an HTTP plan entry carries its token")?;
    Ok(Zeroizing::new(
        header.strip_prefix("Bearer ").unwrap_or(header).to_string(),
    ))
}

fn server<'a>(plan: &'a Plan, name: &str) -> Option<&'a resolver::ServerSpec> {
    plan.servers.iter().find(|s| s.name == name)
}

/// Secrets the agent runtime holds and expands where a plan says `${NAME}`.
const RUNTIME_SECRETS: &[(&str, &str)] = &[("GMAIL_CLIENT_SECRET", fakes::gmail::CLIENT_SECRET)];

/// Spawns a sidecar as the agent runtime does, expanding secret references.
async fn spawn(spec: &resolver::ServerSpec) -> anyhow::Result<RunningService<RoleClient, ()>> {
    let env = spec.env.iter().map(|(name, value)| {
        let expanded = RUNTIME_SECRETS
            .iter()
            .find(|(secret, _)| *value == format!("${{{secret}}}"))
            .map_or(value.as_str(), |(_, v)| v);
        (name, expanded)
    });
    let command = tokio::process::Command::new(&spec.command).configure(|cmd| {
        cmd.args(&spec.args).env_clear().envs(env);
    });
    Ok(().serve(TokioChildProcess::new(command)?).await?)
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Value,
) -> anyhow::Result<CallToolResult> {
    let Value::Object(args) = args else {
        anyhow::bail!("arguments must be an object")
    };
    Ok(client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await?)
}

/// Writes a file only its owner can read, as a keyring file should be.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

fn heading(title: &str) {
    println!("\n\x1b[1m{title}\x1b[0m");
}

fn show(what: &str, result: &CallToolResult) {
    let marker = if result.is_error == Some(true) {
        "error"
    } else {
        "ok"
    };
    println!("  → {what}: {marker}");
    for content in &result.content {
        if let Some(text) = content.as_text() {
            for line in text.text.lines() {
                println!("      {line}");
            }
        }
    }
}
