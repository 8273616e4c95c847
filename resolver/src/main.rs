//! `resolver`: prints the injection plan for a running profile, or routes an
//! inbound message. Never reads a keyring.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use resolver::{PlanRequest, SidecarEnv};
use store::{Minter, Store};

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
        /// How the agent reaches its servers: spawned on stdio with the
        /// store and keyring, over streamable HTTP at `--url` with a
        /// capability token minted now, or spawned on stdio as relays to
        /// `--url` holding only that token.
        #[arg(long, value_enum, default_value_t = Transport::Stdio)]
        transport: Transport,
        /// The sidecars' HTTP service, which serves /mcp/<server> (with `--transport http` or `relay`).
        #[arg(long, required_if_eq_any([("transport", "http"), ("transport", "relay")]))]
        url: Option<String>,
        /// How long the token is valid (with `--transport http` or `relay`), e.g. 30m or 12h.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// End every capability token of a session (or with `--all`, of a
    /// user) at once: its next request is refused.
    Revoke {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        session: Option<String>,
        /// Only this user's tokens of the session; with `--all`, the user whose tokens end.
        #[arg(long)]
        user: Option<String>,
        /// Every live token of `--user`, whatever minted it.
        #[arg(long, requires = "user")]
        all: bool,
    },
    /// Decide which profile a message arriving on a Slack or Telegram integration goes to.
    Route {
        #[arg(long)]
        integration: String,
        #[arg(long)]
        text: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Stdio,
    Http,
    Relay,
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
    store::logging::init();
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
            transport,
            url: base_url,
            ttl,
        } => {
            let bin_dir = match bin_dir {
                Some(dir) => std::path::absolute(dir)?,
                None => own_dir()?,
            };
            // Over HTTP, and relayed, the sidecars' service has the
            // settings: none is handed to the agent.
            let env = match transport {
                Transport::Stdio => SidecarEnv::from_process(&url),
                Transport::Http | Transport::Relay => {
                    SidecarEnv::from_vars(&url, std::iter::empty())
                }
            };
            let request = PlanRequest {
                user_id: &user,
                profile_id: &profile,
                session_id: session.as_deref(),
                bin_dir: &bin_dir,
            };
            let plan = resolver::plan(&store, &env, &request).await?;
            let out = match (transport, base_url) {
                (Transport::Stdio, _) | (_, None) => match format {
                    Format::Json => serde_json::to_value(&plan)?,
                    Format::ClaudeCode => plan.claude_code(),
                },
                (transport, Some(base_url)) => {
                    let plan = resolver::mint(&store, plan, &base_url, ttl, Minter::Cli).await?;
                    match (transport, format) {
                        (Transport::Relay, Format::Json) => plan.relayed_json(),
                        (Transport::Relay, Format::ClaudeCode) => plan.relayed().claude_code(),
                        (_, Format::Json) => plan.json(),
                        (_, Format::ClaudeCode) => plan.claude_code(),
                    }
                }
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Revoke { session, user, all } => {
            let revoked = match (session, user) {
                (Some(session), user) => store.revoke_session(user.as_deref(), &session).await?,
                (None, Some(user)) if all => store.revoke_user_sessions(&user).await?,
                _ => anyhow::bail!("name a --session, or --all with --user"),
            };
            println!("{}", serde_json::json!({ "revoked": revoked }));
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
