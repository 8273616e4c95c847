//! Every fake provider on loopback, for a server started by hand or by a
//! script (`scripts/schemathesis.sh`): prints the environment that points
//! `integrations serve` at them, one `NAME=value` line each, then an empty
//! line, and serves until it is killed.
//!
//! ```sh
//! cargo run -p fakes --bin fakes-serve
//! ```

use std::io::Write;

use fakes::gmail::{self, FakeGmail};
use fakes::resend::FakeResend;
use fakes::slack::FakeSlack;
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
    let env = [
        ("TELLER_API_BASE", teller.base_url().to_string()),
        ("GMAIL_API_BASE", gmail.api_base()),
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
    ];
    let mut out = std::io::stdout().lock();
    for (name, value) in env {
        writeln!(out, "{name}={value}")?;
    }
    writeln!(out)?;
    out.flush()?;
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
