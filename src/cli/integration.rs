//! `integrations add|list|show|scope|default|enable|disable|rm`.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use model::config::DecryptedConfig;
use model::{Integration, IntegrationType, Scope};
use serde_json::Value;
use store::{NewIntegration, Store, StoreError};
use vault::Keyring;

use crate::cli::{AddArgs, IntegrationCommand, ScopeArgs};
use integrations::ops::{output, revoke};

use super::config_input;

pub async fn run(store: &Store, command: IntegrationCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationCommand::Add(args) => add(store, args).await,
        IntegrationCommand::List { user, kind, json } => {
            list(store, &user, kind.as_deref(), json).await
        }
        IntegrationCommand::Show { id, json } => show(store, &id, json).await,
        IntegrationCommand::Scope(args) => scope(store, args).await,
        IntegrationCommand::Default { id } => {
            let i = store.set_default(&id).await?;
            println!(
                "{} is now the default integration of user {}",
                i.id, i.user_id
            );
            Ok(ExitCode::SUCCESS)
        }
        IntegrationCommand::Enable { id } => {
            store.set_enabled(&id, true).await?;
            println!("enabled {id}");
            Ok(ExitCode::SUCCESS)
        }
        IntegrationCommand::Disable { id } => {
            store.set_enabled(&id, false).await?;
            println!("disabled {id}");
            Ok(ExitCode::SUCCESS)
        }
        IntegrationCommand::Rm { id, local_only } => {
            let integration = existing(store, &id).await?;
            let revoked = if local_only {
                "not revoked downstream (--local-only)".to_string()
            } else {
                revoke::downstream(&Keyring::from_env()?, &integration)
                    .await?
                    .message
            };
            store.delete_integration(&id).await?;
            println!("deleted {id}: {revoked}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The integration `id`, or an error saying it does not exist.
pub async fn existing(store: &Store, id: &str) -> Result<Integration, StoreError> {
    store
        .integration(id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "integration",
            id: id.to_string(),
        })
}

fn agents_list(agents: Vec<String>) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = agents
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if ids.is_empty() {
        return Err(anyhow!(
            "--agents needs at least one profile id (use --all to grant every profile)"
        ));
    }
    Ok(ids)
}

async fn add(store: &Store, args: AddArgs) -> anyhow::Result<ExitCode> {
    let kind: IntegrationType = args.kind.parse().map_err(|e: String| anyhow!(e))?;
    let (scope, profile_ids) = match args.agents {
        Some(agents) => (Scope::Agents, agents_list(agents)?),
        None => (Scope::All, Vec::new()),
    };
    let raw = config_input::read(&args.config)?;
    let config = DecryptedConfig::validate(kind, raw)?;
    let keyring = Keyring::from_env()?;
    let new = NewIntegration {
        user_id: args.user,
        kind,
        label: args.label,
        is_default: args.default,
        scope,
        profile_ids,
        bound_profile_id: args.bound_profile,
    };
    let created = store.add_integration(&keyring, &new, &config).await?;
    println!("{}", created.id);
    Ok(ExitCode::SUCCESS)
}

async fn list(
    store: &Store,
    user: &str,
    kind: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let kind = kind
        .map(|k| k.parse::<IntegrationType>().map_err(|e| anyhow!(e)))
        .transpose()?;
    let keyring = Keyring::from_env()?;
    let rows = store.integrations(user, kind).await?;
    let configs: Vec<Result<Value, String>> = rows
        .iter()
        .map(|i| output::redacted_config(&keyring, i))
        .collect();
    let mut code = ExitCode::SUCCESS;
    for e in configs.iter().filter_map(|c| c.as_ref().err()) {
        eprintln!("error: {e}");
        code = ExitCode::FAILURE;
    }
    if json {
        let out: Vec<Value> = rows
            .iter()
            .zip(configs)
            .map(|(i, c)| output::integration_json(i, c))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", output::integration_table(&rows));
    }
    Ok(code)
}

async fn show(store: &Store, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::from_env()?;
    let integration = existing(store, id).await?;
    let config = output::redacted_config(&keyring, &integration);
    let failed = config.as_ref().err().cloned();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::integration_json(&integration, config))?
        );
    } else {
        print!("{}", output::integration_detail(&integration, &config));
    }
    match failed {
        Some(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn scope(store: &Store, args: ScopeArgs) -> anyhow::Result<ExitCode> {
    let (scope, ids) = match args.agents {
        Some(agents) => (Scope::Agents, agents_list(agents)?),
        None => (Scope::All, Vec::new()),
    };
    let i = store
        .set_scope(&args.id, scope, &ids)
        .await
        .with_context(|| format!("scope of {} unchanged", args.id))?;
    println!("{}: scope {}", i.id, output::scope_text(&i));
    Ok(ExitCode::SUCCESS)
}
