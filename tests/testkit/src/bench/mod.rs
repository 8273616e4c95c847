//! What the sidecar benchmarks share: cold start, percentiles, memory, and
//! the baseline they are read against ([`bare`]).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use store::{NewProfile, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub mod bare;

/// The store at `db`, migrated, with user `u1`'s default profile `prof_a`
/// (the identity the benchmarks spawn their sidecars with).
pub async fn store_with_profile(db: &str) -> anyhow::Result<Store> {
    let store = Store::connect(db).await?;
    let profile = NewProfile {
        id: "prof_a".into(),
        user_id: "u1".into(),
        slug: "a".into(),
        name: None,
        is_default: true,
    };
    store.add_profile(&profile).await?;
    Ok(store)
}

/// Spawns `binary` with only `env`, behind an MCP client; returns its pid too.
pub async fn spawn(
    binary: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(RunningService<RoleClient, ()>, u32)> {
    let command = tokio::process::Command::new(binary).configure(|cmd| {
        cmd.env_clear().envs(env.iter().copied());
    });
    let transport = TokioChildProcess::new(command)?;
    let pid = transport.id().expect("the sidecar is running");
    Ok((().serve(transport).await?, pid))
}

/// Times one call of `tool` with `arguments`, which must succeed.
async fn time_call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    arguments: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Duration> {
    let call = CallToolRequestParams::new(tool).with_arguments(arguments.clone());
    let t = Instant::now();
    let result = client.call_tool(call).await?;
    let took = t.elapsed();
    anyhow::ensure!(
        result.is_error != Some(true),
        "{tool} failed: {:?}",
        result.content
    );
    Ok(took)
}

/// Prints the median cold start of `binary` (spawned with only `env`) over
/// `n` starts, to its `initialize` answer and to its `tools/list` answer,
/// beside the bare server's, the two alternated so that both meet the same
/// machine.
pub async fn cold_starts(binary: &str, env: &[(&str, &str)], n: usize) -> anyhow::Result<()> {
    let (bare, bare_env) = bare()?;
    let (mut starts, mut bare_starts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        starts.push(cold_start(binary, env).await?);
        bare_starts.push(cold_start(&bare, &bare_env).await?);
    }
    let median = |starts: &[(Duration, Duration)], which: fn(&(Duration, Duration)) -> Duration| {
        let mut times: Vec<Duration> = starts.iter().map(which).collect();
        times.sort();
        (times[n / 2], times[0], times[n - 1])
    };
    let (init, _, _) = median(&starts, |s| s.0);
    let (list, min, max) = median(&starts, |s| s.1);
    let (bare_init, _, _) = median(&bare_starts, |s| s.0);
    let (bare_list, _, _) = median(&bare_starts, |s| s.1);
    println!(
        "cold start, median of {n}: spawn to initialize answer {:.2} ms, to tools/list answer {:.2} ms (min {:.2}, max {:.2}); bare rmcp server: {:.2} ms, {:.2} ms",
        ms(init),
        ms(list),
        ms(min),
        ms(max),
        ms(bare_init),
        ms(bare_list)
    );
    Ok(())
}

/// Prints p50 and p99 of `n` round trips of `tool` on `client` (`what` says
/// what one is made of), beside the bare server's `ping`: each call is
/// followed by one of the bare server's, so that both meet the same machine.
pub async fn round_trips(
    what: &str,
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    arguments: serde_json::Map<String, serde_json::Value>,
    n: usize,
) -> anyhow::Result<()> {
    let (bare, bare_env) = bare()?;
    let (bare_client, _) = spawn(&bare, &bare_env).await?;
    let no_arguments = serde_json::Map::new();
    let (mut samples, mut bare_samples) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        samples.push(time_call(client, tool, &arguments).await?);
        bare_samples.push(time_call(&bare_client, "ping", &no_arguments).await?);
    }
    bare_client.cancel().await?;
    samples.sort();
    bare_samples.sort();
    println!(
        "{what}, n={n}: p50 {:.0} µs, p99 {:.0} µs; bare rmcp server's ping: p50 {:.0} µs, p99 {:.0} µs",
        us(samples[n / 2]),
        us(samples[n * 99 / 100]),
        us(bare_samples[n / 2]),
        us(bare_samples[n * 99 / 100])
    );
    Ok(())
}

/// Spawn → initialize → initialized → tools/list → its answer: the time to
/// the `initialize` answer, and to the `tools/list` answer.
async fn cold_start(binary: &str, env: &[(&str, &str)]) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
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
    let mut initialized = None;
    while let Some(line) = lines.next_line().await? {
        if line.contains(r#""id":1"#) {
            anyhow::ensure!(line.contains(r#""result""#), "initialize failed: {line}");
            initialized = Some(started.elapsed());
        }
        if line.contains(r#""id":2"#) {
            let took = started.elapsed();
            anyhow::ensure!(line.contains(r#""result""#), "tools/list failed: {line}");
            drop(stdin);
            child.wait().await?;
            return Ok((initialized.unwrap_or(took), took));
        }
    }
    anyhow::bail!("the sidecar closed before answering tools/list")
}

/// Prints the peak RSS of process `pid` after `calls` calls, and what its
/// resident memory is made of now.
pub fn print_memory(pid: u32, calls: usize) -> anyhow::Result<()> {
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
        "peak RSS of the sidecar after {calls} calls: {:.1} MiB (now {:.1} MiB of shared code and files, {:.1} MiB its own)",
        mib("VmHWM:"),
        mib("RssFile:"),
        mib("RssAnon:")
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Set when a benchmark spawns its own executable as the baseline, the
/// bare server its figures are printed beside.
const BARE: &str = "BENCH_BARE_RMCP";

/// When this executable was spawned as the baseline, serves it on stdio
/// until the client leaves and returns true. A benchmark's `main` calls
/// this first.
pub async fn serve_bare_if_asked() -> anyhow::Result<bool> {
    if std::env::var_os(BARE).is_none() {
        return Ok(false);
    }
    bare::Bare::default()
        .serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(true)
}

/// This executable as the bare server: its path and environment.
fn bare() -> anyhow::Result<(String, [(&'static str, &'static str); 1])> {
    let exe = std::env::current_exe()?;
    let exe = exe
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("not a UTF-8 path"))?;
    Ok((exe.to_owned(), [(BARE, "1")]))
}
