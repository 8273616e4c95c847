//! `integrations keys generate|rotate`.

use model::sealing::Sealer;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use store::Store;
use vault::Keyring;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new keyring entry `kid=base64(32 bytes)`.
    Generate,
    /// Re-encrypt every sealed value (integration configs, secrets) under the
    /// keyring's first key.
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
    // The bar goes to stderr, and only to a terminal: stdout keeps the
    // report alone, whatever it is piped to.
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(store.sealed_count().await?),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(ProgressStyle::with_template(
            "{msg:15} {bar:40} {pos}/{len} values {eta}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = store
        .rotate_keys(&keyring, |noun, n| {
            bar.set_message(noun.to_string());
            bar.set_position(n);
        })
        .await?;
    bar.finish_and_clear();
    let mut failed = false;
    for column in &report.columns {
        println!(
            "re-encrypted {} of {} {} under key {}",
            column.rotated,
            column.total,
            column.noun,
            keyring.primary_kid()
        );
        if column.failed.is_empty() {
            continue;
        }
        failed = true;
        for e in &column.failed {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} {} could not be opened and were left unchanged ({}); keep their key in the keyring",
            column.failed.len(),
            column.noun,
            column.column
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
