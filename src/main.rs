//! `integrations`: the operator CLI over the encrypted, scoped store.
//!
//! Thin by design: it parses flags, opens the store and the keyring, and
//! calls `common`. Secrets never travel in argv; configs come from stdin or a
//! file.

mod cli;
mod config_input;
mod integrations;
mod keys;
mod notify;
mod output;
mod profiles;
mod revoke;

use std::process::ExitCode;

use clap::Parser;
use common::store::Store;

use crate::cli::{Cli, Command};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::logging::init();
    let cli = Cli::parse();
    match run(cli).await {
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
    let store = Store::connect(&url).await?;
    match cli.command {
        Command::Migrate => {
            println!("store is up to date ({})", store.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        Command::Profiles(command) => profiles::run(&store, command).await,
        Command::Keys(command) => keys::run(&store, command).await,
        Command::Integration(command) => integrations::run(&store, command).await,
        Command::Test { id } => notify::test(&store, &url, &id).await,
        Command::Notify(args) => notify::notify(&url, args).await,
    }
}
