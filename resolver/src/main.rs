//! `resolver`: prints the injection plan for a running profile, or routes an
//! inbound message. Never reads a keyring.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use common::store::Store;
use resolver::{PlanRequest, SidecarEnv};

/// Decide which MCP servers, channels and inbound surfaces a running agent gets.
#[derive(Parser)]
#[command(name = "resolver", version)]
struct Cli {
    /// Store URL: sqlite://path?mode=rwc or postgres://... [env: INTEGRATIONS_DB]
    #[arg(long, global = true)]
    db: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the plan for a user's running profile.
    Plan {
        #[arg(long)]
        user: String,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        session: Option<String>,
        /// Where the mcp-* binaries are; defaults to this executable's directory.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Decide which profile a message arriving on a Slack or Telegram integration goes to.
    Route {
        #[arg(long)]
        integration: String,
        #[arg(long)]
        text: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The whole plan.
    Json,
    /// `{"mcpServers": {...}}` as Claude Code's .mcp.json / --mcp-config reads it.
    ClaudeCode,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::logging::init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = cli.db.unwrap_or_else(Store::url_from_env);
    let store = Store::connect(&url).await?;
    match cli.command {
        Command::Plan {
            user,
            profile,
            session,
            bin_dir,
            format,
        } => {
            let bin_dir = match bin_dir {
                Some(dir) => std::path::absolute(dir)?,
                None => own_dir()?,
            };
            let env = SidecarEnv::from_process(&url);
            let request = PlanRequest {
                user_id: &user,
                profile_id: &profile,
                session_id: session.as_deref(),
                bin_dir: &bin_dir,
            };
            let plan = resolver::plan(&store, &env, &request).await?;
            let out = match format {
                Format::Json => serde_json::to_value(&plan)?,
                Format::ClaudeCode => plan.claude_code(),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Route { integration, text } => {
            let route = resolver::route(&store, &integration, &text).await?;
            println!("{}", serde_json::to_string(&route)?);
        }
    }
    Ok(())
}

fn own_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the resolver executable")?;
    Ok(exe
        .parent()
        .context("the resolver executable has no directory")?
        .to_path_buf())
}
