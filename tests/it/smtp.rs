//! Email through the user's own SMTP server over HTTP (issue 26): an
//! integration added with `POST /v1/integrations`, then a platform
//! notification (`POST /v1/notifications`) and an agent's `notify_user`
//! over `/mcp/notify` with a capability token each put one message in a
//! real SMTP server's mailbox (aiosmtpd, `fakes::smtp`); the login is the
//! row's identity: no PATCH moves it, and another user cannot add it.

use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use testkit::fakes::smtp::{SmtpOptions, SmtpServer};
use testkit::{Account, Backend, Server};

#[tokio::test]
async fn an_smtp_email_added_over_the_api_carries_platform_and_agent_notifications() {
    let db = Backend::sqlite("smtp");
    let keys = testkit::cli::run(&db.url, "", &["keys", "generate"])
        .trim()
        .to_string();
    Account::seed(&db.url, &keys);
    testkit::cli::run(
        &db.url,
        &keys,
        &[
            "profiles",
            "add",
            "prof_other",
            "--user",
            Account::OTHER,
            "--slug",
            "other",
        ],
    );
    let smtp_dir = db.dir().join("smtp");
    std::fs::create_dir(&smtp_dir).unwrap();
    let options = SmtpOptions::starttls();
    let smtp = SmtpServer::start(&smtp_dir, &options).unwrap();
    let ca = smtp.ca.display().to_string();
    let served = Server::start(
        &testkit::bin("integrations"),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("INTEGRATIONS_DB", db.url.as_str()),
            ("INTEGRATIONS_KEYS", keys.as_str()),
            ("SMTP_CA_PATH", ca.as_str()),
            ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1"),
        ],
    )
    .await;
    let token = |user: &str| {
        testkit::cli::run(&db.url, &keys, &["tokens", "create", "--user", user])
            .trim()
            .to_string()
    };
    let (mine, theirs) = (token(Account::USER), token(Account::OTHER));
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        http.request(method, format!("{}{path}", served.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let config = json!({"provider": "smtp", "smtp_host": "localhost", "smtp_port": smtp.port,
        "smtp_username": options.username, "smtp_password": options.password,
        "from_address": "alerts@example.com", "to_address": "amouzou@example.com"});
    let created = send(
        reqwest::Method::POST,
        "/v1/integrations",
        &mine,
        json!({"type": "email", "config": config}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["config"]["smtp_password"], "********");
    let id = created["id"].as_str().unwrap().to_string();

    // The login belongs to its row: not patched, not added by another user.
    let moved = send(
        reqwest::Method::PATCH,
        &format!("/v1/integrations/{id}"),
        &mine,
        json!({"config": {"smtp_username": "someone@example.com"}}),
    )
    .await
    .unwrap();
    assert_eq!(moved.status(), StatusCode::BAD_REQUEST);
    let taken = send(
        reqwest::Method::POST,
        "/v1/integrations",
        &theirs,
        json!({"type": "email", "config": config}),
    )
    .await
    .unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let taken = taken.text().await.unwrap();
    assert!(!taken.contains(Account::USER), "{taken}");

    // A platform notification.
    let notified: Value = send(
        reqwest::Method::POST,
        "/v1/notifications",
        &mine,
        json!({"profile_id": Account::VZFIN, "message": "**Nightly report** is ready", "title": "Report", "channels": ["email"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(notified["results"][0]["status"], "sent", "{notified}");
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(smtp.messages()[0]["headers"]["subject"], "Report");

    // An agent's notify_user over /mcp/notify with a capability token.
    let minted: Value = send(
        reqwest::Method::POST,
        "/v1/sessions",
        &mine,
        json!({"profile_id": Account::VZFIN, "session_id": "sess_smtp"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let notify = &minted["plan"]["mcpServers"]["notify"];
    let bearer = notify["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(notify["url"].as_str().unwrap())
            .auth_header(bearer),
    );
    let agent = ClientConfig::default().serve(transport).await.unwrap();
    let sent = testkit::mcp::ok(
        testkit::mcp::call(
            &agent,
            "notify_user",
            json!({"message": "done", "title": "From the agent"}),
        )
        .await,
    );
    assert_eq!(sent["channel"], "email");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["headers"]["subject"], "From the agent");
    agent.cancel().await.unwrap();
}
