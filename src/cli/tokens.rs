//! `integrations tokens create|list|revoke`: the API's bearer tokens.

use std::process::ExitCode;

use clap::Subcommand;
use store::Store;

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create an API token for a user; it is printed once and only its SHA-256 is kept.
    Create {
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "api")]
        name: String,
    },
    /// List a user's tokens (never the tokens themselves).
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke one of a user's tokens.
    Revoke {
        token_id: String,
        #[arg(long)]
        user: String,
    },
}

pub async fn run(store: &Store, command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create { user, name } => {
            let (row, token) = store.create_api_token(&user, &name).await?;
            eprintln!("created {} for {user}; the token is shown once:", row.id);
            println!("{}", token.as_str());
        }
        TokensCommand::List { user } => {
            println!("{:<26} {:<20} {:<26} LAST USED", "ID", "NAME", "CREATED");
            for t in store.api_tokens(&user).await? {
                println!(
                    "{:<26} {:<20} {:<26} {}",
                    t.id,
                    t.name,
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokensCommand::Revoke { token_id, user } => {
            store.revoke_api_token(&user, &token_id).await?;
            println!("revoked {token_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
