//! Every fake provider on loopback, for a server started by hand or by a
//! script (`scripts/schemathesis.sh`, the browser tests): prints the
//! environment that points `integrations serve` at them, one `NAME=value`
//! line each, then an empty line, and serves until it is killed.
//! `FAKES_RECORDED_URL` answers what the fakes recorded, as JSON, for a
//! test that drives them from outside (a browser). A real SMTP server
//! (`fakes::smtp`, which needs python3 with aiosmtpd) listens beside them,
//! its CA in `SMTP_CA_PATH` and its login in `SMTP_TEST_*`.
//!
//! ```sh
//! cargo run -p fakes --bin fakes-serve
//! ```

use std::io::Write;
use std::sync::Arc;

use axum::routing::get;

use fakes::gmail::{self, FakeGmail};
use fakes::resend::FakeResend;
use fakes::slack::FakeSlack;
use fakes::smtp::{SmtpOptions, SmtpServer};
use fakes::telegram::{self, FakeTelegram};
use fakes::teller::FakeTeller;
use fakes::webhook::FakeWebhook;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let teller = FakeTeller::start().await?;
    let gmail = FakeGmail::start().await?;
    let slack = FakeSlack::start().await?;
    let telegram = FakeTelegram::start().await?;
    let resend = FakeResend::start().await?;
    let webhook = FakeWebhook::start().await?;
    let smtp_dir = tempfile::tempdir()?;
    let smtp_options = SmtpOptions {
        password: "CANARY-smtp-password-4Wq9".into(),
        ..SmtpOptions::starttls()
    };
    let smtp = Arc::new(SmtpServer::start(smtp_dir.path(), &smtp_options)?);
    let env = [
        ("TELLER_API_BASE", teller.base_url().to_string()),
        ("TELLER_CONNECT_URL", teller.connect_url()),
        ("TELLER_APPLICATION_ID", "app_fake_teller".into()),
        ("GMAIL_API_BASE", gmail.api_base()),
        ("GOOGLE_AUTHORIZE_URL", gmail.authorize_url()),
        ("GOOGLE_TOKEN_URL", gmail.token_url()),
        ("GOOGLE_REVOKE_URL", gmail.revoke_url()),
        ("GMAIL_CLIENT_ID", gmail::CLIENT_ID.into()),
        ("GMAIL_CLIENT_SECRET", gmail::CLIENT_SECRET.into()),
        ("SLACK_API_BASE", slack.base_url()),
        ("TELEGRAM_API_BASE", telegram.base_url()),
        (
            "PLATFORM_TELEGRAM_BOT_TOKEN",
            telegram::PLATFORM_BOT_TOKEN.into(),
        ),
        ("RESEND_API_BASE", resend.base_url()),
        ("INBOUND_FORWARD_URL", webhook.url("/inbound")),
        // The fake webhook receiver listens on loopback.
        ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1".into()),
        ("WEBHOOK_RECEIVER_URL", webhook.url("")),
        ("SMTP_CA_PATH", smtp.ca.display().to_string()),
        ("SMTP_TEST_PORT", smtp.port.to_string()),
        ("SMTP_TEST_USERNAME", smtp_options.username.clone()),
        ("SMTP_TEST_PASSWORD", smtp_options.password.clone()),
    ];
    let (gmail, webhook) = (Arc::new(gmail), Arc::new(webhook));
    let recorded = axum::Router::new().route(
        "/recorded",
        get(move || {
            let (gmail, webhook, smtp) = (gmail.clone(), webhook.clone(), smtp.clone());
            async move {
                axum::Json(serde_json::json!({
                    "google_revocations": gmail.revoked().len(),
                    "webhook_deliveries": webhook.received().iter().map(|d| d.path.clone()).collect::<Vec<_>>(),
                    "smtp_subjects": smtp.messages().iter().map(|m| m["headers"]["subject"].clone()).collect::<Vec<_>>(),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recorded_url = format!("http://{}/recorded", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, recorded).await });
    let mut out = std::io::stdout().lock();
    for (name, value) in env {
        writeln!(out, "{name}={value}")?;
    }
    writeln!(out, "FAKES_RECORDED_URL={recorded_url}")?;
    writeln!(out)?;
    out.flush()?;
    drop(out);
    std::future::pending::<()>().await;
    drop(smtp_dir);
    Ok(())
}
