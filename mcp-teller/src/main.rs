//! `mcp-teller`: the teller MCP server on stdio, or one call by hand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::sidecar::{Identity, guarded_stdio};
use common::store::Store;
use mcp_teller::TellerServer;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;

/// Teller bank data for one running agent, over MCP on stdio.
#[derive(Parser)]
#[command(name = "mcp-teller", version)]
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::logging::init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-teller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.list_tools {
        println!("{}", serde_json::to_string_pretty(&TellerServer::tools())?);
        return Ok(ExitCode::SUCCESS);
    }
    let identity = Identity::from_env(cli.user, cli.profile).map_err(anyhow::Error::msg)?;
    let server = TellerServer::new(identity, cli.db.unwrap_or_else(Store::url_from_env));
    match cli.command {
        None => {
            server.serve(guarded_stdio()).await?.waiting().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Call { tool, arguments }) => call(server, tool, &arguments).await,
    }
}

/// One call through a real MCP session held in memory.
async fn call(server: TellerServer, tool: String, arguments: &str) -> anyhow::Result<ExitCode> {
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
