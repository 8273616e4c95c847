//! mcp-teller speed: cold start (spawn → `tools/list` answer, median of 20),
//! the `teller_list_enrollments` round trip over stdio including the grant
//! re-check and the audit write (p50/p99 of 5,000), and peak RSS.
//!
//! ```sh
//! cargo bench -p mcp-teller --bench sidecar
//! ```

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::config::DecryptedConfig;
use common::crypto::Keyring;
use common::model::{IntegrationType, Scope};
use common::store::{NewIntegration, NewProfile, Store};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-teller");
const STARTS: usize = 20;
const CALLS: usize = 5_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
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

    let mut starts = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        starts.push(cold_start(&env).await?);
    }
    starts.sort();
    println!(
        "cold start, spawn to tools/list answer: median {:.2} ms (min {:.2}, max {:.2}, n={STARTS})",
        ms(starts[STARTS / 2]),
        ms(starts[0]),
        ms(starts[STARTS - 1])
    );

    let command = tokio::process::Command::new(SIDECAR).configure(|cmd| {
        cmd.env_clear().envs(env);
    });
    let transport = TokioChildProcess::new(command)?;
    let pid = transport.id().expect("the sidecar is running");
    let client = ().serve(transport).await?;
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let result = client
            .call_tool(CallToolRequestParams::new("teller_list_enrollments"))
            .await?;
        samples.push(t.elapsed());
        assert_ne!(result.is_error, Some(true));
    }
    samples.sort();
    println!(
        "teller_list_enrollments round trip (re-check + audit write): p50 {:.0} µs, p99 {:.0} µs (n={CALLS})",
        us(samples[CALLS / 2]),
        us(samples[CALLS * 99 / 100])
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    println!(
        "peak RSS of the sidecar after {CALLS} calls: {:.1} MiB (now {:.1} MiB of shared code and files, {:.1} MiB its own)",
        mib("VmHWM:"),
        mib("RssFile:"),
        mib("RssAnon:")
    );
    client.cancel().await?;
    Ok(())
}

/// Spawn → initialize → initialized → tools/list → its answer.
async fn cold_start(env: &[(&str, &str)]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(SIDECAR)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            concat!(
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#, "\n",
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, "\n",
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, "\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.contains(r#""id":2"#) {
            let took = started.elapsed();
            drop(stdin);
            child.wait().await?;
            return Ok(took);
        }
    }
    anyhow::bail!("the sidecar closed before answering tools/list")
}

async fn seed(db: &str, keyring: &Keyring) -> anyhow::Result<()> {
    let store = Store::connect(db).await?;
    store
        .add_profile(&NewProfile {
            id: "prof_a".into(),
            user_id: "u1".into(),
            slug: "a".into(),
            name: None,
            is_default: true,
        })
        .await?;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
