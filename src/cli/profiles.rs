//! `integrations profiles add|list|rm`.

use std::process::ExitCode;

use clap::Subcommand;
use store::{NewProfile, Store};

use integrations::ops::output;

#[derive(Subcommand)]
pub enum ProfilesCommand {
    /// Mirror a profile of the platform.
    Add {
        profile_id: String,
        #[arg(long)]
        user: String,
        /// What `@slug` routing matches; unique per user.
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// Make it the user's default profile.
        #[arg(long)]
        default: bool,
    },
    /// List a user's profiles.
    List {
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile and its id from every integration's scope.
    Rm {
        profile_id: String,
        #[arg(long)]
        user: String,
    },
}

pub async fn run(store: &Store, command: ProfilesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProfilesCommand::Add {
            profile_id,
            user,
            slug,
            name,
            default,
        } => {
            let p = store
                .add_profile(&NewProfile {
                    id: profile_id,
                    user_id: user,
                    slug,
                    name,
                    is_default: default,
                })
                .await?;
            println!(
                "added profile {} (@{}) for user {}",
                p.id, p.slug, p.user_id
            );
        }
        ProfilesCommand::List { user, json } => {
            let profiles = store.profiles(&user).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else {
                print!("{}", output::profile_table(&profiles));
            }
        }
        ProfilesCommand::Rm { profile_id, user } => {
            let touched = store.remove_profile(&user, &profile_id).await?;
            println!(
                "removed profile {profile_id}; it was taken out of the scope of {touched} integration(s)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
