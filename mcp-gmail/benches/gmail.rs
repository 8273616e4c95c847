//! mcp-gmail speed: cold start (spawn → `tools/list` answer, which reads the
//! grant's scopes; median of 20), and the `gmail_search` round trip over
//! stdio against the fake Gmail on loopback: grant re-check, token from the
//! encrypted config, one list and one metadata fetch per match, audit write
//! (p50/p99 of 2,000).
//! Times are printed beside those of a bare rmcp stdio server measured
//! alongside (`support::serve_bare_if_asked`).
//!
//! ```sh
//! cargo bench -p mcp-gmail --bench gmail
//! ```

use testkit::bench as support;

use fakes::gmail::{self, FakeGmail};
use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use serde_json::json;
use store::NewIntegration;
use vault::Keyring;
use zeroize::Zeroizing;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-gmail");
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
    seed(&db, &Keyring::parse(&keys)?).await?;
    let fake = FakeGmail::start().await?;
    let (api, token_url) = (fake.api_base(), fake.token_url());
    let env = [
        ("INTEGRATIONS_DB", db.as_str()),
        ("INTEGRATIONS_KEYS", keys.as_str()),
        ("INTEGRATIONS_USER_ID", "u1"),
        ("INTEGRATIONS_PROFILE_ID", "prof_a"),
        ("GMAIL_API_BASE", api.as_str()),
        ("GOOGLE_TOKEN_URL", token_url.as_str()),
        ("GMAIL_CLIENT_ID", gmail::CLIENT_ID),
        ("GMAIL_CLIENT_SECRET", gmail::CLIENT_SECRET),
    ];

    support::cold_starts(SIDECAR, &env, STARTS).await?;

    let (client, pid) = support::spawn(SIDECAR, &env).await?;
    let arguments = json!({"query": "lunch", "max_results": 10});
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    support::round_trips(
        "gmail_search round trip (re-check + token + 1 list + 2 metadata fetches + audit write)",
        &client,
        "gmail_search",
        arguments,
        CALLS,
    )
    .await?;
    println!("  token refreshes at Google: {}", fake.refreshes());
    support::print_memory(pid, CALLS)?;
    client.cancel().await?;
    Ok(())
}

async fn seed(db: &str, keyring: &Keyring) -> anyhow::Result<()> {
    let store = support::store_with_profile(db).await?;
    let json = json!({"email": gmail::EMAIL, "refresh_token": gmail::REFRESH_TOKEN, "scopes": gmail::SCOPES.split(' ').collect::<Vec<_>>()});
    let config = DecryptedConfig::validate(
        IntegrationType::Gmail,
        Zeroizing::new(json.to_string().into_bytes()),
    )?;
    let new = NewIntegration {
        user_id: "u1".into(),
        kind: IntegrationType::Gmail,
        label: None,
        is_default: false,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
    };
    store.add_integration(keyring, &new, &config).await?;
    Ok(())
}
