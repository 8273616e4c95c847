//! `integrations serve` throughput on a SQLite store: 50 concurrent clients,
//! each its own user with a webhook integration, for 5 seconds of
//! `GET /v1/integrations` and then 5 seconds of `PATCH` (a label change, one
//! transaction per request); prints requests per second and p50/p99.
//!
//! ```sh
//! cargo bench -p integrations --bench api
//! ```

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_integrations");
const CLIENTS: usize = 50;
const PHASE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("api.db").display());
    let keys = cli(&db, "", &["keys", "generate"])?.trim().to_string();
    let mut server = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("INTEGRATIONS_DB", &db)
        .env("INTEGRATIONS_KEYS", &keys)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .await?;
    let base = line.trim().trim_start_matches("listening on ").to_string();
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let token = cli(
            &db,
            &keys,
            &["tokens", "create", "--user", &format!("u_bench_{n}")],
        )?
        .trim()
        .to_string();
        let created: serde_json::Value = http
            .post(format!("{base}/v1/integrations"))
            .bearer_auth(&token)
            .json(&json!({"type": "webhook", "config": {"url": format!("https://hooks.example.com/{n}")}}))
            .send()
            .await?
            .json()
            .await?;
        let id = created["id"].as_str().expect("created").to_string();
        clients.push((token, id));
    }
    let clients = Arc::new(clients);
    for phase in ["GET", "PATCH"] {
        let (count, mut samples) = run_phase(&http, &base, &clients, phase).await?;
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "{phase:<5} {CLIENTS} clients, {} s: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms (n={count})",
            PHASE.as_secs(),
            count as f64 / PHASE.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
    }
    server.kill().await?;
    Ok(())
}

async fn run_phase(
    http: &reqwest::Client,
    base: &str,
    clients: &Arc<Vec<(String, String)>>,
    phase: &'static str,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let deadline = Instant::now() + PHASE;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..clients.len() {
        let (http, base, clients) = (http.clone(), base.to_string(), Arc::clone(clients));
        tasks.spawn(async move {
            let (token, id) = &clients[n];
            let mut samples = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let request = if phase == "GET" {
                    http.get(format!("{base}/v1/integrations"))
                } else {
                    http.patch(format!("{base}/v1/integrations/{id}"))
                        .json(&json!({"label": format!("write {i}")}))
                };
                let started = Instant::now();
                let response = request.bearer_auth(token).send().await?;
                let status = response.status();
                response.bytes().await?;
                samples.push(started.elapsed());
                anyhow::ensure!(status.is_success(), "{phase} answered {status}");
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all.len(), all))
}

fn cli(db: &str, keys: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("INTEGRATIONS_DB", db)
        .env("INTEGRATIONS_KEYS", keys)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "integrations {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
