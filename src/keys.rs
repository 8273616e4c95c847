//! `integrations keys generate|rotate`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;
use common::crypto::Keyring;
use common::store::Store;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new keyring entry `kid=base64(32 bytes)`.
    Generate,
    /// Re-encrypt every integration under the keyring's first key.
    Rotate,
}

/// Prints a fresh keyring entry; no store is opened.
pub fn generate() -> anyhow::Result<ExitCode> {
    println!("{}", *Keyring::generate_entry());
    Ok(ExitCode::SUCCESS)
}

pub async fn run(store: &Store, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate => generate(),
        KeysCommand::Rotate => rotate(store).await,
    }
}

async fn rotate(store: &Store) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::from_env()?;
    let bar = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(store.integration_count().await?),
            ProgressDrawTarget::stdout(),
        );
        bar.set_style(ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows {eta}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = store.rotate_keys(&keyring, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    println!(
        "re-encrypted {} of {} integration(s) under key {}",
        report.rotated,
        report.total,
        keyring.primary_kid()
    );
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &report.failed {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} integration(s) could not be opened and were left unchanged; keep their key in the keyring",
        report.failed.len()
    );
    Ok(ExitCode::FAILURE)
}
