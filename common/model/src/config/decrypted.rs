//! A decrypted config: validated on write (required fields, shapes, the
//! external identity and a default label derived), rewritten with changes,
//! and shown through the allowlisted redacted view.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::fields::{Field, fields, names, provider_of};
use super::identity::{identity_of, identity_value, server_managed};
use super::input::{ConfigInput, FieldValue, InputValue};
use super::scan::{Mode, Scanned, scan};
use super::{ConfigError, MASK};
use crate::IntegrationType;

/// A decrypted (or about to be encrypted) config: JSON bytes in a buffer that
/// is zeroized on drop, printed as redacted by `Debug`.
pub struct DecryptedConfig {
    json: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for DecryptedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecryptedConfig(<redacted>)")
    }
}

/// A config that passed validation, with the clear-text facts the store keeps
/// beside it.
#[derive(Debug)]
pub struct ValidConfig {
    pub config: DecryptedConfig,
    /// The external identity ([`DecryptedConfig::identity`]); the store
    /// keeps it in `external_id`.
    pub external_id: Option<String>,
    /// A display name derived from non-secret fields.
    pub default_label: String,
}

impl DecryptedConfig {
    /// Wraps bytes that came out of an authenticated envelope: for the
    /// vault, which opens them.
    pub fn from_trusted(json: Zeroizing<Vec<u8>>) -> Self {
        Self { json }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    /// Validates `json` as the config of a `kind` integration: a JSON object
    /// with every required field, no unknown field, each of the right shape.
    pub fn validate(
        kind: IntegrationType,
        json: Zeroizing<Vec<u8>>,
    ) -> Result<ValidConfig, ConfigError> {
        let scanned = scan(kind, &json, Mode::Validate)?;
        let clear = |name: &str| {
            scanned.iter().find_map(|(f, v)| match v {
                Scanned::Clear(v) if f.name == name => Some(id_text(v)),
                _ => None,
            })
        };
        let provider = provider_of(kind, clear("provider").as_deref());
        let is_for = |f: &Field| provider.is_none_or(|p| f.is_for(p));
        if let (Some(provider), Some((f, _))) = (provider, scanned.iter().find(|(f, _)| !is_for(f)))
        {
            return Err(ConfigError(format!(
                "{kind} config field '{}' is for provider '{}', not '{provider}' (set 'provider' to choose)",
                f.name,
                f.provider.unwrap_or_default()
            )));
        }
        for f in fields(kind) {
            if f.required && is_for(f) && !scanned.iter().any(|(s, _)| s.name == f.name) {
                return Err(ConfigError(format!(
                    "{kind} config is missing the required field '{}' (required: {})",
                    f.name,
                    names(kind, |f| f.required && is_for(f))
                )));
            }
        }
        let external_id = identity_in(kind, &scanned);
        let default_label = match kind {
            IntegrationType::Slack => clear("team_name").or_else(|| clear("team_id")),
            IntegrationType::Telegram => {
                clear("bot_username").map(|u| format!("@{}", u.trim_start_matches('@')))
            }
            IntegrationType::Gmail => clear("email"),
            IntegrationType::Teller => clear("institution_name"),
            IntegrationType::Email => clear("from_address"),
            IntegrationType::Webhook => scanned.iter().find_map(|(f, v)| match v {
                Scanned::Secret(Some(url)) if f.name == "url" => url_host(url),
                _ => None,
            }),
        }
        .unwrap_or_else(|| kind.to_string());
        if kind == IntegrationType::Webhook && default_label == kind.as_str() {
            return Err(ConfigError(
                "webhook config field 'url' must be an http(s) URL with a host".into(),
            ));
        }
        Ok(ValidConfig {
            config: DecryptedConfig { json },
            external_id,
            default_label,
        })
    }

    /// The external identity of this `kind` config: the values of its
    /// identity fields (`IDENTITIES`) joined by `:`, case-folded where the
    /// type says so; `None` for a type without one, or when a field is
    /// missing. Reads no secret.
    pub fn identity(&self, kind: IntegrationType) -> Option<String> {
        identity_in(kind, &scan(kind, &self.json, Mode::Redact).ok()?)
    }

    /// The value of one text field (secret or not) of this `kind` config, in
    /// a zeroizing buffer; `None` when it is not set.
    pub fn get(
        &self,
        kind: IntegrationType,
        name: &str,
    ) -> Result<Option<Zeroizing<String>>, ConfigError> {
        let scanned = scan(kind, &self.json, Mode::Validate)?;
        Ok(scanned
            .into_iter()
            .find(|(f, _)| f.name == name)
            .and_then(|(_, v)| match v {
                Scanned::Secret(text) => text,
                Scanned::Clear(v) => Some(Zeroizing::new(id_text(&v))),
            }))
    }

    /// This `kind` config with `updates` set (added or replaced), validated
    /// again.
    pub fn with_fields(
        &self,
        kind: IntegrationType,
        updates: &[(&str, FieldValue<'_>)],
    ) -> Result<ValidConfig, ConfigError> {
        self.rewritten(
            kind,
            |name| updates.iter().any(|(n, _)| *n == name),
            updates.iter().map(|(name, value)| (*name, value.clone())),
        )
    }

    /// A new `kind` config of `fields` (a provider's grant), validated.
    pub fn from_fields(
        kind: IntegrationType,
        fields: &[(&str, FieldValue<'_>)],
    ) -> Result<ValidConfig, ConfigError> {
        Self::empty().with_fields(kind, fields)
    }

    /// A new `kind` config of the fields a request sent, validated.
    pub fn from_input(
        kind: IntegrationType,
        input: &ConfigInput,
    ) -> Result<ValidConfig, ConfigError> {
        Self::empty().rewritten(
            kind,
            |_| false,
            input.0.iter().map(|(name, value)| {
                let value = match value {
                    InputValue::Text(text) => FieldValue::Text(text),
                    InputValue::Json(json) => FieldValue::Json(json.clone()),
                };
                (name.as_str(), value)
            }),
        )
    }

    fn empty() -> Self {
        Self {
            json: Zeroizing::new(b"{}".to_vec()),
        }
    }

    /// This `kind` config with `changes` merged in: a field set to JSON null
    /// is removed, any other value added or replaced; validated again, so
    /// that an error names a field, never a value. Secret values are copied
    /// only into zeroizing buffers.
    pub fn merged(
        &self,
        kind: IntegrationType,
        changes: &Map<String, Value>,
    ) -> Result<ValidConfig, ConfigError> {
        if let Some((name, why)) = changes
            .keys()
            .find_map(|name| Some((name, server_managed(kind, name)?)))
        {
            return Err(ConfigError(format!("{kind} config field '{name}' {why}")));
        }
        self.rewritten(
            kind,
            |name| changes.contains_key(name),
            changes
                .iter()
                .map(|(name, value)| (name.as_str(), FieldValue::from(value))),
        )
    }

    /// Writes the stored fields that `replaced` does not name, then `added`
    /// (but for nulls), into a new zeroizing buffer, and validates the result.
    fn rewritten<'a>(
        &self,
        kind: IntegrationType,
        replaced: impl Fn(&str) -> bool,
        added: impl Iterator<Item = (&'a str, FieldValue<'a>)>,
    ) -> Result<ValidConfig, ConfigError> {
        let scanned = scan(kind, &self.json, Mode::Validate)?;
        let added: Vec<(&str, FieldValue)> = added
            .filter(|(_, value)| !matches!(value, FieldValue::Json(Value::Null)))
            .collect();
        let extra: usize = added
            .iter()
            .map(|(name, value)| 6 * name.len() + value.max_len() + 4)
            .sum();
        // Escaping can grow a string up to six times (`\u00XX`): sized so
        // that the buffer holding secrets is never reallocated.
        let mut json = Zeroizing::new(Vec::with_capacity(6 * self.json.len() + extra + 2));
        json.push(b'{');
        for (f, v) in &scanned {
            if replaced(f.name) {
                continue;
            }
            match v {
                Scanned::Clear(v) => write_field(&mut json, f.name, v),
                Scanned::Secret(Some(text)) => write_field(&mut json, f.name, text.as_str()),
                Scanned::Secret(None) => {}
            }
        }
        for (name, value) in added {
            match value {
                FieldValue::Text(text) => write_field(&mut json, name, text),
                FieldValue::Json(v) => write_field(&mut json, name, &v),
            }
        }
        json.push(b'}');
        Self::validate(kind, json)
    }

    /// The allowlisted view of this config: non-secret fields as stored,
    /// secret fields that are set as [`MASK`], nothing else.
    pub fn redacted(&self, kind: IntegrationType) -> Result<Value, ConfigError> {
        let scanned = scan(kind, &self.json, Mode::Redact)?;
        let mut out = Map::new();
        for f in fields(kind) {
            let found = scanned.iter().find(|(s, _)| s.name == f.name);
            match (found, f.secret) {
                (Some((_, Scanned::Clear(v))), false) => {
                    out.insert(f.name.into(), v.clone());
                }
                (Some(_), true) => {
                    out.insert(f.name.into(), Value::String(MASK.into()));
                }
                _ => {}
            }
        }
        Ok(Value::Object(out))
    }
}

/// The identity of a scanned `kind` config ([`DecryptedConfig::identity`]).
fn identity_in(kind: IntegrationType, scanned: &[(&'static Field, Scanned)]) -> Option<String> {
    let fields = identity_of(kind)?.fields;
    let mut parts = Vec::with_capacity(fields.len());
    for name in fields {
        parts.push(scanned.iter().find_map(|(f, v)| match v {
            Scanned::Clear(v) if f.name == *name => Some(id_text(v)),
            _ => None,
        })?);
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    identity_value(kind, &parts)
}

/// Appends `"name":value` to a JSON object being written into `json`.
fn write_field(json: &mut Vec<u8>, name: &str, value: &(impl serde::Serialize + ?Sized)) {
    if json.len() > 1 {
        json.push(b',');
    }
    // Writing strings and JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *json, name);
    json.push(b':');
    let _ = serde_json::to_writer(&mut *json, value);
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

/// The host of an http(s) URL, without user info or port.
fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    ok.then(|| host.to_ascii_lowercase())
}
