//! The command line every sidecar shares: serve MCP on stdio (from the store,
//! or relayed to the HTTP service when `INTEGRATIONS_URL` is set), or over
//! streamable HTTP (`serve`), print the tool schemas (`--list-tools`), or run
//! one call by hand (`call <tool> '<json>'`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, FromArgMatches, Subcommand};
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::{ServerHandler, ServiceExt};

use super::connections;
use super::http::{self, HttpConfig};
use super::relay::Relay;
use model::Identity;
use store::Store;

use super::{Backing, IdentitySource, guarded_stdio};

/// Where `serve` listens unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8790";

#[derive(Args, Default)]
struct Cli {
    /// Store URL [env: INTEGRATIONS_DB]
    #[arg(long)]
    db: Option<String>,
    /// The running agent's user [env: INTEGRATIONS_USER_ID]
    #[arg(long)]
    user: Option<String>,
    /// The running agent's profile [env: INTEGRATIONS_PROFILE_ID]
    #[arg(long)]
    profile: Option<String>,
    /// Print the tool schemas as JSON and exit.
    #[arg(long)]
    list_tools: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one tool call and print its result as JSON.
    Call {
        tool: String,
        /// The arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Serve MCP over streamable HTTP at /mcp/<server> for many agents, each
    /// identified by its capability token (`resolver plan --transport http`).
    Serve {
        /// The address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
}

/// The `main` of sidecar `name` (`mcp-<server>`; `about` for `--help`):
/// `tools` lists its tools, `server` builds it for a caller over a store.
pub async fn main<S>(
    name: &'static str,
    about: &'static str,
    tools: fn() -> Vec<Tool>,
    server: impl FnOnce(IdentitySource, Backing) -> S,
) -> ExitCode
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    store::logging::init();
    // Spawned by the runtime, a sidecar has no arguments: it serves at once.
    let cli = if std::env::args_os().len() > 1 {
        let command = Cli::augment_args(
            clap::Command::new(name)
                .about(about)
                .version(env!("CARGO_PKG_VERSION")),
        );
        match Cli::from_arg_matches(&command.get_matches()) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    } else {
        Cli::default()
    };
    match run(name, cli, tools, server).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run<S>(
    name: &'static str,
    cli: Cli,
    tools: fn() -> Vec<Tool>,
    server: impl FnOnce(IdentitySource, Backing) -> S,
) -> anyhow::Result<ExitCode>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    if cli.list_tools {
        println!("{}", serde_json::to_string_pretty(&tools())?);
        return Ok(ExitCode::SUCCESS);
    }
    let server_name = name.strip_prefix("mcp-").unwrap_or(name);
    // A relay opens no store and reads no keyring: it holds only the token.
    if cli.command.is_none()
        && let Some(relay) = Relay::from_env(server_name)
    {
        anyhow::ensure!(
            cli.db.is_none() && cli.user.is_none() && cli.profile.is_none(),
            "INTEGRATIONS_URL makes this sidecar a relay, which opens no store and takes its \
             identity from its token: drop --db, --user and --profile, or unset INTEGRATIONS_URL"
        );
        relay.map_err(anyhow::Error::msg)?.serve_stdio().await;
        return Ok(ExitCode::SUCCESS);
    }
    let db = cli.db.unwrap_or_else(Store::url_from_env);
    if let Some(Command::Serve { listen }) = cli.command {
        let backing = Backing::new(name, db, Store::service_connections()?);
        let handler = server(IdentitySource::Token, backing.clone());
        serve(name, server_name, handler, backing, listen).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let identity = Identity::from_env(cli.user, cli.profile).map_err(anyhow::Error::msg)?;
    let server = server(IdentitySource::Spawned(identity), Backing::new(name, db, 1));
    match cli.command {
        None => {
            server.serve(guarded_stdio()).await?.waiting().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Call { tool, arguments }) => call(server, tool, &arguments).await,
        Some(Command::Serve { .. }) => unreachable!("served above"),
    }
}

/// Serves `handler` at `/mcp/<server>` (and `/healthz`) on `listen` until
/// SIGTERM or Ctrl-C; requests in flight finish first.
async fn serve<S>(
    name: &'static str,
    server: &'static str,
    handler: S,
    backing: Backing,
    listen: SocketAddr,
) -> anyhow::Result<()>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let config = HttpConfig::from_env(bound)?;
    let limits = connections::Limits::from_env()?;
    let app = http::mount(server, handler, backing, &config)
        .route("/healthz", axum::routing::get(http::healthz));
    tracing::info!(addr = %bound, "{name} listening");
    // The bound address on stdout, for whoever started us with port 0.
    println!("listening on http://{bound}");
    connections::serve_until_signal(listener, app, limits).await?;
    Ok(())
}

/// One call through a real MCP session held in memory.
async fn call<S>(server: S, tool: String, arguments: &str) -> anyhow::Result<ExitCode>
where
    S: ServerHandler + Send + 'static,
{
    let arguments = match serde_json::from_str(arguments) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => anyhow::bail!(
            "the arguments must be a JSON object, e.g. '{{\"enrollment_id\":\"enr_...\"}}'"
        ),
    };
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        if let Ok(running) = server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    let client = ().serve(client_end).await?;
    let result = client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await?;
    client.cancel().await?;
    let _ = serving.await;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(if result.is_error == Some(true) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
