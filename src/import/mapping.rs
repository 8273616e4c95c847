//! From the product's rows to ours: each row either becomes an
//! [`ImportRow`] (with what was changed on the way) or is settled here,
//! skipped or failed with its reason. The per-type config mapping of issue
//! 19 lives in [`map_config`].

use std::collections::{HashMap, HashSet};

use model::config::{DecryptedConfig, FieldValue, ValidConfig, field_names, identity_noun};
use model::ids::validate_slug;
use model::{IntegrationType, Profile, Scope};
use serde_json::{Map, Value};
use store::{ImportRow, ImportedIntegration, ImportedSecret};
use zeroize::{Zeroize, Zeroizing};

use super::crypto::Passphrase;
use super::report::{Entry, Outcome};
use super::tables::{self, Tables};

/// The scopes the product requested from Google: a grant that recorded none
/// had these, so that sending keeps working.
const GMAIL_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
];

/// The platform's shared Telegram bot, which platform-owned rows pair with.
pub struct PlatformBot {
    pub token: Zeroizing<String>,
    pub id: i64,
    pub username: String,
}

/// One row of the product and what the import makes of it.
pub struct Planned {
    pub entry: Entry,
    /// The row to write, when it was not settled already.
    pub row: Option<ImportRow>,
}

/// A decrypted config as a JSON object, its strings wiped on drop.
struct Plain(Map<String, Value>);

impl Drop for Plain {
    fn drop(&mut self) {
        fn wipe(value: &mut Value) {
            match value {
                Value::String(s) => s.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(wipe),
                Value::Object(members) => members.values_mut().for_each(wipe),
                _ => {}
            }
        }
        self.0.values_mut().for_each(wipe);
    }
}

/// A string field of `config` that is not blank.
fn text<'a>(config: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    config
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Everything the mapping needs besides one row.
pub struct Context<'a> {
    pub key: &'a Passphrase,
    pub platform_bot: Option<&'a PlatformBot>,
    /// Each user's profiles that are imported (shared ones are no user's).
    profiles: HashMap<&'a str, HashSet<&'a str>>,
    emails: &'a HashMap<String, String>,
}

impl<'a> Context<'a> {
    pub fn new(
        tables: &'a Tables,
        key: &'a Passphrase,
        platform_bot: Option<&'a PlatformBot>,
    ) -> Self {
        let mut profiles: HashMap<&str, HashSet<&str>> = HashMap::new();
        // Those this import brings over: a profile it skips grants nothing.
        for p in &tables.profiles {
            if let Some(user) = &p.user_id
                && validate_slug(&p.slug).is_ok()
            {
                profiles.entry(user).or_default().insert(&p.id);
            }
        }
        Self {
            key,
            platform_bot,
            profiles,
            emails: &tables.emails,
        }
    }
}

/// Every row of `tables`, in the order they are written: profiles, then
/// integrations, then secrets.
pub fn plan(tables: &Tables, cx: &Context) -> Vec<Planned> {
    let mut out = profiles(&tables.profiles);
    out.extend(one_user_per_identity(newest_per_user(
        tables
            .integrations
            .iter()
            .map(|row| integration(row, cx))
            .collect(),
    )));
    out.extend(tables.secrets.iter().map(|row| secret(row, cx)));
    out
}

fn profiles(rows: &[tables::Profile]) -> Vec<Planned> {
    let mut has_default = HashSet::new();
    rows.iter()
        .map(|p| {
            let mut entry = Entry::new("profiles", &p.id, p.user_id.as_deref(), &p.slug);
            let Some(user) = &p.user_id else {
                entry.outcome = Outcome::Skipped(
                    "a shared profile (no user_id): profiles here belong to one user".into(),
                );
                return Planned { entry, row: None };
            };
            if let Err(why) = validate_slug(&p.slug) {
                entry.outcome = Outcome::Skipped(why);
                return Planned { entry, row: None };
            }
            // Rows come oldest first: the first of each user is the default.
            let is_default = has_default.insert(user.clone());
            let name = if p.name.trim().is_empty() {
                p.slug.clone()
            } else {
                p.name.clone()
            };
            Planned {
                entry,
                row: Some(ImportRow::Profile(Profile {
                    id: p.id.clone(),
                    user_id: user.clone(),
                    slug: p.slug.clone(),
                    name,
                    is_default,
                    created_at: p.created_at.clone(),
                })),
            }
        })
        .collect()
}

/// The scope of a row and the ids of `profile_ids` that are profiles of its
/// user; the others are named in a note.
fn scope_of(
    scope: Option<&str>,
    profile_ids: Option<&str>,
    user: &str,
    cx: &Context,
    notes: &mut Vec<String>,
) -> Result<(Scope, Vec<String>), String> {
    let scope = match scope.unwrap_or("all") {
        "all" => Scope::All,
        "agents" => Scope::Agents,
        other => return Err(format!("unknown scope '{}'", other.escape_debug())),
    };
    let listed: Vec<String> = match profile_ids {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<Option<Vec<String>>>(text) {
            Ok(ids) => ids.unwrap_or_default(),
            Err(_) => return Err("profile_ids is not a JSON array of ids".into()),
        },
    };
    if scope == Scope::All {
        return Ok((scope, Vec::new()));
    }
    let own = cx.profiles.get(user);
    let mut kept: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for id in listed {
        if own.is_some_and(|own| own.contains(id.as_str())) {
            if !kept.contains(&id) {
                kept.push(id);
            }
        } else {
            dropped.push(id);
        }
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "dropped profile ids {}: not profiles of this user",
            dropped.join(", ")
        ));
    }
    Ok((scope, kept))
}

fn integration(row: &tables::Integration, cx: &Context) -> Planned {
    let mut entry = Entry::new("user_integrations", &row.id, Some(&row.user_id), &row.kind);
    match integration_row(row, cx, &mut entry.notes) {
        Ok(imported) => Planned {
            entry,
            row: Some(ImportRow::Integration(Box::new(imported))),
        },
        Err(outcome) => {
            entry.outcome = outcome;
            Planned { entry, row: None }
        }
    }
}

fn integration_row(
    row: &tables::Integration,
    cx: &Context,
    notes: &mut Vec<String>,
) -> Result<ImportedIntegration, Outcome> {
    let kind: IntegrationType = row.kind.parse().map_err(Outcome::Skipped)?;
    let (scope, profile_ids) = scope_of(
        row.scope.as_deref(),
        row.profile_ids.as_deref(),
        &row.user_id,
        cx,
        notes,
    )
    .map_err(Outcome::Skipped)?;
    let opened = cx
        .key
        .open(&row.encrypted_config)
        .map_err(|why| Outcome::Failed(why.into()))?;
    let mut config = match serde_json::from_slice::<Value>(&opened) {
        Ok(Value::Object(map)) => Plain(map),
        _ => return Err(Outcome::Failed("its config is not a JSON object".into())),
    };
    let mapped = map_config(kind, &mut config, &row.user_id, cx, notes)?;
    let mut enabled = row.enabled;
    if scope == Scope::Agents && profile_ids.is_empty() {
        enabled = false;
        notes.push(
            "imported disabled: its scope is agents and none of its profiles is this user's".into(),
        );
    }
    let bound_profile_id = match mapped.bound_profile {
        Some(bound)
            if !cx
                .profiles
                .get(row.user_id.as_str())
                .is_some_and(|p| p.contains(bound.as_str())) =>
        {
            notes.push(format!("unbound: {bound} is not a profile of this user"));
            None
        }
        Some(bound) if scope == Scope::Agents && !profile_ids.contains(&bound) => {
            notes.push(format!(
                "unbound: {bound} is not among the profiles it is granted to"
            ));
            None
        }
        bound => bound,
    };
    Ok(ImportedIntegration {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        kind,
        label: mapped.config.default_label.chars().take(200).collect(),
        enabled,
        is_default: row.is_default,
        scope,
        profile_ids,
        bound_profile_id,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        config: mapped.config,
    })
}

/// A config in our shape, and the Telegram binding taken out of it.
struct Mapped {
    config: ValidConfig,
    bound_profile: Option<String>,
}

/// The product's `kind` config as ours (issue 19, point 4); a field we do
/// not have is dropped and named in a note.
fn map_config(
    kind: IntegrationType,
    config: &mut Plain,
    user: &str,
    cx: &Context,
    notes: &mut Vec<String>,
) -> Result<Mapped, Outcome> {
    let c = &mut config.0;
    let mut bound_profile = None;
    let mut platform = false;
    match kind {
        IntegrationType::Slack => {
            c.remove("channel_id");
            if text(c, "team_id").is_none() || text(c, "authed_user_id").is_none() {
                return Err(Outcome::Skipped(
                    "it has no team_id or authed_user_id: reconnect Slack".into(),
                ));
            }
        }
        IntegrationType::Gmail => {
            if let Some(ms) = c.remove("token_expiry") {
                let ms = ms
                    .as_i64()
                    .or_else(|| ms.as_f64().map(|f| f as i64))
                    .or_else(|| ms.as_str().and_then(|s| s.trim().parse().ok()));
                if let Some(ms) = ms {
                    c.insert("expires_at".into(), (ms / 1000).into());
                }
            }
            if !c.contains_key("scopes") {
                c.insert("scopes".into(), GMAIL_SCOPES.into());
                notes.push(
                    "scopes set to what the product requested (gmail.readonly, gmail.send, gmail.compose)"
                        .into(),
                );
            }
        }
        IntegrationType::Telegram => {
            if let Some(owner) = c.remove("owner_tg_user_id") {
                c.insert("owner_chat_id".into(), owner);
            }
            c.remove("link_code");
            bound_profile = match c.remove("bound_profile_id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            };
            let owned = c.remove("is_platform_owned").and_then(|v| v.as_bool());
            platform = owned == Some(true) || text(c, "bot_token").is_none();
            if platform {
                let Some(bot) = cx.platform_bot else {
                    return Err(Outcome::Skipped(
                        "a pairing with the platform's bot: set PLATFORM_TELEGRAM_BOT_TOKEN to import it"
                            .into(),
                    ));
                };
                c.insert("bot_token".into(), bot.token.as_str().into());
                c.insert("bot_user_id".into(), bot.id.into());
                c.insert("bot_username".into(), bot.username.clone().into());
                c.insert("owner".into(), "platform".into());
                c.remove("webhook_secret");
                notes.push("paired with the platform's bot".into());
            } else if !c.contains_key("bot_user_id") {
                let id = text(c, "bot_token")
                    .and_then(|t| t.split(':').next())
                    .and_then(|id| id.parse::<i64>().ok());
                if let Some(id) = id {
                    c.insert("bot_user_id".into(), id.into());
                }
            }
        }
        IntegrationType::Teller => {
            c.remove("teller_user_id");
            c.remove("enrolled_at");
            if text(c, "institution_name").is_none() {
                c.insert("institution_name".into(), "Bank".into());
            }
        }
        IntegrationType::Email => {
            let Some(email) = cx.emails.get(user) else {
                return Err(Outcome::Skipped(
                    "the user has no email address in the product's \"user\" table".into(),
                ));
            };
            c.insert("to_address".into(), email.clone().into());
            smtp_credential(c);
        }
        IntegrationType::Webhook => {
            c.insert("signature".into(), "vonzio".into());
        }
    }
    let known: Vec<&str> = field_names(kind).collect();
    let mut dropped: Vec<String> = Vec::new();
    config.0.retain(|name, value| {
        let blank = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
        let keep = known.contains(&name.as_str());
        if !keep {
            dropped.push(name.clone());
        }
        keep && !blank
    });
    if !dropped.is_empty() {
        notes.push(format!("dropped config fields {}", dropped.join(", ")));
    }
    let fields: Vec<(&str, FieldValue)> = config
        .0
        .iter()
        .map(|(name, value)| (name.as_str(), FieldValue::from(value)))
        .collect();
    let mut valid =
        DecryptedConfig::from_fields(kind, &fields).map_err(|e| Outcome::Failed(e.to_string()))?;
    if platform {
        // Every user pairs the same bot: one row each, as our API keys them.
        valid.external_id = valid.external_id.map(|bot| format!("{bot}:{user}"));
    }
    Ok(Mapped {
        config: valid,
        bound_profile,
    })
}

/// An Email row that holds an SMTP credential (`smtp_host`) in the
/// product's names: ours, and `"provider": "smtp"`.
fn smtp_credential(c: &mut Map<String, Value>) {
    if text(c, "smtp_host").is_none() {
        return;
    }
    c.insert("provider".into(), "smtp".into());
    for (theirs, ours) in [
        ("smtp_user", "smtp_username"),
        ("smtp_pass", "smtp_password"),
    ] {
        if let Some(value) = c.remove(theirs) {
            c.insert(ours.into(), value);
        }
    }
    if let Some(secure) = c.remove("smtp_secure").and_then(|v| v.as_bool()) {
        let security = if secure { "tls" } else { "starttls" };
        c.insert("smtp_security".into(), security.into());
    }
    if let Some(port) = c
        .get("smtp_port")
        .and_then(|p| p.as_str()?.trim().parse::<u16>().ok())
    {
        c.insert("smtp_port".into(), port.into());
    }
}

/// The place a row takes once per user, if any: every type but Telegram
/// and Teller, and a pairing with the platform's bot (`<bot>:<user>`).
fn slot(i: &ImportedIntegration) -> Option<(String, &'static str)> {
    let slot = if !i.kind.allows_many_per_user() {
        i.kind.as_str()
    } else if i
        .config
        .external_id
        .as_deref()
        .is_some_and(|e| e.contains(':'))
    {
        "telegram (platform bot)"
    } else {
        return None;
    };
    Some((i.user_id.clone(), slot))
}

/// Of the rows that take one [`slot`], the newest is kept and the others are
/// skipped with the id that was kept.
fn integration_of(p: &Planned) -> Option<&ImportedIntegration> {
    match &p.row {
        Some(ImportRow::Integration(i)) => Some(i),
        _ => None,
    }
}

fn newest_per_user(mut planned: Vec<Planned>) -> Vec<Planned> {
    let age = |i: &ImportedIntegration| (i.created_at.clone(), i.updated_at.clone(), i.id.clone());
    let mut newest: HashMap<(String, &str), (usize, String)> = HashMap::new();
    for (at, i) in planned
        .iter()
        .enumerate()
        .filter_map(|(at, p)| Some((at, integration_of(p)?)))
    {
        let Some(key) = slot(i) else { continue };
        let newer = newest.get(&key).is_none_or(|(kept, _)| {
            integration_of(&planned[*kept]).is_some_and(|other| age(i) > age(other))
        });
        if newer {
            newest.insert(key, (at, i.id.clone()));
        }
    }
    for (at, p) in planned.iter_mut().enumerate() {
        let Some(key) = integration_of(p).and_then(slot) else {
            continue;
        };
        let (kept, id) = &newest[&key];
        if *kept != at {
            p.entry.outcome = Outcome::Skipped(format!(
                "the user has a newer {} integration, {id}, which is imported instead",
                key.1
            ));
            p.entry.notes.clear();
            p.row = None;
        }
    }
    planned
}

/// Rows of several users that name one identity (a Slack user, a Gmail
/// address, a bot, an enrollment) are all skipped: which user it belongs to
/// is for the provider's flow to prove, not for the rows' age or order.
fn one_user_per_identity(mut planned: Vec<Planned>) -> Vec<Planned> {
    let mut users: HashMap<(IntegrationType, &str), HashSet<&str>> = HashMap::new();
    for i in planned.iter().filter_map(integration_of) {
        if let Some(identity) = &i.config.external_id {
            users
                .entry((i.kind, identity))
                .or_default()
                .insert(&i.user_id);
        }
    }
    let shared: HashSet<(IntegrationType, String)> = users
        .into_iter()
        .filter(|(_, users)| users.len() > 1)
        .map(|((kind, identity), _)| (kind, identity.to_string()))
        .collect();
    for p in &mut planned {
        let Some(kind) = integration_of(p)
            .filter(|i| {
                i.config
                    .external_id
                    .as_ref()
                    .is_some_and(|e| shared.contains(&(i.kind, e.clone())))
            })
            .map(|i| i.kind)
        else {
            continue;
        };
        p.entry.outcome = Outcome::Skipped(format!(
            "another user's row names the same {}: it can be connected only once, so its user must connect it again here",
            identity_noun(kind)
        ));
        p.entry.notes.clear();
        p.row = None;
    }
    planned
}

fn secret(row: &tables::Secret, cx: &Context) -> Planned {
    let mut entry = Entry::new("user_secrets", &row.id, Some(&row.user_id), &row.name);
    let scoped = scope_of(
        row.scope.as_deref(),
        row.profile_ids.as_deref(),
        &row.user_id,
        cx,
        &mut entry.notes,
    );
    let (scope, profile_ids) = match scoped {
        Ok(scoped) => scoped,
        Err(why) => {
            entry.outcome = Outcome::Skipped(why);
            return Planned { entry, row: None };
        }
    };
    let value = match cx.key.open(&row.encrypted_value) {
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => Zeroizing::new(text.to_string()),
            Err(_) => {
                entry.outcome = Outcome::Failed("its value is not UTF-8 text".into());
                return Planned { entry, row: None };
            }
        },
        Err(why) => {
            entry.outcome = Outcome::Failed(why.into());
            return Planned { entry, row: None };
        }
    };
    if scope == Scope::Agents && profile_ids.is_empty() {
        entry.notes.push(
            "grants no profile: its scope is agents and none of its profiles is this user's".into(),
        );
    }
    Planned {
        entry,
        row: Some(ImportRow::Secret(ImportedSecret {
            id: row.id.clone(),
            user_id: row.user_id.clone(),
            name: row.name.clone(),
            value,
            scope,
            profile_ids,
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use model::IntegrationType;
    use model::config::DecryptedConfig;
    use serde_json::json;
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn an_smtp_credential_in_the_products_names_becomes_a_valid_smtp_config() {
        let Value::Object(mut c) = json!({"smtp_host": "mail.example.com", "smtp_port": "465",
            "smtp_secure": true, "smtp_user": "me@example.com", "smtp_pass": "secret",
            "from_address": "me@example.com", "to_address": "me@example.com"})
        else {
            unreachable!()
        };
        smtp_credential(&mut c);
        assert_eq!(
            Value::Object(c.clone()),
            json!({"smtp_host": "mail.example.com", "smtp_port": 465, "smtp_security": "tls",
                "smtp_username": "me@example.com", "smtp_password": "secret", "provider": "smtp",
                "from_address": "me@example.com", "to_address": "me@example.com"})
        );
        let json = Zeroizing::new(Value::Object(c).to_string().into_bytes());
        assert!(DecryptedConfig::validate(IntegrationType::Email, json).is_ok());
        // A Resend key is left as it is.
        let Value::Object(mut resend) = json!({"api_key": "re_1", "from_address": "a@b.c"}) else {
            unreachable!()
        };
        smtp_credential(&mut resend);
        assert!(!resend.contains_key("provider"));
    }
}
