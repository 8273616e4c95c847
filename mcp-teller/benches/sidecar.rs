//! mcp-teller speed: cold start (spawn → `initialize` and `tools/list`
//! answers, median of 20), the `teller_list_enrollments` round trip over
//! stdio including the grant re-check and the audit write (p50/p99 of
//! 5,000), and peak RSS; then the same for the relay (the sidecar started
//! with only `INTEGRATIONS_URL` and `INTEGRATIONS_TOKEN`) to an `mcp-teller
//! serve` on the same store, in the same run. Times are printed beside those
//! of a bare rmcp stdio server measured alongside
//! (`support::serve_bare_if_asked`).
//!
//! ```sh
//! cargo bench -p mcp-teller --bench sidecar
//! ```

use testkit::bench as support;

use std::time::{Duration, Instant};

use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use store::{NewIntegration, Store};
use tokio::io::AsyncBufReadExt;
use vault::Keyring;
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
    let store = seed(&db, &Keyring::parse(&keys)?).await?;
    let env = [
        ("INTEGRATIONS_DB", db.as_str()),
        ("INTEGRATIONS_KEYS", keys.as_str()),
        ("INTEGRATIONS_USER_ID", "u1"),
        ("INTEGRATIONS_PROFILE_ID", "prof_a"),
    ];

    println!("direct, with the store and the keyring:");
    measure(
        &env,
        "teller_list_enrollments round trip (re-check + audit write)",
    )
    .await?;

    // The relay: the same calls through `mcp-teller serve` on the same store.
    let (_service, base) = serve(&env).await?;
    let minted = store
        .mint_capability(
            "u1",
            "prof_a",
            "sess_bench",
            &["teller"],
            Duration::from_secs(3600),
            store::Minter::Cli,
        )
        .await?;
    let relay = [
        ("INTEGRATIONS_URL", base.as_str()),
        ("INTEGRATIONS_TOKEN", minted.token.as_str()),
    ];
    println!("relay, with only the URL and the token, to mcp-teller serve:");
    measure(
        &relay,
        "teller_list_enrollments round trip through the relay (token check + re-check + audit write)",
    )
    .await?;
    http_round_trips(&base, &minted.token, CALLS).await
}

/// Prints p50 and p99 of `n` `teller_list_enrollments` calls POSTed straight
/// to the service, as an HTTP client would: what the relay adds is the
/// difference.
async fn http_round_trips(base: &str, token: &str, n: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"teller_list_enrollments","arguments":{}}}"#;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let answer = http
            .post(format!("{base}/mcp/teller"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body)
            .send()
            .await?
            .text()
            .await?;
        samples.push(t.elapsed());
        anyhow::ensure!(
            answer.contains(r#""enrollments""#),
            "the call failed: {answer}"
        );
    }
    samples.sort();
    println!(
        "the same call POSTed straight to mcp-teller serve, n={n}: p50 {:.0} µs, p99 {:.0} µs",
        samples[n / 2].as_secs_f64() * 1e6,
        samples[n * 99 / 100].as_secs_f64() * 1e6
    );
    Ok(())
}

/// Cold starts, round trips and peak RSS of the sidecar started with `env`.
async fn measure(env: &[(&str, &str)], what: &str) -> anyhow::Result<()> {
    support::cold_starts(SIDECAR, env, STARTS).await?;
    let (client, pid) = support::spawn(SIDECAR, env).await?;
    support::round_trips(
        what,
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

/// `mcp-teller serve` on a free port of loopback (killed on drop), and its base URL.
async fn serve(env: &[(&str, &str)]) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(SIDECAR)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut line = String::new();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await??;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("mcp-teller serve printed {line:?}"))?
        .to_string();
    Ok((child, base))
}

async fn seed(db: &str, keyring: &Keyring) -> anyhow::Result<Store> {
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
    Ok(store)
}
