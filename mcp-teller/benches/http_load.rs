//! mcp-teller as a service under load (issue 16, point 9). 100 users, each
//! with a profile and a Teller enrollment granted to it, and 1,000 agent
//! sessions (10 per user), each with its own capability token and its own
//! keep-alive connection, call `teller_list_enrollments` on one
//! `mcp-teller serve` process: on SQLite and, with
//! `INTEGRATIONS_TEST_POSTGRES`, on a fresh PostgreSQL database (dropped
//! after). Every call goes the whole way: token read and counted, grant
//! re-read, audit row written.
//!
//! In the same run: the floor, a bare rmcp streamable-HTTP server with one
//! empty tool served as `serve` serves (stateless, JSON answers, axum, one
//! thread) by this executable in a process of its own, driven by the same
//! client; and the stdio fleet that one server replaces, from the resident
//! memory of a sample of stdio sidecars spawned as a stdio plan spawns them.
//!
//! Sessions run at an agent's pace (one call a second each, spread evenly),
//! then flat out (each calls again as soon as it has its answer), with the
//! server's peak RSS read for each. The
//! client shares the machine's cores with the servers (and PostgreSQL); it
//! runs on one thread, one connection per session, one prebuilt body.
//!
//! ```sh
//! INTEGRATIONS_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p mcp-teller --bench http_load
//! ```

use testkit::backend::Postgres;
use testkit::bench::bare as baseline;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use model::config::DecryptedConfig;
use model::{IntegrationType, Scope};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use store::{NewIntegration, NewProfile, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;
use vault::Keyring;
use zeroize::Zeroizing;

const SIDECAR: &str = env!("CARGO_BIN_EXE_mcp-teller");
/// Set when this executable is spawned as the floor.
const FLOOR: &str = "BENCH_FLOOR_HTTP";
const USERS: usize = 100;
const SESSIONS_PER_USER: usize = 10;
/// Sequential calls at one session, of each server, alternated.
const ONE_SESSION_CALLS: usize = 5_000;
const WARM_UP: Duration = Duration::from_secs(2);
const FLAT_OUT: Duration = Duration::from_secs(5);
/// An agent's pace: one tool call a second.
const PACE: Duration = Duration::from_secs(1);
const PACED: Duration = Duration::from_secs(10);
/// Stdio sidecars measured to price the fleet of one per session.
const FLEET_SAMPLE: usize = 20;
/// The longest any one start, call or exit is waited for.
const DEADLINE: Duration = Duration::from_secs(30);
/// The targets of issue 16.
const P99_TARGET_MS: f64 = 10.0;
const FLOOR_RATIO_TARGET: f64 = 1.5;
const RSS_TARGET_MIB: f64 = 64.0;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os(FLOOR).is_some() {
        return serve_floor().await;
    }
    let sessions = USERS * SESSIONS_PER_USER;
    println!(
        "{USERS} users, {sessions} sessions (a token and a keep-alive connection each), \
         teller_list_enrollments over streamable HTTP, mcp-teller serve with its defaults \
         (MCP_MAX_IN_FLIGHT, INTEGRATIONS_DB_POOL). The client (one thread) shares this \
         machine's {} cores with the server under test and PostgreSQL: flat-out figures are \
         the machine's, not the server's alone.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let keys = Keyring::generate_entry();
    let keyring = Keyring::parse(&keys)?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("load.db").display());
    let pg = Postgres::create("http_load");
    let mut backends = vec![("SQLite", sqlite)];
    match &pg {
        Some(db) => backends.push(("PostgreSQL", db.url.clone())),
        None => println!("INTEGRATIONS_TEST_POSTGRES is not set: PostgreSQL not measured"),
    }

    let floor = Server::start(
        &std::env::current_exe()?,
        &[],
        &[(FLOOR, "1")],
        "/mcp/bare",
        "ping",
    )
    .await?;
    let floor_auth = vec![bearer("mct_floor_ignores_tokens_0000000000")?; sessions];
    let floor_paced = floor.drive(&floor_auth, Some(PACE), PACED).await?;
    floor_paced.print("floor, 1 call/s each");
    let floor_flat = floor.drive(&floor_auth, None, FLAT_OUT).await?;
    floor_flat.print("floor, flat out");

    let mut rows = Vec::new();
    for (backend, url) in &backends {
        let tokens = seed(url, &keyring).await?;
        let env = [
            ("INTEGRATIONS_DB", url.as_str()),
            ("INTEGRATIONS_KEYS", keys.as_str()),
            // Every call is counted in the store; none is refused.
            ("MCP_MAX_CALLS_PER_MINUTE", "100000000"),
        ];
        let server = Server::start(
            SIDECAR.as_ref(),
            &["serve", "--listen", "127.0.0.1:0"],
            &env,
            "/mcp/teller",
            "teller_list_enrollments",
        )
        .await?;
        let (one, beside) = one_session(&server, &tokens[0], &floor, &floor_auth[0]).await?;
        let per_call = |load: &Load| us(load.cpu.server) / ONE_SESSION_CALLS as f64;
        println!(
            "{backend}, one session, {ONE_SESSION_CALLS} calls: p50 {:.0} µs, p99 {:.0} µs, \
             server CPU {:.0} µs a call; the floor alongside: p50 {:.0} µs, p99 {:.0} µs, \
             server CPU {:.0} µs a call",
            us(one.percentile(0.50)),
            us(one.percentile(0.99)),
            per_call(&one),
            us(beside.percentile(0.50)),
            us(beside.percentile(0.99)),
            per_call(&beside),
        );
        // Paced first: memory a process took stays with it, so the
        // lighter load's peak is read before the heavier one's.
        let paced = server.drive(&tokens, Some(PACE), PACED).await?;
        paced.print(&format!("{backend}, 1 call/s each"));
        let flat = server.drive(&tokens, None, FLAT_OUT).await?;
        flat.print(&format!("{backend}, flat out"));
        let fleet = stdio_fleet(url, &keys).await?;
        let mean = |f: fn(&Memory) -> f64| fleet.iter().map(f).sum::<f64>() / fleet.len() as f64;
        let (rss, anon, file) = (mean(|m| m.rss), mean(|m| m.anon), mean(|m| m.file));
        println!(
            "{backend}, stdio fleet, {FLEET_SAMPLE} sidecars after one call each: RSS {rss:.1} MiB \
             ({anon:.1} MiB its own, {file:.1} MiB shared pages); {sessions} of them: {:.2} GiB \
             by RSS, {:.2} GiB counting shared pages once{}",
            rss * sessions as f64 / 1024.0,
            (anon * sessions as f64 + file) / 1024.0,
            if url.starts_with("postgres") {
                ", and a PostgreSQL connection each"
            } else {
                ""
            }
        );
        rows.push(Row {
            backend,
            one_p50: one.percentile(0.50),
            floor_p50: beside.percentile(0.50),
            flat,
            paced,
            fleet_rss: rss,
        });
    }
    print_targets(&rows, &floor_flat, &floor_paced);
    Ok(())
}

/// What one backend measured, for the table of targets.
struct Row {
    backend: &'static str,
    one_p50: Duration,
    floor_p50: Duration,
    flat: Load,
    paced: Load,
    /// MiB, mean of the sample.
    fleet_rss: f64,
}

/// The targets of issue 16, met or missed, in a Markdown table: one column
/// per backend, and the floor's figure for reference.
fn print_targets(rows: &[Row], floor_flat: &Load, floor_paced: &Load) {
    let line = |target: String, figure: &dyn Fn(&Row) -> (String, bool), floor: String| {
        print!("| {target} |");
        for row in rows {
            let (figure, met) = figure(row);
            print!(" {figure}: {} |", if met { "met" } else { "missed" });
        }
        println!(" {floor} |");
    };
    println!();
    print!("| target |");
    for row in rows {
        print!(" {} |", row.backend);
    }
    println!(" floor |\n|---|{}---|", "---|".repeat(rows.len()));
    let p99 = |load: &Load| {
        let ms = ms(load.percentile(0.99));
        (format!("{ms:.2} ms"), ms <= P99_TARGET_MS)
    };
    let floor_p99 = |load: &Load| format!("{:.2} ms", ms(load.percentile(0.99)));
    let each = format!("p99 ≤ {P99_TARGET_MS} ms at 1,000 sessions, 1 call/s each");
    line(each, &|r| p99(&r.paced), floor_p99(floor_paced));
    let flat = format!("p99 ≤ {P99_TARGET_MS} ms at 1,000 sessions, flat out");
    line(flat, &|r| p99(&r.flat), floor_p99(floor_flat));
    let ratio = |r: &Row| {
        let ratio = r.one_p50.as_secs_f64() / r.floor_p50.as_secs_f64();
        let figure = format!("{:.0} µs, {ratio:.2}×", us(r.one_p50));
        (figure, ratio <= FLOOR_RATIO_TARGET)
    };
    let floor_one = rows.first().map_or(Duration::ZERO, |r| r.floor_p50);
    line(
        format!("per call at one session (p50) ≤ {FLOOR_RATIO_TARGET}× the floor's alongside"),
        &ratio,
        format!("{:.0} µs", us(floor_one)),
    );
    let rss = |load: &Load| (format!("{:.1} MiB", load.peak), load.peak <= RSS_TARGET_MIB);
    let each = format!("server peak RSS ≤ {RSS_TARGET_MIB} MiB, 1 call/s each");
    line(
        each,
        &|r| rss(&r.paced),
        format!("{:.1} MiB", floor_paced.peak),
    );
    let flat = format!("server peak RSS ≤ {RSS_TARGET_MIB} MiB, flat out");
    line(
        flat,
        &|r| rss(&r.flat),
        format!("{:.1} MiB", floor_flat.peak),
    );
    print!("| (the stdio fleet instead: 1,000 × a sidecar's RSS) |");
    for row in rows {
        print!(" {:.2} GiB |", row.fleet_rss * 1000.0 / 1024.0);
    }
    println!(" |");
}

/// Seeds the store at `url`: users `u_<n>`, each with profile `prof_<n>`
/// and one Teller enrollment granted to it, and tokens for
/// [`SESSIONS_PER_USER`] sessions of each; returns their `Authorization`
/// values, session by session.
async fn seed(url: &str, keyring: &Keyring) -> anyhow::Result<Vec<HeaderValue>> {
    let store = Store::connect(url).await?;
    let mut tokens = Vec::with_capacity(USERS * SESSIONS_PER_USER);
    for n in 0..USERS {
        let (user, profile) = (format!("u_{n}"), format!("prof_{n}"));
        let new = NewProfile {
            id: profile.clone(),
            user_id: user.clone(),
            slug: "agent".into(),
            name: None,
            is_default: true,
        };
        store.add_profile(&new).await?;
        let json = format!(
            r#"{{"enrollment_id":"enr_{n}","access_token":"test_token_{n}","institution_name":"Bank {n}"}}"#
        );
        let config =
            DecryptedConfig::validate(IntegrationType::Teller, Zeroizing::new(json.into_bytes()))?;
        let new = NewIntegration {
            user_id: user.clone(),
            kind: IntegrationType::Teller,
            label: None,
            is_default: false,
            scope: Scope::Agents,
            profile_ids: vec![profile.clone()],
            bound_profile_id: None,
        };
        store.add_integration(keyring, &new, &config).await?;
        for s in 0..SESSIONS_PER_USER {
            let session = format!("sess_{n}_{s}");
            let minted = store
                .mint_capability(
                    &user,
                    &profile,
                    &session,
                    &["teller"],
                    Duration::from_secs(3600),
                    store::Minter::Cli,
                )
                .await?;
            tokens.push(bearer(&minted.token)?);
        }
    }
    Ok(tokens)
}

/// `Bearer <token>`, marked sensitive.
fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::try_from(Zeroizing::new(format!("Bearer {token}")).as_str())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The floor: [`baseline::Bare`] at `/mcp/bare`, served as `serve` serves a
/// sidecar (rmcp's stateless streamable HTTP with JSON answers, the same
/// host, origin and body rules, axum on one thread), without the token
/// check, the store or the tools.
async fn serve_floor() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bound = listener.local_addr()?;
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"])
        .with_allowed_origins(
            ["localhost", "127.0.0.1", "[::1]"]
                .map(|host| format!("http://{host}:{}", bound.port())),
        )
        .enforce_origin_validation()
        .with_max_request_body_bytes(sidecar::http::MAX_BODY)
        .with_legacy_session_mode(false)
        .with_json_response(true);
    let bare = baseline::Bare::default();
    let service = StreamableHttpService::new(
        move || Ok(bare.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service("/mcp/bare", service);
    println!("listening on http://{bound}");
    axum::serve(listener, app).await?;
    Ok(())
}

/// A serving process (killed on drop) and what a call to it is.
struct Server {
    _child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    /// The request every session sends, but for its token.
    request: Arc<Call>,
}

/// One `tools/call` of a server's tool, prebuilt.
struct Call {
    uri: hyper::Uri,
    host: HeaderValue,
    body: Bytes,
}

impl Server {
    /// Spawns `program` with `args` and only `env`, and waits for the
    /// address it prints; `tool` at `path` is what its sessions call.
    async fn start(
        program: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        path: &str,
        tool: &str,
    ) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("the server exited at once")?;
        let mut stdout = BufReader::new(child.stdout.take().context("piped")?);
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, stdout.read_line(&mut line))
            .await
            .context("the server did not start in 30 s")??;
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("the server printed {line:?}"))?
            .parse()?;
        // Nothing else comes on stdout; keep the pipe open with the child.
        child.stdout = Some(stdout.into_inner());
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        let request = Call {
            uri: path.parse()?,
            host: HeaderValue::try_from(addr.to_string())?,
            body: Bytes::from(serde_json::to_vec(&body)?),
        };
        Ok(Self {
            _child: child,
            pid,
            addr,
            request: Arc::new(request),
        })
    }

    async fn session(&self, auth: &HeaderValue) -> anyhow::Result<Session> {
        Session::open(self.addr, Arc::clone(&self.request), auth.clone()).await
    }

    /// One session per `Authorization` value of `auths`, all at once: for
    /// [`WARM_UP`] then `measured`, each calling again at once (`pace`
    /// `None`) or once every `pace`, the sessions' calls spread evenly.
    async fn drive(
        &self,
        auths: &[HeaderValue],
        pace: Option<Duration>,
        measured: Duration,
    ) -> anyhow::Result<Load> {
        // The peak RSS from here on (Linux: `clear_refs` 5).
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")?;
        let mut sessions = Vec::with_capacity(auths.len());
        for auth in auths {
            sessions.push(self.session(auth).await?);
        }
        let begin = Instant::now() + Duration::from_millis(50);
        let (from, until) = (begin + WARM_UP, begin + WARM_UP + measured);
        let n = u32::try_from(sessions.len())?;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mut session) in (0..n).zip(sessions) {
            tasks.spawn(async move {
                let mut samples = Vec::new();
                let mut next = begin + pace.map_or(Duration::ZERO, |p| p * i / n);
                loop {
                    if let Some(pace) = pace {
                        tokio::time::sleep_until(next).await;
                        next += pace;
                    }
                    let started = Instant::now();
                    if started >= until {
                        break;
                    }
                    let took = session.call().await?;
                    if started >= from {
                        samples.push(took);
                    }
                }
                anyhow::Ok(samples)
            });
        }
        tokio::time::sleep_until(from).await;
        let before = Ticks::now(self.pid)?;
        tokio::time::sleep_until(until).await;
        let cpu = before.until(&Ticks::now(self.pid)?);
        let mut samples = Vec::new();
        while let Some(done) = tasks.join_next().await {
            samples.extend(done??);
        }
        samples.sort();
        Ok(Load {
            sessions: auths.len(),
            window: measured,
            samples,
            cpu,
            peak: Memory::of(self.pid)?.peak,
        })
    }
}

/// One agent session: its own keep-alive connection and token.
struct Session {
    send: SendRequest<Full<Bytes>>,
    request: Arc<Call>,
    auth: HeaderValue,
}

impl Session {
    async fn open(addr: SocketAddr, request: Arc<Call>, auth: HeaderValue) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Ends when `send` is dropped.
        tokio::spawn(connection);
        Ok(Self {
            send,
            request,
            auth,
        })
    }

    /// One tool call, which must succeed; its round trip.
    async fn call(&mut self) -> anyhow::Result<Duration> {
        let request = hyper::Request::post(self.request.uri.clone())
            .header(header::HOST, self.request.host.clone())
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            )
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(
                "mcp-protocol-version",
                HeaderValue::from_static("2025-11-25"),
            )
            .body(Full::new(self.request.body.clone()))?;
        let started = Instant::now();
        let (status, body) = tokio::time::timeout(DEADLINE, async {
            self.send.ready().await?;
            let response = self.send.send_request(request).await?;
            let status = response.status();
            anyhow::Ok((status, response.into_body().collect().await?.to_bytes()))
        })
        .await
        .context("a call took longer than 30 s")??;
        let took = started.elapsed();
        anyhow::ensure!(
            status == hyper::StatusCode::OK
                && !contains(&body, br#""isError":true"#)
                && (contains(&body, b"enr_") || contains(&body, b"pong")),
            "a call answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(took)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// [`ONE_SESSION_CALLS`] sequential calls of `server` and of `floor`, one
/// session each, alternated call for call so that both meet the same
/// machine (after a tenth as many unmeasured).
async fn one_session(
    server: &Server,
    auth: &HeaderValue,
    floor: &Server,
    floor_auth: &HeaderValue,
) -> anyhow::Result<(Load, Load)> {
    let (mut session, mut beside) = (
        server.session(auth).await?,
        floor.session(floor_auth).await?,
    );
    for _ in 0..ONE_SESSION_CALLS / 10 {
        session.call().await?;
        beside.call().await?;
    }
    let (mut samples, mut floor_samples) = (
        Vec::with_capacity(ONE_SESSION_CALLS),
        Vec::with_capacity(ONE_SESSION_CALLS),
    );
    let (pid, floor_pid) = (server.pid.to_string(), floor.pid.to_string());
    let (before, floor_before) = (process_ticks(&pid)?, process_ticks(&floor_pid)?);
    let started = Instant::now();
    for _ in 0..ONE_SESSION_CALLS {
        samples.push(session.call().await?);
        floor_samples.push(beside.call().await?);
    }
    let window = started.elapsed();
    let load = |mut samples: Vec<Duration>, pid: &str, before: u64| {
        samples.sort();
        anyhow::Ok(Load {
            sessions: 1,
            window,
            samples,
            cpu: Cpu {
                server: ticks(process_ticks(pid)? - before),
                ..Cpu::default()
            },
            peak: 0.0,
        })
    };
    Ok((
        load(samples, &pid, before)?,
        load(floor_samples, &floor_pid, floor_before)?,
    ))
}

/// What one run of sessions measured.
struct Load {
    sessions: usize,
    window: Duration,
    /// The round trips of the calls begun in the measured window, sorted.
    samples: Vec<Duration>,
    cpu: Cpu,
    /// The server's peak RSS during the run, MiB.
    peak: f64,
}

impl Load {
    fn percentile(&self, p: f64) -> Duration {
        let last = self.samples.len().saturating_sub(1);
        self.samples
            .get(((self.samples.len() as f64 * p) as usize).min(last))
            .copied()
            .unwrap_or_default()
    }

    fn print(&self, what: &str) {
        let calls = self.samples.len() as f64;
        let per_call = |d: Duration| us(d) / calls.max(1.0);
        println!(
            "{what}, {} sessions, {} s: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             CPU per call: server {:.0} µs, client {:.0} µs; machine {:.0}% busy, {:.0}% stolen; \
             server peak RSS {:.1} MiB",
            self.sessions,
            self.window.as_secs(),
            calls / self.window.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.samples.last().copied().unwrap_or_default()),
            per_call(self.cpu.server),
            per_call(self.cpu.client),
            self.cpu.busy * 100.0,
            self.cpu.stolen * 100.0,
            self.peak,
        );
    }
}

/// CPU time over a measured window: the server's and this process's, and
/// the machine's shares busy and stolen by the hypervisor.
#[derive(Default)]
struct Cpu {
    server: Duration,
    client: Duration,
    busy: f64,
    stolen: f64,
}

/// CPU counters at one moment, in ticks of USER_HZ (100 a second).
struct Ticks {
    server: u64,
    client: u64,
    busy: u64,
    idle: u64,
    stolen: u64,
}

impl Ticks {
    fn now(server: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        // cpu  user nice system idle iowait irq softirq steal ...
        let t: Vec<u64> = stat
            .lines()
            .next()
            .context("/proc/stat is empty")?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(t.len() == 8, "/proc/stat has fewer columns than expected");
        Ok(Self {
            server: process_ticks(&server.to_string())?,
            client: process_ticks("self")?,
            busy: t[0] + t[1] + t[2] + t[5] + t[6],
            idle: t[3] + t[4],
            stolen: t[7],
        })
    }

    /// What was spent from `self` to `after`.
    fn until(&self, after: &Self) -> Cpu {
        let (busy, idle, stolen) = (
            after.busy - self.busy,
            after.idle - self.idle,
            after.stolen - self.stolen,
        );
        let total = (busy + idle + stolen).max(1) as f64;
        Cpu {
            server: ticks(after.server - self.server),
            client: ticks(after.client - self.client),
            busy: busy as f64 / total,
            stolen: stolen as f64 / total,
        }
    }
}

/// `n` ticks of USER_HZ, as time.
fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

/// User and system ticks of process `pid` (`self`: this one), all threads.
fn process_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name, from field 3 (state): utime is 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name")?
        .1
        .split_whitespace()
        .collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Resident memory of one process, MiB.
struct Memory {
    peak: f64,
    rss: f64,
    /// Its own pages (heap, stacks).
    anon: f64,
    /// Pages of files: its code, shared with every process that maps it.
    file: f64,
}

impl Memory {
    fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let mib = |field: &str| -> anyhow::Result<f64> {
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .with_context(|| format!("no {field} in /proc/{pid}/status"))?
                .parse()?;
            Ok(kb / 1024.0)
        };
        Ok(Self {
            peak: mib("VmHWM:")?,
            rss: mib("VmRSS:")?,
            anon: mib("RssAnon:")?,
            file: mib("RssFile:")?,
        })
    }
}

/// The resident memory of [`FLEET_SAMPLE`] stdio sidecars alive together,
/// each spawned as a stdio plan spawns it (the store, the keyring, its
/// user, profile and session in its environment) and read after one
/// `teller_list_enrollments` of its own.
async fn stdio_fleet(url: &str, keys: &str) -> anyhow::Result<Vec<Memory>> {
    let mut fleet = Vec::with_capacity(FLEET_SAMPLE);
    for n in 0..FLEET_SAMPLE {
        let mut child = tokio::process::Command::new(SIDECAR)
            .env_clear()
            .env("INTEGRATIONS_DB", url)
            .env("INTEGRATIONS_KEYS", keys)
            .env("INTEGRATIONS_USER_ID", format!("u_{n}"))
            .env("INTEGRATIONS_PROFILE_ID", format!("prof_{n}"))
            .env("INTEGRATIONS_SESSION_ID", format!("sess_{n}_0"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("piped")?;
        stdin
            .write_all(
                concat!(
                    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#, "\n",
                    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, "\n",
                    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"teller_list_enrollments","arguments":{}}}"#, "\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut lines = BufReader::new(child.stdout.take().context("piped")?).lines();
        let answer = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(r#""id":2"#) {
                    return anyhow::Ok(line);
                }
            }
            anyhow::bail!("a stdio sidecar closed before answering")
        })
        .await
        .context("a stdio sidecar did not answer in 30 s")??;
        anyhow::ensure!(answer.contains(&format!("enr_{n}")), "{answer}");
        // Its stdout stays open while it lives: a sidecar ends when either pipe closes.
        fleet.push((child, stdin, lines));
    }
    let memory = fleet
        .iter()
        .map(|(child, ..)| Memory::of(child.id().context("a stdio sidecar exited")?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (mut child, stdin, _stdout) in fleet {
        drop(stdin);
        tokio::time::timeout(DEADLINE, child.wait())
            .await
            .context("a stdio sidecar did not exit in 30 s")??;
    }
    Ok(memory)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
