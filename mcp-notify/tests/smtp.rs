//! Email through the user's own SMTP server, end to end: `mcp-notify`
//! spawned as the agent runtime spawns it, and `integrations test`, against
//! a real SMTP server nobody here wrote (Python's aiosmtpd, `fakes::smtp`)
//! with the test CA: what arrives, parsed back; what each reply of the
//! server does to the notification, its log row and the integration.

use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use testkit::Account;
use testkit::fakes::smtp::{SmtpOptions, SmtpServer};
use testkit::mcp::{call, err, ok};

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-notify");
const USER: &str = Account::USER;

/// A store with the example account, whose Email integration sends
/// through `smtp`.
struct World {
    db: testkit::Database,
    keys: String,
    smtp: SmtpServer,
    email_id: String,
}

impl World {
    /// The server started with `server`; the integration's password is
    /// `password` (the server's when `None`).
    fn new(server: SmtpOptions, password: Option<&str>) -> Self {
        let db = testkit::Backend::sqlite("smtp");
        let smtp_dir = db.dir().join("smtp");
        std::fs::create_dir(&smtp_dir).unwrap();
        let smtp = SmtpServer::start(&smtp_dir, &server).unwrap();
        let mut w = Self {
            db,
            keys: String::new(),
            smtp,
            email_id: String::new(),
        };
        w.keys = testkit::cli::run(&w.db_url(), "", &["keys", "generate"])
            .trim()
            .to_string();
        Account::seed(&w.db_url(), &w.keys);
        let config = json!({"provider": "smtp", "smtp_host": "localhost", "smtp_port": w.smtp.port,
            "smtp_username": server.username, "smtp_password": password.unwrap_or(&server.password),
            "from_address": "alerts@example.com", "to_address": "amouzou@example.com"});
        w.email_id = testkit::cli::run_with_stdin(
            &w.db_url(),
            &w.keys,
            &["add", "email", "--user", USER, "--config", "-"],
            &config.to_string(),
        )
        .trim()
        .to_string();
        w
    }

    fn db_url(&self) -> String {
        self.db.url.clone()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INTEGRATIONS_DB", self.db_url()),
            ("INTEGRATIONS_KEYS", self.keys.clone()),
            ("SMTP_CA_PATH", self.smtp.ca.display().to_string()),
            // The server listens on loopback.
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1".into()),
            ("NOTIFY_DEADLINE_MS", "10000".into()),
        ]
    }

    /// `integrations <args>` with this world's environment: its stdout,
    /// and whether it succeeded.
    fn cli(&self, args: &[&str]) -> (String, bool) {
        let out = testkit::cli::command(&self.db_url(), &self.keys, args)
            .envs(self.env())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
            out.status.success(),
        )
    }

    /// The sidecar for the default profile, spawned as the runtime does.
    async fn sidecar(&self) -> RunningService<RoleClient, ()> {
        let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
            cmd.env_clear()
                .envs(self.env())
                .env("INTEGRATIONS_USER_ID", USER)
                .env("INTEGRATIONS_PROFILE_ID", Account::VZFIN)
                .env("INTEGRATIONS_SESSION_ID", "sess_smtp");
        });
        ().serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    /// The `notification_log` rows: status, attempts, provider message id.
    async fn log(&self) -> Vec<(String, i64, Option<String>)> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url())
            .await
            .unwrap();
        sqlx::query_as(
            "SELECT status, attempts, provider_message_id FROM notification_log ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }

    /// The integration's status.
    fn status(&self) -> String {
        let (shown, done) = self.cli(&["show", &self.email_id, "--json"]);
        assert!(done, "{shown}");
        let shown: Value = serde_json::from_str(&shown).unwrap();
        shown["status"].as_str().unwrap().to_string()
    }

    /// How many times the server was sent a message (DATA).
    fn data_commands(&self) -> usize {
        self.smtp
            .events()
            .iter()
            .filter(|e| e["event"] == "data")
            .count()
    }
}

#[tokio::test]
async fn notify_user_sends_one_whole_message_through_the_users_server() {
    let w = World::new(SmtpOptions::starttls(), None);
    let agent = w.sidecar().await;
    let sent = ok(call(
        &agent,
        "notify_user",
        json!({"message": "**Rent** paid: 1,200 €", "title": "Loyer payé ✓", "channel": "email"}),
    )
    .await);
    let messages = w.smtp.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["headers"]["subject"], "Loyer payé ✓");
    assert_eq!(m["headers"]["to"], "amouzou@example.com");
    assert_eq!(m["headers"]["auto-submitted"], "auto-generated");
    let id = sent["notification_id"].as_str().unwrap();
    let message_id = format!("<{id}@example.com>");
    assert_eq!(m["headers"]["message-id"], message_id.as_str());
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text/plain");
    assert!(
        parts[0]["content"]
            .as_str()
            .unwrap()
            .contains("Rent paid: 1,200 €"),
        "{m}"
    );
    assert_eq!(parts[1]["type"], "text/html");
    assert!(
        parts[1]["content"]
            .as_str()
            .unwrap()
            .contains("<b>Rent</b> paid"),
        "{m}"
    );
    assert_eq!(w.log().await, [("sent".into(), 1, Some(message_id))]);
    agent.cancel().await.unwrap();

    // The operator's test goes the same way.
    let (out, done) = w.cli(&["test", &w.email_id]);
    assert!(done, "{out}");
    assert_eq!(w.smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_busy_server_is_tried_again_and_takes_one_message() {
    let w = World::new(
        SmtpOptions {
            replies: vec!["451", "451"],
            ..SmtpOptions::starttls()
        },
        None,
    );
    let agent = w.sidecar().await;
    ok(call(
        &agent,
        "notify_user",
        json!({"message": "third time lucky"}),
    )
    .await);
    assert_eq!(w.smtp.messages().len(), 1);
    assert_eq!(w.data_commands(), 3);
    let log = w.log().await;
    assert_eq!((log[0].0.as_str(), log[0].1), ("sent", 3));
}

#[tokio::test]
async fn a_rejection_is_final_and_says_what_the_server_said() {
    let w = World::new(
        SmtpOptions {
            replies: vec!["554"],
            ..SmtpOptions::starttls()
        },
        None,
    );
    let agent = w.sidecar().await;
    let refused = err(call(&agent, "notify_user", json!({"message": "spam?"})).await);
    assert!(
        refused.contains("554") && refused.contains("rejected by policy"),
        "{refused}"
    );
    assert_eq!(w.data_commands(), 1, "not tried again");
    assert!(w.smtp.messages().is_empty());
    assert_eq!(w.log().await[0].0, "failed");
    assert_eq!(w.status(), "active");
}

#[tokio::test]
async fn refused_credentials_mark_the_integration_needs_reauth_and_show_no_secret() {
    let w = World::new(SmtpOptions::starttls(), Some("an-old-app-password"));
    let agent = w.sidecar().await;
    let refused = err(call(&agent, "notify_user", json!({"message": "hello"})).await);
    assert!(refused.contains("refused the credentials"), "{refused}");
    assert!(
        !refused.contains("an-old-app-password") && !refused.contains("app-password"),
        "{refused}"
    );
    assert_eq!(w.status(), "needs_reauth");
    assert!(w.smtp.messages().is_empty());
}

#[tokio::test]
async fn a_loss_after_the_message_is_unknown_and_never_sent_again() {
    let w = World::new(
        SmtpOptions {
            replies: vec!["drop"],
            ..SmtpOptions::starttls()
        },
        None,
    );
    let agent = w.sidecar().await;
    let args = json!({"message": "pay the rent", "idempotency_key": "rent-2026-12"});
    let lost = err(call(&agent, "notify_user", args.clone()).await);
    assert!(lost.contains("may have been delivered"), "{lost}");
    assert_eq!(w.log().await[0].0, "unknown");
    let again = err(call(&agent, "notify_user", args).await);
    assert!(again.contains("may already have been delivered"), "{again}");
    assert_eq!(w.data_commands(), 1, "never sent twice");
    assert_eq!(w.smtp.messages().len(), 1, "the server took the one");
}

#[tokio::test]
async fn a_server_without_starttls_is_never_sent_the_credentials() {
    let w = World::new(
        SmtpOptions {
            security: "none",
            ..SmtpOptions::starttls()
        },
        None,
    );
    let agent = w.sidecar().await;
    let refused = err(call(&agent, "notify_user", json!({"message": "hello"})).await);
    assert!(refused.contains("STARTTLS"), "{refused}");
    assert!(!w.smtp.events().iter().any(|e| e["event"] == "auth"));
}
