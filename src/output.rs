//! How rows are printed: redacted JSON objects and plain tables.

use common::crypto::Keyring;
use common::model::{Integration, Profile, Scope};
use serde_json::{Value, json};

/// An integration as `--json` prints it; `config` holds the allowlisted
/// view, or `null` and an `error` when the row does not open.
pub fn integration_json(integration: &Integration, config: Result<Value, String>) -> Value {
    let mut row = json!({
        "id": integration.id,
        "user_id": integration.user_id,
        "type": integration.kind,
        "label": integration.label,
        "config": Value::Null,
        "enabled": integration.enabled,
        "is_default": integration.is_default,
        "scope": integration.scope,
        "profile_ids": integration.profile_ids,
        "bound_profile_id": integration.bound_profile_id,
        "status": integration.status,
        "created_at": integration.created_at,
        "updated_at": integration.updated_at,
    });
    match config {
        Ok(config) => row["config"] = config,
        Err(error) => row["error"] = Value::String(error),
    }
    row
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
            truncate(&i.label, 24),
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
    line("label:", &i.label);
    line("user:", &i.user_id);
    line("enabled:", yes_no(i.enabled));
    line("default:", yes_no(i.is_default));
    line("scope:", &scope_text(i));
    line("bound to:", i.bound_profile_id.as_deref().unwrap_or("-"));
    line("status:", i.status.as_str());
    line("created:", &i.created_at);
    line("updated:", &i.updated_at);
    match config {
        Ok(Value::Object(fields)) => {
            out += "config:\n";
            for (k, v) in fields {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => "(not set)".into(),
                    other => other.to_string(),
                };
                out += &format!("  {k}: {shown}\n");
            }
        }
        Ok(other) => out += &format!("config:      {other}\n"),
        Err(e) => out += &format!("config:      unreadable ({e})\n"),
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
            truncate(&p.name, 24),
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
