//! `mcp-notify` spawned as the agent runtime spawns it, driven through rmcp's
//! client, against the fake Slack, Telegram, Resend and webhook receiver,
//! while an operator changes the store with the `integrations` CLI.

use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use fakes::Fault;
use fakes::resend::FakeResend;
use fakes::slack::FakeSlack;
use fakes::telegram::FakeTelegram;
use fakes::webhook::FakeWebhook;
use hmac::{Hmac, Mac};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use testkit::Account;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-notify");
const USER: &str = Account::USER;
const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A store with two profiles and one integration of each channel type, a
/// keyring, and the four fakes.
struct World {
    dir: tempfile::TempDir,
    keys: String,
    slack: FakeSlack,
    telegram: FakeTelegram,
    resend: FakeResend,
    webhook: FakeWebhook,
    slack_id: String,
    bot_id: String,
    email_id: String,
    webhook_id: String,
}

impl World {
    async fn new() -> Self {
        let mut w = Self {
            dir: tempfile::tempdir().unwrap(),
            keys: String::new(),
            slack: FakeSlack::start().await.unwrap(),
            telegram: FakeTelegram::start().await.unwrap(),
            resend: FakeResend::start().await.unwrap(),
            webhook: FakeWebhook::start().await.unwrap(),
            slack_id: String::new(),
            bot_id: String::new(),
            email_id: String::new(),
            webhook_id: String::new(),
        };
        w.keys = w.cli(&["keys", "generate"], None).trim().to_string();
        Account::seed(&w.db_url(), &w.keys);
        let slack = json!({"bot_token": fakes::slack::SLACK_TOKEN, "team_id": fakes::slack::TEAM_ID,
            "authed_user_id": fakes::slack::USER_ID, "team_name": "Test Workspace"});
        w.slack_id = w.add(&["slack", "--default"], &slack);
        let bot = json!({"bot_token": fakes::telegram::BOT_TOKEN, "bot_user_id": fakes::telegram::BOT_ID,
            "bot_username": fakes::telegram::BOT_USERNAME, "owner_chat_id": fakes::telegram::OWNER_CHAT});
        w.bot_id = w.add(
            &[
                "telegram",
                "--agents",
                "prof_vzfin",
                "--bound-profile",
                "prof_vzfin",
            ],
            &bot,
        );
        let email = json!({"api_key": fakes::resend::API_KEY, "from_address": "agent@vz.test", "to_address": "amouzou@example.com"});
        w.email_id = w.add(&["email", "--agents", "prof_coding"], &email);
        let hook = json!({"url": w.webhook.url("/hooks/agent?token=capability"), "secret": WEBHOOK_SECRET});
        w.webhook_id = w.add(&["webhook"], &hook);
        w
    }

    fn db_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("store.db").display()
        )
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INTEGRATIONS_DB", self.db_url()),
            ("INTEGRATIONS_KEYS", self.keys.clone()),
            ("SLACK_API_BASE", self.slack.base_url()),
            ("TELEGRAM_API_BASE", self.telegram.base_url()),
            ("RESEND_API_BASE", self.resend.base_url()),
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1".into()),
            ("NOTIFY_TIMEOUT_MS", "700".into()),
            ("NOTIFY_DEADLINE_MS", "5000".into()),
        ]
    }

    fn cli_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = std::process::Command::new(testkit::cli::integrations())
            .args(args)
            .env_clear()
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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

    fn add(&self, args: &[&str], config: &Value) -> String {
        let mut all = vec!["add"];
        all.extend(args);
        all.extend(["--user", USER, "--config", "-"]);
        self.cli(&all, Some(&config.to_string())).trim().to_string()
    }

    /// Spawns the sidecar for `profile` the way the agent runtime does.
    async fn sidecar(
        &self,
        profile: &str,
        extra: &[(&'static str, &str)],
    ) -> RunningService<RoleClient, ()> {
        let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
            cmd.env_clear()
                .envs(self.env())
                .env("INTEGRATIONS_USER_ID", USER)
                .env("INTEGRATIONS_PROFILE_ID", profile)
                .env("INTEGRATIONS_SESSION_ID", "sess_test");
            for (k, v) in extra {
                if v.is_empty() {
                    cmd.env_remove(k);
                } else {
                    cmd.env(k, v);
                }
            }
        });
        ().serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url())
            .await
            .unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        rows.iter()
            .map(|r| {
                (0..r.columns().len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .ok()
                            .flatten()
                            .or_else(|| {
                                r.try_get::<Option<i64>, _>(i)
                                    .ok()
                                    .flatten()
                                    .map(|n| n.to_string())
                            })
                    })
                    .collect()
            })
            .collect()
    }

    fn status_of(&self, id: &str) -> String {
        let shown: Value = serde_json::from_str(&self.cli(&["show", id, "--json"], None)).unwrap();
        shown["status"].as_str().unwrap().to_string()
    }
}

async fn notify(client: &RunningService<RoleClient, ()>, args: Value) -> CallToolResult {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new("notify_user").with_arguments(map))
        .await
        .unwrap()
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    result.structured_content.clone().unwrap()
}

fn refused(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected an error, got {}",
        text(result)
    );
    text(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_is_chosen_among_grants_re_read_on_every_call() {
    let w = World::new().await;
    let coding = w.sidecar("prof_coding", &[]).await;

    let sent = ok(&notify(&coding, json!({"message": "build done"})).await);
    assert_eq!(sent["channel"], "slack", "the user's default");
    assert_eq!(sent["integration_id"], w.slack_id.as_str());
    assert!(
        text(&notify(&coding, json!({"message": "x"})).await)
            .starts_with("Notification sent via slack")
    );

    // A bot scoped to and bound to another profile: never used, and its id
    // answers exactly like an id that does not exist.
    let named = refused(
        &notify(
            &coding,
            json!({"message": "x", "channel": format!("telegram:{}", w.bot_id)}),
        )
        .await,
    );
    let unknown = refused(
        &notify(
            &coding,
            json!({"message": "x", "channel": "telegram:int_doesnotexist000000000"}),
        )
        .await,
    );
    assert_eq!(
        named.replace(&w.bot_id, "ID"),
        unknown.replace("int_doesnotexist000000000", "ID")
    );
    assert!(
        refused(&notify(&coding, json!({"message": "x", "channel": "telegram"})).await)
            .contains("not available")
    );
    assert!(w.telegram.sent().is_empty());

    // Disabled, then deleted, then scoped away: the very next call sees it.
    w.cli(&["disable", &w.slack_id], None);
    assert_eq!(
        ok(&notify(&coding, json!({"message": "x"})).await)["channel"],
        "email",
        "the oldest granted one"
    );
    w.cli(&["rm", &w.email_id], None);
    assert_eq!(
        ok(&notify(&coding, json!({"message": "x"})).await)["channel"],
        "webhook"
    );
    w.cli(&["scope", &w.webhook_id, "--agents", "prof_vzfin"], None);
    let none = refused(&notify(&coding, json!({"message": "x"})).await);
    assert!(none.contains("Settings → Integrations"), "{none}");
    w.cli(&["enable", &w.slack_id], None);
    assert_eq!(
        ok(&notify(&coding, json!({"message": "x"})).await)["channel"],
        "slack"
    );

    // Identity comes from the spawn only: an identity-shaped argument is
    // ignored, and the result says so.
    let extra = notify(&coding, json!({"message": "x", "profile_id": "prof_vzfin"})).await;
    assert_eq!(ok(&extra)["channel"], "slack");
    assert!(
        text(&extra).contains("Ignored 'profile_id': who is calling comes from the session"),
        "{}",
        text(&extra)
    );
    let logged = w
        .rows("SELECT profile_id FROM notification_log ORDER BY created_at DESC LIMIT 1")
        .await;
    assert_eq!(logged[0][0].as_deref(), Some("prof_coding"));

    // Every call wrote one audit row.
    let audit = w
        .rows("SELECT decision FROM audit_log WHERE server = 'notify' ORDER BY id")
        .await;
    let decisions: Vec<&str> = audit.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(
        decisions,
        [
            "allow", "allow", "deny", "deny", "deny", "allow", "allow", "deny", "allow", "allow"
        ]
    );

    // Bad arguments get a sentence and lose nothing.
    assert!(refused(&notify(&coding, json!({"message": "  "})).await).contains("empty"));
    let huge = "x".repeat(20_001);
    assert!(refused(&notify(&coding, json!({"message": huge})).await).contains("20001 characters"));
    // An urgency the product's server took is sent as normal, and said.
    let urgent = notify(&coding, json!({"message": "x", "urgency": "urgent"})).await;
    ok(&urgent);
    assert!(
        text(&urgent).contains("urgency 'urgent' is not low, normal or high: sent as normal"),
        "{}",
        text(&urgent)
    );
    assert!(
        refused(&notify(&coding, json!({"message": "x", "channel": "pigeon"})).await)
            .contains("Invalid channel 'pigeon'")
    );
    assert_eq!(
        ok(&notify(&coding, json!({"message": "still serving"})).await)["channel"],
        "slack"
    );
    coding.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_dm_in_mrkdwn_and_a_dead_token_asks_for_a_reconnect() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let sent = ok(&notify(&agent, json!({"message": "The **deploy** failed _twice_: see [the log](https://ci.example/1) & `retry`", "urgency": "high", "title": "Deploy"})).await);
    let posted = w.slack.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0].channel, "D0OWNER",
        "a DM with the user who installed the app"
    );
    let attachment = &posted[0].attachments.as_ref().unwrap()[0];
    assert_eq!(attachment["color"], "#d93025");
    let body = attachment["text"].as_str().unwrap();
    assert!(
        body.starts_with(":rotating_light: *Urgent* *Deploy*"),
        "{body}"
    );
    assert!(
        body.contains(
            "The *deploy* failed _twice_: see <https://ci.example/1|the log> &amp; `retry`"
        ),
        "{body}"
    );
    assert_eq!(
        sent["provider_message_id"].as_str().unwrap(),
        "1700000000.000001"
    );

    w.slack
        .kill_token(fakes::slack::SLACK_TOKEN, "token_revoked");
    let dead = refused(&notify(&agent, json!({"message": "x", "channel": "slack"})).await);
    assert!(dead.contains("reconnect Slack"), "{dead}");
    assert!(!dead.contains("xoxb-"));
    assert_eq!(w.status_of(&w.slack_id), "needs_reauth");
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_splits_long_messages_sends_low_silently_and_falls_back_to_plain_text() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let long: String = (0..400)
        .map(|i| format!("line {i}: **ok** <tag> & more\n"))
        .collect();
    ok(&notify(
        &agent,
        json!({"message": long, "channel": "telegram", "urgency": "low"}),
    )
    .await);
    let sent = w.telegram.sent();
    assert!(sent.len() >= 3, "{} messages", sent.len());
    let mut lines = Vec::new();
    for m in &sent {
        assert_eq!(m.chat_id, fakes::telegram::OWNER_CHAT);
        assert!(m.text.chars().count() <= 4096);
        assert_eq!(m.parse_mode.as_deref(), Some("HTML"));
        assert!(m.disable_notification);
        lines.extend(m.text.lines().map(str::to_string));
    }
    assert_eq!(lines.len(), 400, "every line, once");
    assert_eq!(lines[0], "line 0: <b>ok</b> &lt;tag&gt; &amp; more");
    assert_eq!(lines[399], "line 399: <b>ok</b> &lt;tag&gt; &amp; more");

    w.telegram.faults().inject(Fault::status(
        "/sendMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities: Can't find end of the entity"}),
    ));
    ok(&notify(
        &agent,
        json!({"message": "**plain** now", "channel": "telegram"}),
    )
    .await);
    let last = w.telegram.sent().pop().unwrap();
    assert_eq!(last.parse_mode, None);
    assert_eq!(last.text, "plain now");
    assert!(!last.disable_notification);
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_thread_records_a_thread_and_needs_telegram_or_slack_and_a_session() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let long: String = (0..300)
        .map(|i| format!("step {i} finished with a long explanation\n"))
        .collect();
    let sent = ok(&notify(&agent, json!({"message": long, "channel": "telegram", "claim_thread": true, "claim_thread_label": "Q3 taxes"})).await);
    let messages = w.telegram.sent();
    assert!(messages.len() > 1);
    assert!(
        messages[..messages.len() - 1]
            .iter()
            .all(|m| m.reply_markup.is_none()),
        "buttons only on the last part"
    );
    let last = messages.last().unwrap();
    let buttons = last.reply_markup.as_ref().unwrap()["inline_keyboard"][0]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(buttons[0]["text"], "📎 Reply here");
    assert_eq!(buttons[1]["text"], "💬 Keep my chat");
    for b in &buttons {
        assert!(b["callback_data"].as_str().unwrap().len() <= 64);
    }
    assert_eq!(sent["provider_message_id"], last.message_id.to_string());
    // The buttons' data names the notification, and through it the thread.
    let claim = buttons[0]["callback_data"].as_str().unwrap();
    let notification = claim.strip_prefix("claim:").unwrap();
    assert_eq!(notification, sent["notification_id"].as_str().unwrap());
    assert_eq!(buttons[1]["callback_data"], format!("keep:{notification}"));
    let threads = w
        .rows(&format!(
            "SELECT integration_id, chat_id, message_id, session_id, label, profile_id FROM telegram_threads WHERE notification_id = '{notification}'"
        ))
        .await;
    assert_eq!(
        threads,
        vec![vec![
            Some(w.bot_id.clone()),
            Some(fakes::telegram::OWNER_CHAT.to_string()),
            Some(last.message_id.to_string()),
            Some("sess_test".into()),
            Some("Q3 taxes".into()),
            Some("prof_vzfin".into())
        ]]
    );

    // The label fits Telegram's tap answers: the schema says so, and a
    // longer one is refused with a sentence naming it, before any send.
    let tools = agent.list_all_tools().await.unwrap();
    let schema = serde_json::to_value(&tools[0].input_schema).unwrap();
    assert_eq!(
        schema["properties"]["claim_thread_label"]["maxLength"], 64,
        "{schema}"
    );
    let before = w.telegram.sent().len();
    let too_long = refused(
        &notify(
            &agent,
            json!({"message": "x", "channel": "telegram", "claim_thread": true, "claim_thread_label": "é".repeat(65)}),
        )
        .await,
    );
    assert!(
        too_long.contains("claim_thread_label has 65 characters; at most 64"),
        "{too_long}"
    );
    assert_eq!(w.telegram.sent().len(), before);
    ok(&notify(&agent, json!({"message": "x", "channel": "telegram", "claim_thread": true, "claim_thread_label": "é".repeat(64)})).await);

    // On Slack, the thread is the posted message's: its `ts`.
    let on_slack = ok(&notify(
        &agent,
        json!({"message": "x", "channel": "slack", "claim_thread": true, "claim_thread_label": "Q3 taxes"}),
    )
    .await);
    let posted = w.slack.posted().pop().unwrap();
    assert_eq!(on_slack["provider_message_id"], posted.ts.as_str());
    assert_eq!(
        posted.attachments.unwrap()[0]["footer"],
        "Reply in this thread to continue: Q3 taxes"
    );
    let threads = w
        .rows(&format!(
            "SELECT integration_id, channel, ts, session_id, label, profile_id FROM slack_threads WHERE notification_id = '{}'",
            on_slack["notification_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        threads,
        vec![vec![
            Some(w.slack_id.clone()),
            Some(posted.channel.clone()),
            Some(posted.ts.clone()),
            Some("sess_test".into()),
            Some("Q3 taxes".into()),
            Some("prof_vzfin".into())
        ]]
    );
    let on_webhook = refused(
        &notify(
            &agent,
            json!({"message": "x", "channel": "webhook", "claim_thread": true}),
        )
        .await,
    );
    assert!(on_webhook.contains("Telegram or Slack"), "{on_webhook}");
    let no_session = w
        .sidecar("prof_vzfin", &[("INTEGRATIONS_SESSION_ID", "")])
        .await;
    let refused_text = refused(
        &notify(
            &no_session,
            json!({"message": "x", "channel": "telegram", "claim_thread": true}),
        )
        .await,
    );
    assert!(refused_text.contains("session"), "{refused_text}");

    w.telegram.block(fakes::telegram::OWNER_CHAT);
    let blocked = refused(&notify(&agent, json!({"message": "x", "channel": "telegram"})).await);
    assert!(blocked.contains("blocked"), "{blocked}");
    assert!(!blocked.contains(fakes::telegram::BOT_TOKEN));
    agent.cancel().await.unwrap();
    no_session.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_not_linked_yet_says_to_send_link() {
    let w = World::new().await;
    let unlinked = json!({"bot_token": "7000000002:AAanother", "bot_user_id": 7000000002_i64, "bot_username": "second_bot"});
    let id = w.add(&["telegram"], &unlinked);
    let agent = w.sidecar("prof_coding", &[]).await;
    let answer = refused(
        &notify(
            &agent,
            json!({"message": "x", "channel": format!("telegram:{id}")}),
        )
        .await,
    );
    assert!(answer.contains("/link"), "{answer}");
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_resend_with_html_text_and_the_notification_id_as_key() {
    let w = World::new().await;
    let agent = w.sidecar("prof_coding", &[]).await;
    let sent = ok(&notify(&agent, json!({"message": "Quarter closed <script>alert(1)</script>\n**Revenue** up", "channel": "email", "urgency": "high"})).await);
    let emails = w.resend.sent();
    assert_eq!(emails.len(), 1);
    let e = &emails[0];
    assert_eq!(e.body["from"], "agent@vz.test");
    assert_eq!(e.body["to"], json!(["amouzou@example.com"]));
    assert_eq!(
        e.body["subject"],
        "[Urgent] Quarter closed <script>alert(1)</script>"
    );
    let html = e.body["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script>"),
        "{html}"
    );
    assert!(html.contains("<b>Revenue</b>"));
    assert_eq!(
        e.body["text"],
        "Quarter closed <script>alert(1)</script>\nRevenue up"
    );
    assert!(e.user_agent.starts_with("vz-integrations/"));
    assert_eq!(
        e.idempotency_key.as_deref(),
        sent["notification_id"].as_str()
    );
    assert_eq!(sent["provider_message_id"], e.id.as_str());
    ok(&notify(
        &agent,
        json!({"message": "x", "channel": "email", "title": "Weekly report"}),
    )
    .await);
    assert_eq!(w.resend.sent()[1].body["subject"], "Weekly report");
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_private_targets_refused() {
    let w = World::new().await;
    let agent = w.sidecar("prof_coding", &[]).await;
    let sent = ok(&notify(
        &agent,
        json!({"message": "done", "channel": "webhook", "title": "Build"}),
    )
    .await);
    let got = w.webhook.received();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    let body: Value = serde_json::from_slice(&d.body).unwrap();
    for (field, value) in [
        ("id", sent["notification_id"].clone()),
        ("type", json!("notification")),
        ("channel", json!("webhook")),
        ("urgency", json!("normal")),
        ("title", json!("Build")),
        ("message", json!("done")),
        ("source", json!("agent")),
        ("profile_id", json!("prof_coding")),
        ("session_id", json!("sess_test")),
    ] {
        assert_eq!(body[field], value, "{field}");
    }
    assert!(body["sent_at"].as_str().unwrap().ends_with('Z'));
    // The signature, checked with the test's own HMAC.
    let id = d.header("webhook-id").unwrap();
    let ts = d.header("webhook-timestamp").unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&d.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(d.header("webhook-signature"), Some(expected.as_str()));
    assert_eq!(id, sent["notification_id"].as_str().unwrap());

    // A redirect is a failure, not followed.
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 302, json!({})));
    let redirected = refused(&notify(&agent, json!({"message": "x", "channel": "webhook"})).await);
    assert!(redirected.contains("redirect"), "{redirected}");
    assert!(
        !redirected.contains("capability"),
        "the URL is a secret: {redirected}"
    );

    // Without the opt-in, plain http is refused, and so is an https URL
    // whose address is loopback, before any connection.
    let strict = w
        .sidecar("prof_coding", &[("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "")])
        .await;
    let before = w.webhook.faults().requests().len();
    let http = refused(&notify(&strict, json!({"message": "x", "channel": "webhook"})).await);
    assert!(http.contains("must use https"), "{http}");
    w.cli(&["rm", &w.webhook_id], None);
    let https = w
        .webhook
        .url("/hooks/agent")
        .replace("http://127.0.0.1", "https://localhost");
    w.add(&["webhook"], &json!({ "url": https }));
    let loopback = refused(&notify(&strict, json!({"message": "x", "channel": "webhook"})).await);
    assert!(loopback.contains("loopback, private"), "{loopback}");
    assert_eq!(w.webhook.faults().requests().len(), before);
    agent.cancel().await.unwrap();
    strict.cancel().await.unwrap();
}

/// A receiver written for the product keeps verifying: `"signature":
/// "vonzio"` sends its body and `X-Signature-256`; the default stays
/// Standard Webhooks. The fake receiver checks both with its own HMAC.
#[tokio::test]
async fn a_webhook_may_be_signed_the_products_way() {
    let w = World::new().await;
    let agent = w.sidecar("prof_coding", &[]).await;
    ok(&notify(&agent, json!({"message": "standard", "channel": "webhook"})).await);
    let standard = w.webhook.received().pop().unwrap();
    standard
        .verify(fakes::webhook::Signed::StandardWebhooks, WEBHOOK_SECRET)
        .unwrap();
    assert!(
        standard
            .verify(fakes::webhook::Signed::Vonzio, WEBHOOK_SECRET)
            .is_err()
    );

    w.cli(&["rm", &w.webhook_id], None);
    let url = w.webhook.url("/hooks/vonzio");
    let refused_config = w.cli_output(
        &["add", "webhook", "--user", USER, "--config", "-"],
        Some(&json!({"url": url, "secret": "s", "signature": "hmac"}).to_string()),
    );
    assert!(!refused_config.status.success());
    assert!(
        String::from_utf8_lossy(&refused_config.stderr)
            .contains("field 'signature' must be one of standard-webhooks, vonzio")
    );
    w.add(
        &["webhook"],
        &json!({"url": url, "secret": "vz-secret", "signature": "vonzio"}),
    );
    ok(&notify(&agent, json!({"message": "**deploy** done", "channel": "webhook", "urgency": "high", "title": "T"})).await);
    let product = w.webhook.received().pop().unwrap();
    assert_eq!(product.path, "/hooks/vonzio");
    product
        .verify(fakes::webhook::Signed::Vonzio, "vz-secret")
        .unwrap();
    assert!(product.header("webhook-signature").is_none());
    let body: Value = serde_json::from_slice(&product.body).unwrap();
    assert_eq!(body["message"], "**deploy** done");
    assert_eq!(body["urgency"], "high");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    agent.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_never_duplicate_a_message() {
    let w = World::new().await;
    let agent = w.sidecar("prof_coding", &[]).await;

    // Webhook: two 503s, then delivered once, every attempt with one id.
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 503, json!({})).times(2));
    ok(&notify(&agent, json!({"message": "a", "channel": "webhook"})).await);
    let attempts = w.webhook.faults().requests();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts
            .iter()
            .all(|r| r.message_key == attempts[0].message_key)
    );
    assert_eq!(w.webhook.received().len(), 1);

    // Webhook: a timeout, then delivered.
    w.webhook.faults().clear_requests();
    w.webhook
        .faults()
        .inject(Fault::delay("/hooks/agent", Duration::from_secs(3)));
    ok(&notify(&agent, json!({"message": "b", "channel": "webhook"})).await);
    let attempts = w.webhook.faults().requests();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].message_key, attempts[1].message_key);

    // Webhook: 429 honouring Retry-After; 410 is not retried.
    w.webhook.faults().clear_requests();
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 429, json!({})).retry_after(1));
    ok(&notify(&agent, json!({"message": "c", "channel": "webhook"})).await);
    assert_eq!(w.webhook.faults().requests().len(), 2);
    w.webhook.faults().clear_requests();
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 410, json!({})));
    assert!(
        refused(&notify(&agent, json!({"message": "d", "channel": "webhook"})).await)
            .contains("gone")
    );
    assert_eq!(w.webhook.faults().requests().len(), 1);

    // Resend: a 500, then sent once under the same idempotency key.
    w.resend.faults().inject(Fault::status(
        "/emails",
        500,
        fakes::resend::error(500, "application_error", "boom"),
    ));
    ok(&notify(&agent, json!({"message": "e", "channel": "email"})).await);
    let attempts = w.resend.faults().requests();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].message_key, attempts[1].message_key);
    assert_eq!(w.resend.sent().len(), 1);

    // A 5xx that never ends: reported within the deadline.
    w.resend.faults().inject(
        Fault::status(
            "/emails",
            502,
            fakes::resend::error(502, "application_error", "down"),
        )
        .times(100),
    );
    let down = refused(&notify(&agent, json!({"message": "f", "channel": "email"})).await);
    assert!(down.contains("Resend is failing"), "{down}");
    w.resend.faults().clear_faults();

    // Slack: a 5xx on the post may have delivered: not retried.
    let vzfin = w.sidecar("prof_vzfin", &[]).await;
    w.slack
        .faults()
        .inject(Fault::status("/chat.postMessage", 500, json!({})));
    let maybe = refused(&notify(&vzfin, json!({"message": "g", "channel": "slack"})).await);
    assert!(maybe.contains("not sent again"), "{maybe}");
    let posts = |w: &World| {
        w.slack
            .faults()
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("chat.postMessage"))
            .count()
    };
    assert_eq!(posts(&w), 1);
    // ... but a 429 is: Slack did not take it.
    w.slack.faults().inject(
        Fault::status(
            "/chat.postMessage",
            429,
            json!({"ok": false, "error": "ratelimited"}),
        )
        .retry_after(1),
    );
    ok(&notify(&vzfin, json!({"message": "h", "channel": "slack"})).await);
    assert_eq!(posts(&w), 3);
    assert_eq!(w.slack.posted().len(), 1);

    // Telegram: 429 with retry_after, then sent once.
    w.telegram.faults().inject(Fault::status(
        "/sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    ));
    ok(&notify(&vzfin, json!({"message": "i", "channel": "telegram"})).await);
    assert_eq!(w.telegram.faults().requests().len(), 2);
    assert_eq!(w.telegram.sent().len(), 1);
    // ... and a 5xx is not: the message may be in the chat already.
    w.telegram.faults().inject(Fault::status(
        "/sendMessage",
        502,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
    ));
    assert!(
        refused(&notify(&vzfin, json!({"message": "j", "channel": "telegram"})).await)
            .contains("not sent again")
    );
    assert_eq!(w.telegram.faults().requests().len(), 3);
    // A timeout after sending is not retried either, on Telegram or Slack.
    w.telegram
        .faults()
        .inject(Fault::delay("/sendMessage", Duration::from_secs(2)));
    let slow = refused(&notify(&vzfin, json!({"message": "k", "channel": "telegram"})).await);
    assert!(
        slow.contains("did not answer in time") && slow.contains("not sent again"),
        "{slow}"
    );
    assert_eq!(w.telegram.faults().requests().len(), 4);
    w.slack
        .faults()
        .inject(Fault::delay("/chat.postMessage", Duration::from_secs(2)));
    let slow = refused(&notify(&vzfin, json!({"message": "l", "channel": "slack"})).await);
    assert!(slow.contains("not sent again"), "{slow}");
    assert_eq!(posts(&w), 4);
    // Resend's 429 waits for its Retry-After, with the same key.
    w.resend.faults().clear_requests();
    w.resend.faults().inject(
        Fault::status(
            "/emails",
            429,
            fakes::resend::error(429, "rate_limit_exceeded", "slow down"),
        )
        .retry_after(1),
    );
    ok(&notify(&agent, json!({"message": "m", "channel": "email"})).await);
    let attempts = w.resend.faults().requests();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].message_key, attempts[1].message_key);

    // Every attempt ended in one log row, failures with their reason and no secret.
    let log = w
        .rows("SELECT status, attempts, error FROM notification_log ORDER BY id")
        .await;
    assert_eq!(log.len(), 13);
    assert_eq!(log[0][..2], [Some("sent".into()), Some("3".into())]);
    assert_eq!(log[3][0].as_deref(), Some("failed"));
    for row in &log {
        let error = row[2].clone().unwrap_or_default();
        for secret in [
            fakes::slack::SLACK_TOKEN,
            fakes::resend::API_KEY,
            "capability",
            fakes::telegram::BOT_TOKEN,
        ] {
            assert!(!error.contains(secret), "{error}");
        }
    }
    agent.cancel().await.unwrap();
    vzfin.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_ends_the_call_within_its_deadline() {
    let w = World::new().await;
    let short = [("NOTIFY_DEADLINE_MS", "3000")];
    let coding = w.sidecar("prof_coding", &short).await;
    let vzfin = w.sidecar("prof_vzfin", &short).await;
    let forever = u64::MAX;
    // Well before any absurd wait, and past the 3 s deadline only if it hangs.
    let bounded = |result| async {
        tokio::time::timeout(Duration::from_secs(10), result)
            .await
            .expect("the call outlived its deadline")
    };
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 429, json!({})).retry_after(forever));
    w.slack.faults().inject(
        Fault::status(
            "/chat.postMessage",
            429,
            json!({"ok": false, "error": "ratelimited"}),
        )
        .retry_after(forever),
    );
    w.telegram.faults().inject(Fault::status(
        "/sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": forever}}),
    ));
    for (agent, channel) in [
        (&coding, "webhook"),
        (&vzfin, "slack"),
        (&vzfin, "telegram"),
    ] {
        let asked = json!({"message": "now", "channel": channel});
        let m = refused(&bounded(notify(agent, asked.clone())).await);
        assert!(
            m.starts_with("The notification was not delivered")
                && m.contains("longer than this call may take"),
            "{channel}: {m}"
        );
        ok(&bounded(notify(agent, asked)).await);
    }
    let log = w
        .rows("SELECT channel, status FROM notification_log ORDER BY id")
        .await;
    let audit = w
        .rows("SELECT decision FROM audit_log WHERE tool = 'notify_user' ORDER BY id")
        .await;
    for (n, channel) in ["webhook", "slack", "telegram"].iter().enumerate() {
        assert!(log[2 * n][0].as_ref().unwrap().starts_with(channel));
        assert_eq!(log[2 * n][1].as_deref(), Some("failed"));
        assert_eq!(log[2 * n + 1][1].as_deref(), Some("sent"));
        assert_eq!(audit[2 * n], [Some("error".into())]);
        assert_eq!(audit[2 * n + 1], [Some("allow".into())]);
    }
    coding.cancel().await.unwrap();
    vzfin.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sends_once_and_the_rate_limit_holds_across_sidecars() {
    let w = World::new().await;
    let limit = [("NOTIFY_MAX_PER_MINUTE", "3")];
    let one = w.sidecar("prof_vzfin", &limit).await;
    let two = w.sidecar("prof_vzfin", &limit).await;
    let first = ok(&notify(
        &one,
        json!({"message": "once", "idempotency_key": "job-42"}),
    )
    .await);
    let again = notify(
        &two,
        json!({"message": "once", "idempotency_key": "job-42"}),
    )
    .await;
    assert!(
        text(&again).starts_with("Notification sent via slack (earlier"),
        "{}",
        text(&again)
    );
    let again = ok(&again);
    assert_eq!(again["notification_id"], first["notification_id"]);
    assert_eq!(again["replayed"], true);
    assert_eq!(w.slack.posted().len(), 1);

    ok(&notify(&two, json!({"message": "2"})).await);
    ok(&notify(&one, json!({"message": "3"})).await);
    let limited = refused(&notify(&two, json!({"message": "4"})).await);
    assert!(limited.contains("Try again in"), "{limited}");
    assert_eq!(w.slack.posted().len(), 3);
    // Another profile has its own count.
    let coding = w.sidecar("prof_coding", &limit).await;
    ok(&notify(&coding, json!({"message": "5"})).await);
    // ... and its own idempotency keys: another profile's key reveals nothing.
    let own = ok(&notify(
        &coding,
        json!({"message": "6", "idempotency_key": "job-42"}),
    )
    .await);
    assert_eq!(own["replayed"], false);
    assert_ne!(own["notification_id"], first["notification_id"]);
    for c in [one, two, coding] {
        c.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_racing_send_a_key_once_and_keep_the_limit() {
    let w = World::new().await;
    let limit = [("NOTIFY_MAX_PER_MINUTE", "3")];
    let one = w.sidecar("prof_coding", &limit).await;
    let two = w.sidecar("prof_coding", &limit).await;
    let hook = |key: Option<&str>| json!({"message": "race", "channel": "webhook", "idempotency_key": key});
    // The first delivery is slow (within NOTIFY_TIMEOUT_MS): both calls are in flight at once.
    w.webhook
        .faults()
        .inject(Fault::delay("/hooks/agent", Duration::from_millis(500)));
    let (a, b) = tokio::join!(
        notify(&one, hook(Some("job-7"))),
        notify(&two, hook(Some("job-7")))
    );
    assert_eq!(w.webhook.received().len(), 1, "a key raced through twice");
    let (sent, busy) = if a.is_error == Some(true) {
        (b, a)
    } else {
        (a, b)
    };
    let sent = ok(&sent);
    assert!(
        refused(&busy).contains("being sent right now"),
        "{}",
        text(&busy)
    );
    let again = ok(&notify(&two, hook(Some("job-7"))).await);
    assert_eq!(
        (again["replayed"].clone(), again["notification_id"].clone()),
        (json!(true), sent["notification_id"].clone())
    );

    // A failed delivery frees its key for a retry.
    w.webhook
        .faults()
        .inject(Fault::status("/hooks/agent", 400, json!({})));
    refused(&notify(&one, hook(Some("job-8"))).await);
    let retried = ok(&notify(&two, hook(Some("job-8"))).await);
    assert_eq!(retried["replayed"], false);

    // The last place of the minute, raced for: one gets it.
    let limited = [("NOTIFY_MAX_PER_MINUTE", "1")];
    let three = w.sidecar("prof_vzfin", &limited).await;
    let four = w.sidecar("prof_vzfin", &limited).await;
    w.slack.faults().inject(Fault::delay(
        "/chat.postMessage",
        Duration::from_millis(500),
    ));
    let slack = json!({"message": "race", "channel": "slack"});
    let (a, b) = tokio::join!(notify(&three, slack.clone()), notify(&four, slack));
    assert_eq!(w.slack.posted().len(), 1, "the limit was passed by a race");
    let late = if a.is_error == Some(true) { a } else { b };
    assert!(refused(&late).contains("Try again in"), "{}", text(&late));
    for c in [one, two, three, four] {
        c.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_platform_notifications_tests_and_revokes() {
    let w = World::new().await;
    let out = w.cli_output(
        &[
            "notify",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--channels",
            &format!("slack,telegram:{},email", w.bot_id),
            "--message",
            "Maintenance tonight",
        ],
        None,
    );
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].starts_with("slack: sent via slack"), "{printed}");
    assert!(
        lines[1].starts_with(&format!("telegram:{}: sent", w.bot_id)),
        "{printed}"
    );
    assert!(
        lines[2].starts_with("email: failed"),
        "not granted to prof_vzfin: {printed}"
    );
    let sources = w.rows("SELECT source FROM notification_log").await;
    assert!(sources.iter().all(|r| r[0].as_deref() == Some("platform")));

    let all_failed = w.cli_output(
        &[
            "notify",
            "--user",
            USER,
            "--profile",
            "prof_vzfin",
            "--channels",
            "email",
            "--message",
            "x",
        ],
        None,
    );
    assert!(!all_failed.status.success());

    let tested = w.cli(&["test", &w.webhook_id], None);
    assert!(tested.starts_with("sent via webhook"), "{tested}");
    assert_eq!(w.webhook.received().len(), 1);
    assert!(!w.cli_output(&["test", "int_nope"], None).status.success());

    let removed = w.cli(&["rm", &w.slack_id], None);
    assert!(removed.contains("revoked at Slack"), "{removed}");
    assert!(w.slack.is_revoked(fakes::slack::SLACK_TOKEN));
    let removed = w.cli(&["rm", &w.bot_id], None);
    assert!(removed.contains("webhook deleted at Telegram"), "{removed}");
    assert!(
        w.telegram
            .faults()
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/deleteWebhook"))
    );

    // A token that is already dead still lets the row go.
    let again = json!({"bot_token": fakes::slack::SLACK_TOKEN, "team_id": fakes::slack::TEAM_ID, "authed_user_id": fakes::slack::USER_ID});
    let slack = w.add(&["slack"], &again);
    let removed = w.cli(&["rm", &slack], None);
    assert!(removed.contains("already dead"), "{removed}");
    assert!(!w.cli_output(&["show", &slack], None).status.success());
    let bot = json!({"bot_token": fakes::telegram::BOT_TOKEN, "bot_user_id": fakes::telegram::BOT_ID, "bot_username": "again_bot"});
    let bot = w.add(&["telegram"], &bot);
    w.telegram.revoke_token(fakes::telegram::BOT_TOKEN);
    let removed = w.cli(&["rm", &bot], None);
    assert!(removed.contains("already dead"), "{removed}");
    // A provider that does not answer keeps the row.
    let alive_slack = w.add(&["slack"], &again);
    w.slack
        .faults()
        .inject(Fault::status("/auth.revoke", 503, json!({})).times(100));
    let kept = w.cli_output(&["rm", &alive_slack], None);
    assert!(!kept.status.success());
    assert!(String::from_utf8_lossy(&kept.stderr).contains("kept"));
    assert!(w.cli_output(&["show", &alive_slack], None).status.success());
}
