//! The injection plan for one running profile.

use std::collections::BTreeMap;
use std::path::Path;

use model::channel::channel_string;
use model::scope::is_granted;
use model::{Integration, IntegrationType, Profile};
use serde::Serialize;
use serde_json::{Value, json};
use store::{Store, StoreError};

use crate::env::SidecarEnv;

/// Who is running, and where the sidecar binaries are.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    pub user_id: &'a str,
    pub profile_id: &'a str,
    pub session_id: Option<&'a str>,
    /// The directory holding `mcp-notify`, `mcp-gmail` and `mcp-teller`.
    pub bin_dir: &'a Path,
}

/// One stdio MCP server to spawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// How messages on an inbound surface reach this profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// A Telegram bot bound to this profile: every message comes here.
    Bound,
    /// Unprefixed messages come here (this is the user's default profile and
    /// the surface is not bound elsewhere); `@slug` may still send them elsewhere.
    Default,
    /// Only messages that start with `@<this profile's slug>`.
    Mention,
}

/// A Slack or Telegram integration whose messages may route to this profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundSurface {
    pub integration_id: String,
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    pub label: String,
    pub routing: Routing,
}

/// What the platform gives one running agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub user_id: String,
    pub profile_id: String,
    pub session_id: Option<String>,
    pub servers: Vec<ServerSpec>,
    pub allowed_tools: Vec<String>,
    pub notification_channels: Vec<String>,
    pub inbound: Vec<InboundSurface>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Unknown, or a profile of another user: the same answer for both.
    #[error("profile '{profile_id}' is not a profile of user '{user_id}'")]
    ProfileNotFound { user_id: String, profile_id: String },
    /// The request itself is wrong (a sentence saying what to change).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the plan for `request` from clear-text metadata: one indexed read
/// of the user's profiles and integrations, no decryption.
pub async fn plan(
    store: &Store,
    env: &SidecarEnv,
    request: &PlanRequest<'_>,
) -> Result<Plan, ResolveError> {
    let snapshot = store.snapshot(request.user_id, None).await?;
    let profile =
        snapshot
            .profile(request.profile_id)
            .ok_or_else(|| ResolveError::ProfileNotFound {
                user_id: request.user_id.into(),
                profile_id: request.profile_id.into(),
            })?;
    Ok(build(
        env,
        request,
        profile,
        &snapshot.profiles,
        &snapshot.integrations,
    ))
}

fn build(
    env: &SidecarEnv,
    request: &PlanRequest<'_>,
    profile: &Profile,
    profiles: &[Profile],
    integrations: &[Integration],
) -> Plan {
    let granted: Vec<&Integration> = integrations
        .iter()
        .filter(|i| is_granted(i, Some(profile)))
        .collect();
    let has = |kind| granted.iter().any(|i| i.kind == kind);

    let mut servers = vec!["notify"];
    if has(IntegrationType::Gmail) {
        servers.push("gmail");
    }
    if has(IntegrationType::Teller) {
        servers.push("teller");
    }
    let allowed_tools = servers
        .iter()
        .map(|s| match *s {
            "notify" => "mcp__notify__notify_user".to_string(),
            other => format!("mcp__{other}__*"),
        })
        .collect();
    let servers = servers
        .into_iter()
        .map(|name| ServerSpec {
            name: name.into(),
            command: request
                .bin_dir
                .join(format!("mcp-{name}"))
                .display()
                .to_string(),
            args: Vec::new(),
            env: env.for_server(
                name,
                request.user_id,
                request.profile_id,
                request.session_id,
            ),
        })
        .collect();

    let notification_channels = granted
        .iter()
        .filter(|i| i.kind.is_channel())
        .map(|i| channel_string(i))
        .collect();
    let inbound = granted
        .iter()
        .filter(|i| matches!(i.kind, IntegrationType::Slack | IntegrationType::Telegram))
        .map(|i| InboundSurface {
            integration_id: i.id.clone(),
            kind: i.kind,
            label: i.label.clone(),
            // Where `route` sends a message without `@slug`.
            routing: match crate::route::unprefixed(i, profiles) {
                Ok(target) if target.id != profile.id => Routing::Mention,
                Ok(_) if i.bound_profile_id.is_some() => Routing::Bound,
                Ok(_) => Routing::Default,
                Err(_) => Routing::Mention,
            },
        })
        .collect();

    Plan {
        user_id: request.user_id.into(),
        profile_id: request.profile_id.into(),
        session_id: request.session_id.map(Into::into),
        servers,
        allowed_tools,
        notification_channels,
        inbound,
    }
}

impl Plan {
    /// The plan as Claude Code's `.mcp.json` (also what `--mcp-config` reads).
    pub fn claude_code(&self) -> Value {
        let servers: serde_json::Map<String, Value> = self
            .servers
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    json!({"type": "stdio", "command": s.command, "args": s.args, "env": s.env}),
                )
            })
            .collect();
        json!({ "mcpServers": servers })
    }
}
