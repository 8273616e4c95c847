//! A plan over streamable HTTP: the same servers, each an endpoint of the
//! sidecars' service with one capability token minted for this running agent.
//! It holds no keyring reference, no store URL and no provider secret: the
//! token is all the agent gets, and it opens only these servers until it
//! expires or its session is revoked. For runtimes that speak only stdio,
//! [`HttpPlan::relayed`] gives the same servers as stdio relays to the
//! service, with the token (and nothing else secret) in their environment.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use store::{Minter, Store};
use zeroize::Zeroizing;

use crate::plan::{Plan, ResolveError};

/// A plan whose servers are reached over HTTP with one capability token.
pub struct HttpPlan {
    plan: Plan,
    base_url: String,
    token: Zeroizing<String>,
    /// When the token stops working (RFC 3339).
    pub expires_at: String,
}

impl std::fmt::Debug for HttpPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPlan")
            .field("session_id", &self.plan.session_id)
            .field("expires_at", &self.expires_at)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Mints the capability token of `plan`'s running agent (its session must be
/// known) for the plan's servers, valid for `ttl`, served under `base_url`
/// (e.g. `https://mcp.example.com`, which serves `/mcp/<server>`), recording
/// `minter`. The token never crosses a network in clear text: `base_url` is
/// `https://`, or `http://` on loopback only ([`check_base_url`]).
pub async fn mint(
    store: &Store,
    plan: Plan,
    base_url: &str,
    ttl: Duration,
    minter: Minter<'_>,
) -> Result<HttpPlan, ResolveError> {
    let base_url = check_base_url(base_url).map_err(ResolveError::Invalid)?;
    let session = plan.session_id.as_deref().ok_or_else(|| {
        ResolveError::Invalid(
            "a plan over HTTP needs the session id: its token is minted for that session".into(),
        )
    })?;
    let servers: Vec<&str> = plan.servers.iter().map(|s| s.name.as_str()).collect();
    let minted = store
        .mint_capability(
            &plan.user_id,
            &plan.profile_id,
            session,
            &servers,
            ttl,
            minter,
        )
        .await?;
    Ok(HttpPlan {
        base_url,
        token: minted.token,
        expires_at: minted.expires_at,
        plan,
    })
}

/// The base URL of the sidecars' service as a plan hands it out: its
/// normalized form (WHATWG, as every client parses it; without a trailing
/// `/`), when a capability token may travel to it: `https://`, or `http://`
/// to 127.0.0.0/8, `::1` or `localhost`, with no user info; a sentence
/// saying why not.
pub fn check_base_url(base_url: &str) -> Result<String, String> {
    match model::endpoint::token_url(base_url.trim_end_matches('/')) {
        Some(url) => Ok(url.as_str().trim_end_matches('/').to_string()),
        None => Err(format!(
            "the MCP service's URL '{}' must be https://, or http:// on loopback only \
             (127.0.0.0/8, ::1, localhost), without user info: a capability token never travels in clear text",
            base_url
                .chars()
                .take(200)
                .collect::<String>()
                .escape_debug()
        )),
    }
}

impl HttpPlan {
    /// The session the token was minted for.
    pub fn session_id(&self) -> &str {
        self.plan.session_id.as_deref().unwrap_or_default()
    }

    fn entry(&self, name: &str) -> Value {
        json!({
            "type": "http",
            "url": format!("{}/mcp/{name}", self.base_url),
            "headers": {"Authorization": format!("Bearer {}", self.token.as_str())},
        })
    }

    /// `{"mcpServers": {...}}` as Claude Code's `.mcp.json` reads it.
    pub fn claude_code(&self) -> Value {
        let servers: serde_json::Map<String, Value> = self
            .plan
            .servers
            .iter()
            .map(|s| (s.name.clone(), self.entry(&s.name)))
            .collect();
        json!({ "mcpServers": servers })
    }

    /// The plan's stdio servers (their commands as [`plan`](crate::plan)
    /// builds them) as relays: each started with only `INTEGRATIONS_URL`
    /// and `INTEGRATIONS_TOKEN`, and relaying to its endpoint with the token.
    pub fn relayed(&self) -> Plan {
        let mut plan = self.plan.clone();
        for server in &mut plan.servers {
            server.env = BTreeMap::from([
                ("INTEGRATIONS_URL".to_string(), self.base_url.clone()),
                ("INTEGRATIONS_TOKEN".to_string(), self.token.to_string()),
            ]);
        }
        plan
    }

    /// The whole relayed plan, with the token's expiry.
    pub fn relayed_json(&self) -> Value {
        let mut plan = serde_json::to_value(self.relayed()).unwrap_or_default();
        plan["expires_at"] = json!(self.expires_at);
        plan
    }

    /// The whole plan, each server as its HTTP endpoint.
    pub fn json(&self) -> Value {
        let p = &self.plan;
        let servers: Vec<Value> = p
            .servers
            .iter()
            .map(|s| {
                let mut entry = self.entry(&s.name);
                entry["name"] = json!(s.name);
                entry
            })
            .collect();
        json!({
            "user_id": p.user_id,
            "profile_id": p.profile_id,
            "session_id": p.session_id,
            "expires_at": self.expires_at,
            "servers": servers,
            "allowed_tools": p.allowed_tools,
            "notification_channels": p.notification_channels,
            "inbound": p.inbound,
        })
    }
}
