//! mcp-notify speed: cold start (spawn → `tools/list` answer, median of 20),
//! and the `notify_user` round trip over stdio to a webhook receiver on
//! loopback, including the grant re-check, the delivery, the
//! `notification_log` row and the audit write (p50/p99 of 2,000).
//! Times are printed beside those of a bare rmcp stdio server measured
//! alongside (`support::serve_bare_if_asked`).
//!
//! ```sh
//! cargo bench -p mcp-notify --bench notify
//! ```

use testkit::bench as support;

use fakes::webhook::FakeWebhook;
use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use serde_json::json;
use store::NewIntegration;
use vault::Keyring;
use zeroize::Zeroizing;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-notify");
const STARTS: usize = 20;
const CALLS: usize = 2_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if support::serve_bare_if_asked().await? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let keys = Keyring::generate_entry();
    let receiver = FakeWebhook::start().await?;
    seed(&db, &Keyring::parse(&keys)?, &receiver.url("/hook")).await?;
    let env = [
        ("INTEGRATIONS_DB", db.as_str()),
        ("INTEGRATIONS_KEYS", keys.as_str()),
        ("INTEGRATIONS_USER_ID", "u1"),
        ("INTEGRATIONS_PROFILE_ID", "prof_a"),
        ("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE", "1"),
        ("NOTIFY_MAX_PER_MINUTE", "1000000"),
    ];

    support::cold_starts(SIDECAR, &env, STARTS).await?;

    let (client, pid) = support::spawn(SIDECAR, &env).await?;
    let serde_json::Value::Object(arguments) = json!({"message": "**bench**: done"}) else {
        unreachable!()
    };
    support::round_trips(
        "notify_user round trip to a loopback webhook (re-check + delivery + log + audit)",
        &client,
        "notify_user",
        arguments,
        CALLS,
    )
    .await?;
    anyhow::ensure!(
        receiver.received().len() == CALLS,
        "every notification arrived once"
    );
    support::print_memory(pid, CALLS)?;
    client.cancel().await?;
    Ok(())
}

async fn seed(db: &str, keyring: &Keyring, url: &str) -> anyhow::Result<()> {
    let store = support::store_with_profile(db).await?;
    let json = json!({"url": url, "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}).to_string();
    let config =
        DecryptedConfig::validate(IntegrationType::Webhook, Zeroizing::new(json.into_bytes()))?;
    let new = NewIntegration {
        user_id: "u1".into(),
        kind: IntegrationType::Webhook,
        label: None,
        is_default: true,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
    };
    store.add_integration(keyring, &new, &config).await?;
    Ok(())
}
