//! How rows are printed: redacted JSON objects and plain tables.

use model::sealing::Sealer;
use model::{Integration, IntegrationType, Profile, ReauthReason, Scope, Status};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use vault::Keyring;

/// An integration as `--json` prints it and the API returns it: `config` is
/// the allowlisted view, or `null` with an `error` when the row does not open.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IntegrationView {
    pub id: String,
    pub user_id: String,
    /// slack, telegram, gmail, teller, email or webhook.
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    pub label: String,
    /// Secret fields show as "********"; unknown fields are left out.
    pub config: Value,
    pub enabled: bool,
    pub is_default: bool,
    /// `all` or `agents`.
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    pub bound_profile_id: Option<String>,
    /// `active` or `needs_reauth`.
    pub status: Status,
    /// Why it needs its user (`needs_reauth` only): `provider_refused`,
    /// `enrollment_disconnected` or `identity_taken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<ReauthReason>,
    /// The provider's words when it refused (`needs_reauth` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// Since when it needs its user (`needs_reauth` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl IntegrationView {
    /// The view of `integration` with its redacted config (or why it does not open).
    pub fn new(integration: &Integration, config: Result<Value, String>) -> Self {
        let (config, error) = match config {
            Ok(config) => (config, None),
            Err(error) => (Value::Null, Some(error)),
        };
        Self {
            id: integration.id.clone(),
            user_id: integration.user_id.clone(),
            kind: integration.kind,
            label: integration.label.clone(),
            config,
            enabled: integration.enabled,
            is_default: integration.is_default,
            scope: integration.scope,
            profile_ids: integration.profile_ids.clone(),
            bound_profile_id: integration.bound_profile_id.clone(),
            status: integration.status,
            status_reason: integration.status_note.as_ref().map(|n| n.reason),
            status_detail: integration.status_note.as_ref().map(|n| n.detail.clone()),
            status_since: integration.status_note.as_ref().map(|n| n.since.clone()),
            created_at: integration.created_at.clone(),
            updated_at: integration.updated_at.clone(),
            error,
        }
    }
}

/// An integration as `--json` prints it.
pub fn integration_json(integration: &Integration, config: Result<Value, String>) -> Value {
    serde_json::to_value(IntegrationView::new(integration, config)).unwrap_or(Value::Null)
}

/// The redacted config of `integration`, or the error naming it.
pub fn redacted_config(keyring: &Keyring, integration: &Integration) -> Result<Value, String> {
    keyring
        .open_config(integration)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            c.redacted(integration.kind)
                .map_err(|e| format!("integration {}: {e}", integration.id))
        })
}

/// `all`, or `agents: p1, p2`.
pub fn scope_text(integration: &Integration) -> String {
    match integration.scope {
        Scope::All => "all".into(),
        Scope::Agents if integration.profile_ids.is_empty() => {
            "agents: (none; grants nothing)".into()
        }
        Scope::Agents => format!("agents: {}", integration.profile_ids.join(", ")),
    }
}

/// `text` with its control characters (line ends, escape sequences, C1)
/// and the marks that reorder text on screen (bidirectional overrides and
/// isolates) written as escapes, e.g. `\n`, `\u{1b}`: what a user or
/// another system wrote cannot forge a line or drive the terminal.
pub fn printable(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A plain table of integrations, one row each.
pub fn integration_table(rows: &[Integration]) -> String {
    let mut out = format!(
        "{:<26} {:<9} {:<24} {:<8} {:<8} {:<13} {}\n",
        "ID", "TYPE", "LABEL", "ENABLED", "DEFAULT", "STATUS", "SCOPE"
    );
    for i in rows {
        out += &format!(
            "{:<26} {:<9} {:<24} {:<8} {:<8} {:<13} {}\n",
            i.id,
            i.kind,
            truncate(&printable(&i.label), 24),
            yes_no(i.enabled),
            yes_no(i.is_default),
            i.status.as_str(),
            scope_text(i)
        );
    }
    out
}

/// One integration, a field a line, with its redacted config.
pub fn integration_detail(i: &Integration, config: &Result<Value, String>) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out += &format!("{k:<13}{v}\n");
    line("id:", &i.id);
    line("type:", i.kind.as_str());
    line("label:", &printable(&i.label));
    line("user:", &i.user_id);
    line("enabled:", yes_no(i.enabled));
    line("default:", yes_no(i.is_default));
    line("scope:", &scope_text(i));
    line("bound to:", i.bound_profile_id.as_deref().unwrap_or("-"));
    line("status:", i.status.as_str());
    if let Some(note) = &i.status_note {
        line(
            "why:",
            &format!(
                "{} since {}: {}",
                note.reason.as_str(),
                note.since,
                printable(&note.detail)
            ),
        );
    }
    line("created:", &i.created_at);
    line("updated:", &i.updated_at);
    match config {
        Ok(Value::Object(fields)) => {
            out += "config:\n";
            for (k, v) in fields {
                let shown = match v {
                    Value::String(s) => printable(s),
                    Value::Null => "(not set)".into(),
                    other => other.to_string(),
                };
                out += &format!("  {}: {shown}\n", printable(k));
            }
        }
        Ok(other) => out += &format!("config:      {other}\n"),
        Err(e) => out += &format!("config:      unreadable ({})\n", printable(e)),
    }
    out
}

/// A plain table of profiles.
pub fn profile_table(rows: &[Profile]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<24} {:<8} {}\n",
        "ID", "SLUG", "NAME", "DEFAULT", "CREATED"
    );
    for p in rows {
        out += &format!(
            "{:<24} {:<20} {:<24} {:<8} {}\n",
            p.id,
            p.slug,
            truncate(&printable(&p.name), 24),
            yes_no(p.is_default),
            p.created_at
        );
    }
    out
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars().take(width - 1).chain(['…']).collect()
    }
}
