//! `mcp-gmail` spawned as the agent runtime spawns it, driven through rmcp's
//! client, against the fake Gmail and Google OAuth, while an operator
//! changes the store with the `integrations` CLI.

use std::process::{Output, Stdio};
use std::time::Duration;

use fakes::Fault;
use fakes::gmail::{self, FakeGmail};
use mail_parser::MessageParser;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use testkit::Account;
use testkit::mcp::{call, err, ok};

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-gmail");
const USER: &str = Account::USER;
const ALL_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
];

/// A store with two profiles of one user (Gmail granted to `prof_vzfin`), a
/// keyring, and the fake Gmail.
struct World {
    dir: tempfile::TempDir,
    keys: String,
    gmail: FakeGmail,
    id: String,
}

impl World {
    async fn new() -> Self {
        Self::with_scopes(ALL_SCOPES).await
    }

    async fn with_scopes(scopes: &[&str]) -> Self {
        Self::build(scopes, Vec::new()).await
    }

    /// With one more HTML-only message per `(id, html)` in the fake mailbox.
    async fn with_html(extra: Vec<(&'static str, String)>) -> Self {
        Self::build(ALL_SCOPES, extra).await
    }

    async fn build(scopes: &[&str], extra: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut world = Self {
            dir,
            keys: String::new(),
            gmail: FakeGmail::start_with_html(extra).await.unwrap(),
            id: String::new(),
        };
        world.keys = world.cli(&["keys", "generate"], None).trim().to_string();
        Account::seed(&world.db_url(), &world.keys);
        let config =
            json!({"email": gmail::EMAIL, "refresh_token": gmail::REFRESH_TOKEN, "scopes": scopes});
        world.id = world
            .cli(
                &[
                    "add",
                    "gmail",
                    "--user",
                    USER,
                    "--agents",
                    "prof_vzfin",
                    "--config",
                    "-",
                ],
                Some(&config.to_string()),
            )
            .trim()
            .to_string();
        world
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
            ("GMAIL_API_BASE", self.gmail.api_base()),
            ("GOOGLE_TOKEN_URL", self.gmail.token_url()),
            ("GOOGLE_REVOKE_URL", self.gmail.revoke_url()),
            ("GMAIL_CLIENT_ID", gmail::CLIENT_ID.into()),
            ("GMAIL_CLIENT_SECRET", gmail::CLIENT_SECRET.into()),
        ]
    }

    fn cli_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = std::process::Command::new(testkit::cli::integrations());
        cmd.args(args)
            .env_clear()
            .envs(self.env())
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

    /// The Gmail row as `integrations show --json` prints it.
    fn shown(&self) -> Value {
        serde_json::from_str(&self.cli(&["show", &self.id, "--json"], None)).unwrap()
    }

    /// Spawns the sidecar for `profile` the way the agent runtime does.
    async fn sidecar(
        &self,
        profile: &str,
        extra: &[(&str, &str)],
    ) -> RunningService<RoleClient, ()> {
        let env = self.env();
        let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
            cmd.env_clear()
                .envs(env)
                .env("INTEGRATIONS_USER_ID", USER)
                .env("INTEGRATIONS_PROFILE_ID", profile)
                .env("INTEGRATIONS_SESSION_ID", "sess_test");
            for (k, v) in extra {
                cmd.env(k, v);
            }
        });
        ().serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    async fn audit(&self) -> Vec<(String, Option<String>, String, Option<String>)> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url())
            .await
            .unwrap();
        sqlx::query_as("SELECT tool, integration_id, decision, detail FROM audit_log ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn search_read_threads_labels_and_attachments() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;

    let found = ok(call(&agent, "gmail_search", json!({"query": "lunch"})).await);
    let ids: Vec<&str> = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&gmail::MSG_PLAIN), "{found}");
    let plain = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == gmail::MSG_PLAIN)
        .unwrap();
    assert_eq!(plain["from"], "Ana Pérez <ana@example.com>");
    assert_eq!(plain["subject"], "Lunch on Friday?");
    assert_eq!(plain["thread_id"], gmail::THREAD_LUNCH);

    let paged = ok(call(
        &agent,
        "gmail_search",
        json!({"query": "", "max_results": 2}),
    )
    .await);
    assert_eq!(paged["messages"].as_array().unwrap().len(), 2);
    let next = paged["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = ok(call(
        &agent,
        "gmail_search",
        // Written as a float, as prompts for the product's server did.
        json!({"query": "", "max_results": 2.0, "page_token": next}),
    )
    .await);
    assert_eq!(second["messages"].as_array().unwrap().len(), 2);
    assert_ne!(
        second["messages"][0]["message_id"],
        paged["messages"][0]["message_id"]
    );

    let nested = ok(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": gmail::MSG_NESTED}),
    )
    .await);
    assert_eq!(nested["subject"], "Rechnung für März");
    assert!(
        nested["body"].as_str().unwrap().contains("Résumé"),
        "{nested}"
    );
    let names: Vec<&str> = nested["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["expenses.csv", "invoice.pdf"]);

    let html = ok(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": gmail::MSG_HTML}),
    )
    .await);
    let body = html["body"].as_str().unwrap();
    assert!(
        body.contains("View statement (https://bank.example/s/1)"),
        "{body}"
    );
    assert!(!body.contains('<') && !body.contains("&amp;"), "{body}");

    let unpadded = ok(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": gmail::MSG_UNPADDED}),
    )
    .await);
    assert_eq!(unpadded["subject"], "Überweisung bestätigt");
    assert!(!unpadded["body"].as_str().unwrap().is_empty());

    let long = ok(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": gmail::MSG_LONG}),
    )
    .await);
    assert_eq!(long["truncated"], true);
    assert!(long["body"].as_str().unwrap().contains("truncated"));
    let longer = ok(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": gmail::MSG_LONG, "max_chars": 1_000_000}),
    )
    .await);
    assert!(longer["body"].as_str().unwrap().chars().count() > 20_000 - 1);
    assert!(longer["body"].as_str().unwrap().chars().count() < 20_300);

    let thread = ok(call(
        &agent,
        "gmail_read_thread",
        json!({"thread_id": gmail::THREAD_LUNCH}),
    )
    .await);
    let subjects: Vec<&str> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Lunch on Friday?", "Re: Lunch on Friday?"]);

    let labels = ok(call(&agent, "gmail_list_labels", json!({})).await);
    let names: Vec<String> = labels["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    assert!(
        labels["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "Finance" && l["type"] == "user")
    );

    let csv = ok(call(
        &agent,
        "gmail_get_attachment",
        json!({"message_id": gmail::MSG_NESTED, "attachment_id": gmail::ATTACHMENT_CSV}),
    )
    .await);
    assert_eq!(csv["mime_type"], "text/csv");
    assert!(csv["text"].as_str().unwrap().contains(','), "{csv}");

    let pdf = call(
        &agent,
        "gmail_get_attachment",
        json!({"message_id": gmail::MSG_NESTED, "attachment_id": gmail::ATTACHMENT_PDF}),
    )
    .await;
    let blob = pdf
        .content
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .find(|c| c["type"] == "resource")
        .expect("an embedded resource")["resource"]
        .clone();
    assert_eq!(blob["mimeType"], "application/pdf");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob["blob"].as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"%PDF-"));

    let big = err(call(
        &agent,
        "gmail_get_attachment",
        json!({"message_id": gmail::MSG_BIG_ATTACHMENT, "attachment_id": gmail::ATTACHMENT_BIG}),
    )
    .await);
    assert!(big.contains("6.0 MiB") && big.contains("5 MiB"), "{big}");
    assert!(
        !w.gmail
            .faults()
            .requests()
            .iter()
            .any(|r| r.path.contains(gmail::ATTACHMENT_BIG)),
        "a refused attachment was downloaded"
    );

    let missing = err(call(
        &agent,
        "gmail_read_message",
        json!({"message_id": "18c1ffffffffffff"}),
    )
    .await);
    assert!(missing.contains("gmail_search"), "{missing}");
    let missing = err(call(
        &agent,
        "gmail_read_thread",
        json!({"thread_id": "18c1ffffffffffff"}),
    )
    .await);
    assert!(missing.contains("no thread"), "{missing}");

    // Ids go into the request path: anything not shaped like one is refused
    // before Gmail is asked.
    let before = w.gmail.faults().requests().len();
    for (tool, args) in [
        ("gmail_read_message", json!({"message_id": "../labels"})),
        ("gmail_read_message", json!({"message_id": "x?format=raw"})),
        ("gmail_read_thread", json!({"thread_id": "../../profile"})),
        (
            "gmail_get_attachment",
            json!({"message_id": gmail::MSG_NESTED, "attachment_id": "../../../labels"}),
        ),
    ] {
        let refused = err(call(&agent, tool, args).await);
        assert!(refused.contains("not a Gmail id"), "{refused}");
    }
    assert_eq!(w.gmail.faults().requests().len(), before);
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn sent_mail_and_drafts_are_valid_rfc_2822_with_threading() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let sent = ok(call(
        &agent,
        "gmail_send_message",
        json!({
            "to": "Zoë Müller <zoe@example.com>, bo@example.com",
            "cc": "\"Pérez, Ana\" <ana@example.com>",
            "bcc": "audit@example.com",
            "subject": "Réunion à 15h — ça marche ✅",
            "body": "Bonjour Zoë,\n\nÀ tout à l'heure. 日本語もOK.\n",
        }),
    )
    .await);
    let received = w.gmail.sent();
    assert_eq!(received.len(), 1);
    assert_eq!(sent["message_id"], received[0].id.as_str());
    let mail = MessageParser::default()
        .parse(&received[0].raw)
        .expect("RFC 2822");
    assert_eq!(
        mail.from().unwrap().first().unwrap().address(),
        Some(gmail::EMAIL)
    );
    assert_eq!(mail.subject(), Some("Réunion à 15h — ça marche ✅"));
    let to: Vec<(Option<&str>, Option<&str>)> = mail
        .to()
        .unwrap()
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    assert_eq!(
        to,
        [
            (Some("Zoë Müller"), Some("zoe@example.com")),
            (None, Some("bo@example.com"))
        ]
    );
    assert_eq!(
        mail.cc().unwrap().first().unwrap().name(),
        Some("Pérez, Ana")
    );
    assert_eq!(
        mail.bcc().unwrap().first().unwrap().address(),
        Some("audit@example.com")
    );
    // Text bodies travel with CRLF line ends.
    assert_eq!(
        mail.body_text(0).unwrap(),
        "Bonjour Zoë,\r\n\r\nÀ tout à l'heure. 日本語もOK.\r\n"
    );
    assert!(mail.in_reply_to().is_empty());

    let reply = ok(call(
        &agent,
        "gmail_send_message",
        json!({"to": "ana@example.com", "subject": "Re: Lunch on Friday?", "body": "Yes!", "in_reply_to": gmail::MSG_PLAIN}),
    )
    .await);
    assert_eq!(reply["thread_id"], gmail::THREAD_LUNCH);
    let received = w.gmail.sent();
    assert_eq!(received[1].thread_id, gmail::THREAD_LUNCH);
    let mail = MessageParser::default().parse(&received[1].raw).unwrap();
    assert_eq!(mail.in_reply_to().as_text(), Some("lunch-1@example.com"));
    assert_eq!(mail.references().as_text(), Some("lunch-1@example.com"));

    // A thread alone answers its latest message.
    let draft = ok(call(
        &agent,
        "gmail_create_draft",
        json!({"to": "ana@example.com", "subject": "Re: Lunch on Friday?", "body": "Or Saturday?", "thread_id": gmail::THREAD_LUNCH}),
    )
    .await);
    assert!(draft["draft_id"].as_str().unwrap().starts_with('r'));
    let drafts = w.gmail.drafts();
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].thread_id, gmail::THREAD_LUNCH);
    let mail = MessageParser::default().parse(&drafts[0].raw).unwrap();
    assert_eq!(mail.in_reply_to().as_text(), Some("lunch-2@example.com"));
    let refs: Vec<&str> = mail
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|r| r.as_ref())
        .collect();
    assert_eq!(refs, ["lunch-1@example.com", "lunch-2@example.com"]);

    // An RFC Message-ID is used as is.
    ok(call(
        &agent,
        "gmail_send_message",
        json!({"to": "ana@example.com", "subject": "Re: Lunch on Friday?", "body": "Noon?", "in_reply_to": "<lunch-2@example.com>", "thread_id": gmail::THREAD_LUNCH}),
    )
    .await);
    let last = w.gmail.sent().pop().unwrap();
    assert_eq!(last.thread_id, gmail::THREAD_LUNCH);
    let mail = MessageParser::default().parse(&last.raw).unwrap();
    assert_eq!(mail.in_reply_to().as_text(), Some("lunch-2@example.com"));

    // A bare one gets its angle brackets.
    ok(call(
        &agent,
        "gmail_send_message",
        json!({"to": "ana@example.com", "subject": "Re: Lunch on Friday?", "body": "Noon!", "in_reply_to": "lunch-2@example.com", "thread_id": gmail::THREAD_LUNCH}),
    )
    .await);
    let last = w.gmail.sent().pop().unwrap();
    let mail = MessageParser::default().parse(&last.raw).unwrap();
    assert_eq!(mail.in_reply_to().as_text(), Some("lunch-2@example.com"));
    let raw = String::from_utf8_lossy(&last.raw);
    assert!(raw.contains("In-Reply-To: <lunch-2@example.com>"), "{raw}");

    let mismatch = err(call(
        &agent,
        "gmail_send_message",
        json!({"to": "ana@example.com", "subject": "x", "body": "x", "in_reply_to": gmail::MSG_PLAIN, "thread_id": "18c1000000000fff"}),
    )
    .await);
    assert!(mismatch.contains("not in thread"), "{mismatch}");
    for bad in [
        json!({"to": "ana@example.com", "subject": "x\r\nBcc: evil@example.com", "body": "x"}),
        json!({"to": "not an address", "subject": "x", "body": "x"}),
        json!({"to": "", "subject": "x", "body": "x"}),
    ] {
        err(call(&agent, "gmail_send_message", bad).await);
    }
    assert_eq!(w.gmail.sent().len(), 4, "a refused message was sent");
    assert!(
        received.iter().all(|s| s.upload),
        "sent through the upload form"
    );
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_written_back_and_reused() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    assert_eq!(w.gmail.refreshes(), 1);
    let shown = w.shown();
    let config = &shown["config"];
    assert_eq!(config["access_token"], "********", "{shown}");
    assert!(config["expires_at"].as_i64().unwrap() > 0);

    // At rest, the token is sealed with the rest of the config.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&w.db_url()).await.unwrap();
    let (sealed,): (String,) =
        sqlx::query_as("SELECT encrypted_config FROM user_integrations WHERE id = $1")
            .bind(&w.id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        sealed.starts_with("v1.") && !sealed.contains("ya29"),
        "{sealed}"
    );

    // Reused, by this sidecar and by a new one.
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    let other = w.sidecar("prof_vzfin", &[]).await;
    ok(call(&other, "gmail_list_labels", json!({})).await);
    assert_eq!(w.gmail.refreshes(), 1);

    // Gmail refuses the token: one refresh, one retry.
    w.gmail.expire_access_tokens();
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    assert_eq!(w.gmail.refreshes(), 2);

    // A token with less than a minute left is refreshed before use.
    w.gmail.set_expires_in(30);
    w.gmail.expire_access_tokens();
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    assert_eq!(w.gmail.refreshes(), 3);
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    assert_eq!(w.gmail.refreshes(), 4);
    agent.cancel().await.unwrap();
    other.cancel().await.unwrap();
}

#[tokio::test]
async fn two_sidecars_refreshing_at_once_both_work() {
    let w = World::new().await;
    let a = w.sidecar("prof_vzfin", &[]).await;
    let b = w.sidecar("prof_vzfin", &[]).await;
    let labels = json!({});
    // Google is slow enough that both refresh at the same moment: both
    // work, one token is stored, the other sidecar's write-back loses.
    w.gmail
        .faults()
        .inject(Fault::delay("/token", Duration::from_millis(500)).times(2));
    let (x, y) = tokio::join!(
        call(&a, "gmail_list_labels", labels.clone()),
        call(&b, "gmail_list_labels", labels.clone())
    );
    ok(x);
    ok(y);
    assert_eq!(w.gmail.refreshes(), 2, "both refreshed");
    // Whichever token was stored serves every sidecar from now on.
    let c = w.sidecar("prof_vzfin", &[]).await;
    for agent in [&a, &b, &c] {
        ok(call(agent, "gmail_list_labels", labels.clone()).await);
    }
    assert_eq!(w.gmail.refreshes(), 2, "a stored token was not reused");
    for agent in [a, b, c] {
        agent.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn a_dead_grant_marks_the_row_and_asks_the_user_to_reconnect() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    w.gmail.kill_grant();
    let message = err(call(&agent, "gmail_search", json!({"query": "lunch"})).await);
    assert!(message.contains("reconnect Gmail"), "{message}");
    assert_eq!(w.shown()["status"], "needs_reauth");
    let mut seen = message;
    seen += &w.cli(&["list", "--user", USER, "--json"], None);
    for (_, _, _, detail) in w.audit().await {
        seen += &detail.unwrap_or_default();
    }
    assert!(
        !seen.contains(gmail::REFRESH_TOKEN),
        "the refresh token leaked"
    );
    assert!(!seen.contains("ya29."), "an access token leaked");
    agent.cancel().await.unwrap();
}

// Multi-threaded: the fake answers `integrations rm` while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_change_shows_on_the_next_call_and_rm_revokes_at_google() {
    let w = World::new().await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    let labels = json!({});
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);

    w.cli(&["scope", &w.id, "--agents", "prof_coding"], None);
    assert!(
        err(call(&agent, "gmail_list_labels", labels.clone()).await).contains("No Gmail account")
    );
    w.cli(&["scope", &w.id, "--all"], None);
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);
    w.cli(&["disable", &w.id], None);
    assert!(
        err(call(&agent, "gmail_list_labels", labels.clone()).await).contains("No Gmail account")
    );
    w.cli(&["enable", &w.id], None);
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);

    // No identity from arguments.
    let coding = w.sidecar("prof_coding", &[]).await;
    w.cli(&["scope", &w.id, "--agents", "prof_vzfin"], None);
    let sneaky = err(call(
        &coding,
        "gmail_search",
        json!({"query": "x", "profile_id": "prof_vzfin", "user_id": USER}),
    )
    .await);
    assert!(sneaky.contains("profile_id"), "{sneaky}");
    assert!(
        err(call(&coding, "gmail_list_labels", labels.clone()).await).contains("No Gmail account")
    );

    let out = w.cli(&["rm", &w.id], None);
    assert!(out.contains("revoked at Google"), "{out}");
    assert_eq!(w.gmail.revoked(), [gmail::REFRESH_TOKEN]);
    assert!(err(call(&agent, "gmail_list_labels", labels).await).contains("No Gmail account"));

    let audit = w.audit().await;
    assert!(
        audit
            .iter()
            .any(|(tool, id, decision, _)| tool == "gmail_list_labels"
                && id.as_deref() == Some(w.id.as_str())
                && decision == "allow")
    );
    assert!(audit.iter().any(|(_, _, decision, _)| decision == "deny"));
    agent.cancel().await.unwrap();
    coding.cancel().await.unwrap();
}

#[tokio::test]
async fn only_the_tools_the_grant_allows_are_listed_or_served() {
    let read_only = World::with_scopes(&["https://www.googleapis.com/auth/gmail.readonly"]).await;
    let agent = read_only.sidecar("prof_vzfin", &[]).await;
    assert_eq!(
        tool_names(&agent).await,
        [
            "gmail_get_attachment",
            "gmail_list_labels",
            "gmail_read_message",
            "gmail_read_thread",
            "gmail_search"
        ]
    );
    let refused = err(call(
        &agent,
        "gmail_send_message",
        json!({"to": "a@example.com", "subject": "x", "body": "x"}),
    )
    .await);
    assert!(refused.contains("does not allow sending"), "{refused}");
    assert!(read_only.gmail.sent().is_empty());
    agent.cancel().await.unwrap();

    let send_only = World::with_scopes(&["https://www.googleapis.com/auth/gmail.send"]).await;
    let agent = send_only.sidecar("prof_vzfin", &[]).await;
    assert_eq!(tool_names(&agent).await, ["gmail_send_message"]);
    let refused = err(call(&agent, "gmail_search", json!({"query": "x"})).await);
    assert!(refused.contains("does not allow reading"), "{refused}");
    agent.cancel().await.unwrap();

    let full = World::new().await;
    let agent = full.sidecar("prof_vzfin", &[]).await;
    assert_eq!(tool_names(&agent).await.len(), 7);
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn faults_are_reported_and_the_sidecar_keeps_serving() {
    let w = World::new().await;
    let agent = w
        .sidecar("prof_vzfin", &[("GMAIL_TIMEOUT_MS", "2500")])
        .await;
    let labels = json!({});
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);
    let rate = |status| json!({"error": {"code": status, "message": "Rate Limit Exceeded", "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}], "status": "RESOURCE_EXHAUSTED"}});

    let label_requests = || {
        w.gmail
            .faults()
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/labels"))
            .count()
    };

    // A 429 honoured with its Retry-After, then success.
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 429, rate(429)).retry_after(1));
    let (started, before) = (std::time::Instant::now(), label_requests());
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(label_requests() - before, 2);
    // A 403 rateLimitExceeded that does not stop: retried a bounded number of times, then reported.
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 403, rate(403)).times(10));
    let before = label_requests();
    let message = err(call(&agent, "gmail_list_labels", labels.clone()).await);
    assert!(message.contains("rate limiting"), "{message}");
    assert_eq!(label_requests() - before, 4, "one try and three retries");
    w.gmail.faults().clear_faults();
    // A wait that fits, then an absurd Retry-After: given up at once, within the deadline.
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 429, rate(429)).retry_after(1));
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 429, rate(429)).retry_after(u64::MAX));
    let absurd = tokio::time::timeout(
        Duration::from_secs(10),
        call(&agent, "gmail_list_labels", labels.clone()),
    )
    .await
    .expect("the call outlived its deadline");
    let message = err(absurd);
    assert!(message.contains("rate limiting"), "{message}");
    ok(call(&agent, "gmail_list_labels", labels.clone()).await);

    // A 401 that persists: one refresh, one retry, then reported.
    let unauthorized = json!({"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}], "status": "UNAUTHENTICATED"}});
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 401, unauthorized).times(2));
    let (before, refreshes) = (label_requests(), w.gmail.refreshes());
    let message = err(call(&agent, "gmail_list_labels", labels.clone()).await);
    assert!(message.contains("refused a freshly issued"), "{message}");
    assert_eq!(label_requests() - before, 2);
    assert_eq!(w.gmail.refreshes() - refreshes, 1);
    assert_eq!(
        w.shown()["status"],
        "active",
        "a 401 alone does not mark the grant dead"
    );

    let server_error = json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}});
    w.gmail
        .faults()
        .inject(Fault::status("/labels", 503, server_error));
    assert!(err(call(&agent, "gmail_list_labels", labels.clone()).await).contains("not answering"));
    w.gmail
        .faults()
        .inject(Fault::delay("/labels", Duration::from_secs(4)));
    assert!(
        err(call(&agent, "gmail_list_labels", labels.clone()).await)
            .contains("did not answer in time")
    );
    w.gmail.faults().inject(Fault::not_json("/labels"));
    assert!(
        err(call(&agent, "gmail_list_labels", labels.clone()).await).contains("could not be read")
    );
    w.gmail.faults().inject(Fault::status(
        "/token",
        500,
        json!({"error": "internal_failure"}),
    ));
    w.gmail.expire_access_tokens();
    assert!(err(call(&agent, "gmail_list_labels", labels.clone()).await).contains("not answering"));

    ok(call(&agent, "gmail_list_labels", labels).await);
    let errors = w
        .audit()
        .await
        .into_iter()
        .filter(|(_, _, d, _)| d == "error")
        .count();
    assert_eq!(errors, 7);
    agent.cancel().await.unwrap();
}

/// The one timing assertion of these tests: a hostile HTML mail of 1 MB
/// reads about as fast as a normal one measured here (a factor and a slack
/// that only work growing faster than the input exceeds), and the sidecar
/// serves the next call.
#[tokio::test]
async fn a_hostile_html_mail_reads_about_as_fast_as_a_normal_one() {
    const SIZE: usize = 1 << 20;
    const NORMAL: &str = "18e4a1b2c3d4e508";
    const HOSTILE: &str = "18e4a1b2c3d4e509";
    let mut normal = String::new();
    for n in 1.. {
        if normal.len() >= SIZE {
            break;
        }
        normal += &format!(
            "<p>Item {n} is <b>ready</b>: <a href=\"https://x.org/{n}\">open</a> &amp; pay</p>\n"
        );
    }
    let w = World::with_html(vec![(NORMAL, normal), (HOSTILE, "<a".repeat(SIZE / 2))]).await;
    let agent = w.sidecar("prof_vzfin", &[]).await;
    ok(call(&agent, "gmail_list_labels", json!({})).await);
    let read = |id: &str| call(&agent, "gmail_read_message", json!({"message_id": id}));

    let started = std::time::Instant::now();
    let first = ok(read(NORMAL).await);
    let normal_took = started.elapsed();
    let text = first["body"].as_str().unwrap();
    assert!(
        text.starts_with("Item 1 is ready: open (https://x.org/1) & pay"),
        "{}",
        &text[..80]
    );
    let budget = normal_took * 20 + Duration::from_secs(2);
    let hostile = tokio::time::timeout(budget, read(HOSTILE))
        .await
        .unwrap_or_else(|_| {
            panic!("not read after {budget:?}; a normal mail took {normal_took:?}")
        });
    let hostile = ok(hostile);
    assert!(hostile["body"].as_str().unwrap().starts_with("<a<a<a"));
    ok(read(NORMAL).await);
    agent.cancel().await.unwrap();
}

#[test]
fn standalone_lists_tools_and_needs_an_identity() {
    let out = std::process::Command::new(SIDECAR)
        .arg("--list-tools")
        .output()
        .unwrap();
    assert!(out.status.success());
    let tools: Value = serde_json::from_slice(&out.stdout).unwrap();
    let send = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gmail_send_message")
        .unwrap();
    assert_eq!(send["annotations"]["readOnlyHint"], false);
    assert_eq!(tools.as_array().unwrap().len(), 7);
    let reads = tools
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["annotations"]["readOnlyHint"] == true)
        .count();
    assert_eq!(reads, 5);

    let out = std::process::Command::new(SIDECAR)
        .env_clear()
        .args(["call", "gmail_list_labels"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INTEGRATIONS_USER_ID"));
}
