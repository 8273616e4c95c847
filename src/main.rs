//! `integrations`: the operator CLI over the encrypted, scoped store.
//!
//! Thin by design: it parses flags, opens the store and the keyring, and
//! calls `common`. Secrets never travel in argv; configs come from stdin or a
//! file.

mod api;
mod cli;
mod config_input;
mod import;
mod integrations;
mod keys;
mod notify;
mod output;
mod probe;
mod profiles;
mod revoke;
mod secrets;
mod tokens;

use std::process::ExitCode;

use clap::Parser;
use store::{IdentityClaims, Store};
use vault::{Keyring, KeyringError};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    store::logging::init();
    let cli = Cli::parse();
    // The API serves on every core; a one-shot command needs one thread.
    let mut runtime = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
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
        Command::Integration(command) => integrations::run(&store, command).await,
        Command::Test { id } => notify::test(&store, &url, &id).await,
        Command::Notify(args) => notify::notify(&url, args).await,
        Command::Serve { listen } => {
            let state = api::AppState::from_env(store, &url)?;
            api::serve(state, &url, listen).await?;
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
