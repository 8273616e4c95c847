//! The command line, as docs/cli.md spells it: its flags, and [`run`], which
//! opens the store and runs one command.

mod config_input;
mod integration;
mod keys;
mod notify;
mod profiles;
mod secrets;
mod tokens;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{ArgGroup, Args, Parser, Subcommand};
use integrations::health::Keeper;
use integrations::import::{self, ImportCommand};
use store::{IdentityClaims, SidecarStore, Store};
use vault::{Keyring, KeyringError};

use keys::KeysCommand;
use profiles::ProfilesCommand;
use secrets::SecretsCommand;
use tokens::TokensCommand;

/// Manage the encrypted, per-profile-scoped integrations store.
#[derive(Parser)]
#[command(name = "integrations", version)]
pub struct Cli {
    /// Store URL: sqlite://path?mode=rwc or postgres://... [env: INTEGRATIONS_DB]
    #[arg(long, global = true)]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Bring the store's schema up to date.
    Migrate,
    /// Mirror the platform's agent profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Keyring entries and key rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    #[command(flatten)]
    Integration(IntegrationCommand),
    /// Test one integration: a test notification through Slack, Telegram, Email or Webhook; an authenticated read for Gmail and Teller.
    Test { id: String },
    /// Send a platform notification to a profile through its granted channels, in parallel.
    Notify(NotifyArgs),
    /// Serve the REST API (/v1/integrations, /v1/profiles, /v1/secrets, /v1/sessions) and the sidecars' MCP endpoints (/mcp/teller, /mcp/gmail, /mcp/notify) until SIGTERM.
    Serve {
        /// The address to listen on; port 0 picks a free one (printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Check the connections due for a check (HEALTH_INTERVAL) at their providers, marking refused ones needs_reauth and recovering those that pass again; `serve` does this all along.
    Health {
        /// One round, then exit (for cron); without it, round after round.
        #[arg(long)]
        once: bool,
    },
    /// Print a single-use sign-in link to the Settings page for a user.
    DashboardLink {
        #[arg(long)]
        user: String,
        /// How long the link may wait to be opened (at most 24h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// Where browsers reach `integrations serve`.
        #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// End every Settings page session of a user (after a leaked link or session).
    DashboardSignOut {
        #[arg(long)]
        user: String,
    },
    /// The REST API's bearer tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Per-agent secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Import another system's database into this store.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The outbox of inbound Telegram messages, oldest first, as JSON lines.
    Inbound {
        #[arg(long)]
        user: String,
        /// The last `seq` already consumed.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum IntegrationCommand {
    /// Connect an integration; reads its config JSON from stdin or a file and prints the new id.
    Add(AddArgs),
    /// List a user's integrations, secrets redacted.
    List {
        #[arg(long)]
        user: String,
        /// Only this type.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one integration, secrets redacted.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Grant an integration to every profile of its user, or only to some.
    Scope(ScopeArgs),
    /// Make an integration its user's default, clearing the user's other defaults.
    Default { id: String },
    /// Enable an integration.
    Enable { id: String },
    /// Disable an integration; it grants nothing until enabled again.
    Disable { id: String },
    /// Revoke an integration downstream where the provider allows, then delete it.
    Rm {
        id: String,
        /// Delete the row without revoking downstream (e.g. when its config no longer opens).
        #[arg(long)]
        local_only: bool,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// slack, telegram, gmail, teller, email or webhook.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    #[arg(long)]
    pub user: String,
    /// `-` reads the config JSON from stdin, `@path` from a file; never the JSON itself.
    #[arg(long, value_name = "-|@FILE")]
    pub config: String,
    /// Display name; defaults to one derived from the config.
    #[arg(long)]
    pub label: Option<String>,
    /// Make it the user's default.
    #[arg(long)]
    pub default: bool,
    /// Grant it only to these profiles (comma-separated); default: every profile.
    #[arg(long, value_delimiter = ',', value_name = "P1,P2")]
    pub agents: Option<Vec<String>>,
    /// Telegram only: the profile this bot speaks for.
    #[arg(long, value_name = "PROFILE")]
    pub bound_profile: Option<String>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["all", "agents"])))]
pub struct ScopeArgs {
    pub id: String,
    /// Every profile of the user.
    #[arg(long)]
    pub all: bool,
    /// Only these profiles (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "P1,P2")]
    pub agents: Option<Vec<String>>,
}

#[derive(Args)]
pub struct NotifyArgs {
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub profile: String,
    /// Channels (comma-separated: slack, telegram:<id>, email, webhook); default: the profile's default channel.
    #[arg(long, value_delimiter = ',', value_name = "C1,C2")]
    pub channels: Option<Vec<String>>,
    /// The message, in markdown.
    #[arg(long)]
    pub message: String,
    #[arg(long)]
    pub title: Option<String>,
    /// low, normal or high.
    #[arg(long, default_value = "normal")]
    pub urgency: String,
}

/// Runs `cli`'s command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Keys(keys::KeysCommand::Generate) = cli.command {
        return keys::generate();
    }
    let url = cli.db.unwrap_or_else(Store::url_from_env);
    let store = if matches!(cli.command, Command::Serve { .. }) {
        Store::connect_service(&url).await?
    } else {
        Store::connect(&url).await?
    };
    match cli.command {
        Command::Migrate => {
            println!("store is up to date ({})", store.backend_name());
            // With the keyring, rows from before identities take theirs now
            // rather than at `serve`'s start.
            match Keyring::from_env() {
                Ok(keyring) => {
                    let claims = store.claim_identities(&keyring).await?;
                    if claims != IdentityClaims::default() {
                        println!(
                            "{} row(s) took their external identity; {} named one another row holds or names, and were set needs_reauth (their users must connect them again)",
                            claims.claimed, claims.refused
                        );
                    }
                }
                Err(KeyringError::Missing) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Profiles(command) => profiles::run(&store, command).await,
        Command::Keys(command) => keys::run(&store, command).await,
        Command::Integration(command) => integration::run(&store, command).await,
        Command::Test { id } => notify::test(&store, &url, &id).await,
        Command::Notify(args) => notify::notify(&url, args).await,
        Command::Serve { listen } => {
            let state = integrations::api::AppState::from_env(store, &url)?;
            integrations::api::serve(state, &url, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { once } => {
            let keyring = Arc::new(Keyring::from_env()?);
            let sidecar = SidecarStore::over(&store, &url)?;
            let Some(keeper) = Keeper::from_env(store, sidecar, keyring)? else {
                anyhow::bail!("HEALTH_INTERVAL is off: there is nothing to check");
            };
            if !once {
                keeper.run().await;
            }
            let round = keeper.round().await?;
            println!(
                "checked {}: {} healthy, {} now needs_reauth, {} still refused, {} recovered, {} unknown",
                round.checked,
                round.healthy,
                round.marked,
                round.still_refused,
                round.recovered,
                round.unknown
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::DashboardLink { user, ttl, url } => {
            let key = store.issue_sign_in_key(&user, ttl).await?;
            // The key after '#': a browser never sends it in a request line.
            println!(
                "{}/settings/sign-in#{}",
                url.trim_end_matches('/'),
                key.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::DashboardSignOut { user } => {
            let ended = store.sign_out_everywhere(&user).await?;
            println!("ended {ended} session(s) of {user}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens(command) => tokens::run(&store, command).await,
        Command::Secrets(command) => secrets::run(&store, command).await,
        Command::Import(command) => import::run(&store, command).await,
        Command::Inbound { user, after, limit } => {
            for message in store.inbound(&user, after, limit.clamp(1, 1000)).await? {
                println!("{}", serde_json::to_string(&message)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
