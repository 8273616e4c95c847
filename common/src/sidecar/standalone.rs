//! The command line every sidecar shares: serve MCP on stdio, print the tool
//! schemas (`--list-tools`), or run one call by hand (`call <tool> '<json>'`).

use std::process::ExitCode;

use clap::{Args, FromArgMatches, Subcommand};
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::{RoleServer, Service, ServiceExt};

use super::{Identity, guarded_stdio};
use crate::store::Store;

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
}

/// The `main` of sidecar `name` (`about` for `--help`): `tools` lists its
/// tools, `server` builds it for an identity and a store URL.
pub async fn main<S>(
    name: &'static str,
    about: &'static str,
    tools: fn() -> Vec<Tool>,
    server: impl FnOnce(Identity, String) -> S,
) -> ExitCode
where
    S: Service<RoleServer> + Send + 'static,
{
    crate::logging::init();
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
    match run(cli, tools, server).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run<S>(
    cli: Cli,
    tools: fn() -> Vec<Tool>,
    server: impl FnOnce(Identity, String) -> S,
) -> anyhow::Result<ExitCode>
where
    S: Service<RoleServer> + Send + 'static,
{
    if cli.list_tools {
        println!("{}", serde_json::to_string_pretty(&tools())?);
        return Ok(ExitCode::SUCCESS);
    }
    let identity = Identity::from_env(cli.user, cli.profile).map_err(anyhow::Error::msg)?;
    let server = server(identity, cli.db.unwrap_or_else(Store::url_from_env));
    match cli.command {
        None => {
            server.serve(guarded_stdio()).await?.waiting().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Call { tool, arguments }) => call(server, tool, &arguments).await,
    }
}

/// One call through a real MCP session held in memory.
async fn call<S>(server: S, tool: String, arguments: &str) -> anyhow::Result<ExitCode>
where
    S: Service<RoleServer> + Send + 'static,
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
