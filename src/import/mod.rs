//! `integrations import vonzio`: the product's `profiles`, `user_integrations`
//! and `user_secrets` brought into our store, ids and times kept, configs
//! opened with the product's key ([`crypto`]), mapped to ours ([`mapping`])
//! and sealed in our envelope; a report of every row ([`report`]).

mod crypto;
mod mapping;
mod report;
mod tables;

use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use store::{ImportOutcome, ImportRow, Store};
use vault::Keyring;

use crate::api::telegram::TelegramConfig;
use mapping::{Context, Planned, PlatformBot};
use report::{Outcome, Report};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import a vonzio database: its profiles, integrations and user secrets, ids kept; a second run imports nothing twice.
    Vonzio(VonzioArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from", "from_env"])))]
pub struct VonzioArgs {
    /// The product's database, postgres://... (its password is visible in argv: prefer --from-env).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// The environment variable that holds the product's database URL.
    #[arg(long, value_name = "VAR")]
    from_env: Option<String>,
    /// The environment variable that holds the product's ENCRYPTION_KEY.
    #[arg(long, value_name = "VAR", default_value = "VONZIO_ENCRYPTION_KEY")]
    key_env: String,
    /// Go through every row and print the report, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(store: &Store, command: ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Vonzio(args) = command;
    let url = match (&args.from, &args.from_env) {
        (Some(url), _) => url.clone(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("the environment variable {var} is not set"))?,
        (None, None) => unreachable!("clap requires one of --from and --from-env"),
    };
    let key = crypto::Passphrase::from_env(&args.key_env)?;
    let keyring = Keyring::from_env()?;
    let tables = tables::Tables::read(&url).await?;
    let platform_bot = platform_bot(&tables).await?;
    let cx = Context::new(&tables, &key, platform_bot.as_ref());
    let progress = ProgressBar::new(tables.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {msg}")
            .expect("the template is valid"),
    );
    let planned = mapping::plan(&tables, &cx);
    let entries = write(store, &keyring, planned, args.dry_run, &progress).await;
    progress.finish_and_clear();
    let report = Report::new(entries);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if args.dry_run {
        eprintln!("dry run: nothing was written");
    }
    Ok(if report.counts.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The platform's bot, when `PLATFORM_TELEGRAM_BOT_TOKEN` is set and a
/// Telegram row may pair with it.
async fn platform_bot(tables: &tables::Tables) -> anyhow::Result<Option<PlatformBot>> {
    if !tables.integrations.iter().any(|i| i.kind == "telegram") {
        return Ok(None);
    }
    let telegram = TelegramConfig::from_env()?;
    let Some(found) = telegram.platform_bot().await else {
        return Ok(None);
    };
    let (token, id, username) =
        found.map_err(|why| anyhow::anyhow!("the platform's Telegram bot: {why}"))?;
    Ok(Some(PlatformBot {
        token,
        id,
        username,
    }))
}

/// Writes the planned rows, one transaction per user, and returns every
/// row's entry with what the store made of it.
async fn write(
    store: &Store,
    keyring: &Keyring,
    planned: Vec<Planned>,
    dry_run: bool,
    progress: &ProgressBar,
) -> Vec<report::Entry> {
    let mut users: Vec<String> = Vec::new();
    for p in &planned {
        if let (Some(_), Some(user)) = (&p.row, &p.entry.user_id)
            && !users.contains(user)
        {
            users.push(user.clone());
        }
    }
    let (mut entries, rows): (Vec<_>, Vec<_>) =
        planned.into_iter().map(|p| (p.entry, p.row)).unzip();
    progress.inc(rows.iter().filter(|r| r.is_none()).count() as u64);
    for user in users {
        let (at, batch): (Vec<usize>, Vec<&ImportRow>) = rows
            .iter()
            .enumerate()
            .filter_map(|(at, row)| {
                let row = row.as_ref()?;
                (entries[at].user_id.as_ref() == Some(&user)).then_some((at, row))
            })
            .unzip();
        progress.set_message(user.clone());
        let outcomes = store.import_user(keyring, &user, &batch, dry_run).await;
        for (n, &at) in at.iter().enumerate() {
            let entry = &mut entries[at];
            match &outcomes {
                Ok(outcomes) => match &outcomes[n] {
                    ImportOutcome::Imported(notes) => entry.notes.extend(notes.iter().cloned()),
                    ImportOutcome::AlreadyImported => {
                        entry.outcome = Outcome::AlreadyImported;
                        entry.notes.clear();
                    }
                    ImportOutcome::Skipped(why) => {
                        entry.outcome = Outcome::Skipped(why.clone());
                        entry.notes.clear();
                    }
                },
                Err(e) => {
                    entry.outcome =
                        Outcome::Failed(format!("the user's rows could not be written: {e}"));
                    entry.notes.clear();
                }
            }
        }
        progress.inc(at.len() as u64);
    }
    entries
}
