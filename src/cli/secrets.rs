//! `integrations secrets env`: the per-agent secrets granted to a profile,
//! as the platform puts them in an agent's environment.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use store::Store;
use vault::Keyring;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Print `NAME=value` lines of the secrets granted to a profile.
    Env {
        #[arg(long)]
        user: String,
        #[arg(long)]
        profile: String,
    },
}

pub async fn run(store: &Store, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Env { user, profile } => {
            let keyring = Keyring::from_env()?;
            let granted = store.granted_secrets(&keyring, &user, &profile).await?;
            // A value spanning lines would forge further NAME=value lines:
            // refused before anything is printed.
            let broken: Vec<&str> = granted
                .iter()
                .filter(|(_, value)| value.contains(['\n', '\r']))
                .map(|(name, _)| name.as_str())
                .collect();
            anyhow::ensure!(
                broken.is_empty(),
                "secret(s) {} hold line breaks and cannot be printed as NAME=value lines; nothing was printed",
                broken.join(", ")
            );
            let mut out = std::io::stdout().lock();
            for (name, value) in granted {
                writeln!(out, "{name}={}", value.as_str())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
