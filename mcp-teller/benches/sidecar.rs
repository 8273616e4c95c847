//! mcp-teller speed: cold start (spawn → `tools/list` answer, median of 20),
//! the `teller_list_enrollments` round trip over stdio including the grant
//! re-check and the audit write (p50/p99 of 5,000), and peak RSS.
//! Times are printed beside those of a bare rmcp stdio server measured
//! alongside (`support::serve_bare_if_asked`).
//!
//! ```sh
//! cargo bench -p mcp-teller --bench sidecar
//! ```

#[path = "../../benches/support.rs"]
mod support;

use common::config::DecryptedConfig;
use common::crypto::Keyring;
use common::model::{IntegrationType, Scope};
use common::store::NewIntegration;
use zeroize::Zeroizing;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-teller");
const STARTS: usize = 20;
const CALLS: usize = 5_000;

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
    let env = [
        ("INTEGRATIONS_DB", db.as_str()),
        ("INTEGRATIONS_KEYS", keys.as_str()),
        ("INTEGRATIONS_USER_ID", "u1"),
        ("INTEGRATIONS_PROFILE_ID", "prof_a"),
    ];

    support::cold_starts(SIDECAR, &env, STARTS).await?;

    let (client, pid) = support::spawn(SIDECAR, &env).await?;
    support::round_trips(
        "teller_list_enrollments round trip (re-check + audit write)",
        &client,
        "teller_list_enrollments",
        Default::default(),
        CALLS,
    )
    .await?;
    support::print_memory(pid, CALLS)?;
    client.cancel().await?;
    Ok(())
}

async fn seed(db: &str, keyring: &Keyring) -> anyhow::Result<()> {
    let store = support::store_with_profile(db).await?;
    for (n, bank) in ["PNC", "Chase"].iter().enumerate() {
        let json = format!(
            r#"{{"enrollment_id":"enr_{n}","access_token":"test_token_{n}","institution_name":"{bank}"}}"#
        );
        let config =
            DecryptedConfig::validate(IntegrationType::Teller, Zeroizing::new(json.into_bytes()))?;
        let new = NewIntegration {
            user_id: "u1".into(),
            kind: IntegrationType::Teller,
            label: None,
            is_default: false,
            scope: Scope::Agents,
            profile_ids: vec!["prof_a".into()],
            bound_profile_id: None,
        };
        store.add_integration(keyring, &new, &config).await?;
    }
    Ok(())
}
