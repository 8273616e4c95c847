//! Per-type integration configs: which fields each type has, which are
//! secret, validation on write, and the redacted view on read.
//!
//! The redacted view is an allowlist: only fields declared non-secret are
//! shown; declared secret fields appear as [`MASK`]; anything else is left out.
//! Scanning never copies a secret value out of its zeroizing buffer.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize as _, Deserializer as _};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::IntegrationType;

/// What a secret field shows in every redacted view.
pub const MASK: &str = "********";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A non-empty string.
    Text,
    /// A non-empty string or an integer (Telegram ids).
    Id,
    /// An array of strings.
    TextList,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

struct Field {
    name: &'static str,
    required: bool,
    secret: bool,
    shape: Shape,
}

const fn field(name: &'static str, required: bool, secret: bool, shape: Shape) -> Field {
    Field {
        name,
        required,
        secret,
        shape,
    }
}

use Shape::{Id, OneOf, Text, TextList};

const SLACK: &[Field] = &[
    field("bot_token", true, true, Text),
    field("team_id", true, false, Text),
    field("authed_user_id", true, false, Text),
    field("team_name", false, false, Text),
    field("bot_user_id", false, false, Text),
];
/// `webhook_secret` is what Telegram echoes on our webhook; `owner` is
/// `platform` for the platform's shared bot.
const TELEGRAM: &[Field] = &[
    field("bot_token", true, true, Text),
    field("bot_user_id", true, false, Id),
    field("bot_username", true, false, Text),
    field("owner_chat_id", false, false, Id),
    field("webhook_secret", false, true, Text),
    field("owner", false, false, Text),
];
/// `access_token` and `expires_at` (unix seconds) are the cached grant a
/// sidecar refreshes and writes back.
const GMAIL: &[Field] = &[
    field("email", true, false, Text),
    field("refresh_token", true, true, Text),
    field("scopes", false, false, TextList),
    field("access_token", false, true, Text),
    field("expires_at", false, false, Id),
];
const TELLER: &[Field] = &[
    field("enrollment_id", true, false, Text),
    field("access_token", true, true, Text),
    field("institution_name", true, false, Text),
    field("institution_id", false, false, Text),
];
const EMAIL: &[Field] = &[
    field("api_key", true, true, Text),
    field("from_address", true, false, Text),
    field("to_address", true, false, Text),
];
/// A webhook URL often carries a capability token in its path, so it is
/// secret; its host becomes the label. `signature` is how deliveries are
/// signed: [`WEBHOOK_SIGNATURES`], Standard Webhooks when absent.
const WEBHOOK: &[Field] = &[
    field("url", true, true, Text),
    field("secret", false, true, Text),
    field("signature", false, false, OneOf(WEBHOOK_SIGNATURES)),
];

/// The values of a webhook config's `signature`: `standard-webhooks` (the
/// default) or `vonzio`, the body and `X-Signature-256` header of the
/// product these documents describe.
pub const WEBHOOK_SIGNATURES: &[&str] = &["standard-webhooks", "vonzio"];

/// Each type's external identity: the fields that name the account a row
/// stands for (a Slack team and the user who connected the app, a Telegram
/// bot, a Gmail address, a Teller enrollment), why only its provider's flow
/// writes them, and whether case is folded. The store keeps the identity in
/// `external_id`, unique per type across users; every identity field is
/// server-managed. A type that gains an identity (an SMTP login) is a line
/// here.
const IDENTITIES: &[Identity] = &[
    Identity {
        kind: IntegrationType::Slack,
        noun: "Slack user",
        fields: &["team_id", "authed_user_id"],
        fold_case: false,
        why: "names the Slack user this integration is, and changes only by connecting Slack again (Add to Slack)",
    },
    Identity {
        kind: IntegrationType::Telegram,
        noun: "Telegram bot",
        fields: &["bot_user_id"],
        fold_case: false,
        why: "is the bot's own id, checked with Telegram: connect another bot as a new integration",
    },
    Identity {
        kind: IntegrationType::Gmail,
        noun: "Gmail address",
        fields: &["email"],
        fold_case: true,
        why: "names the mailbox this integration is, and changes only by connecting Gmail again",
    },
    Identity {
        kind: IntegrationType::Teller,
        noun: "Teller enrollment",
        fields: &["enrollment_id"],
        fold_case: false,
        why: "changes only by connecting the bank again through Teller Connect",
    },
];

/// One entry of [`IDENTITIES`].
struct Identity {
    kind: IntegrationType,
    /// What the identity is, in a sentence.
    noun: &'static str,
    /// Their values, joined by `:` ([`identity_value`]), make the identity.
    fields: &'static [&'static str],
    /// Compared case-insensitively (an email address).
    fold_case: bool,
    /// Why a change may not name them.
    why: &'static str,
}

fn identity_of(kind: IntegrationType) -> Option<&'static Identity> {
    IDENTITIES.iter().find(|i| i.kind == kind)
}

/// The types whose rows have an external identity.
pub fn identity_types() -> impl Iterator<Item = IntegrationType> {
    IDENTITIES.iter().map(|i| i.kind)
}

/// What a `kind` identity is, for a sentence ("Slack user"); the type's
/// name for a type without one.
pub fn identity_noun(kind: IntegrationType) -> &'static str {
    identity_of(kind).map_or(kind.as_str(), |i| i.noun)
}

/// The identity of a `kind` row whose identity fields hold `values`, in
/// their order in [`IDENTITIES`] (a Slack team and user); `None` for a type
/// without one. Of several fields, each has its `%` and `:` escaped before
/// they are joined by `:`, so that two different pairs never join alike.
pub fn identity_value(kind: IntegrationType, values: &[&str]) -> Option<String> {
    let identity = identity_of(kind)?;
    let joined = match values {
        [one] => (*one).to_string(),
        many => many
            .iter()
            .map(|v| v.replace('%', "%25").replace(':', "%3A"))
            .collect::<Vec<_>>()
            .join(":"),
    };
    Some(if identity.fold_case {
        joined.to_lowercase()
    } else {
        joined
    })
}

/// Fields only the server's own flows write besides the identity, and
/// which flow: a pairing's chat, a bot's webhook secret, the platform bot's
/// mark; a Teller token, which only Teller Connect proves belongs to its
/// enrollment.
const SERVER_MANAGED: &[(IntegrationType, &str, &str)] = &[
    (
        IntegrationType::Telegram,
        "owner_chat_id",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Telegram,
        "webhook_secret",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Telegram,
        "owner",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Teller,
        "access_token",
        "changes only by connecting the bank again through Teller Connect",
    ),
];

/// Why a change may not name the field `name` of a `kind` config, when only
/// the server's flows write it (its identity, [`SERVER_MANAGED`]).
fn server_managed(kind: IntegrationType, name: &str) -> Option<&'static str> {
    identity_of(kind)
        .filter(|i| i.fields.contains(&name))
        .map(|i| i.why)
        .or_else(|| {
            SERVER_MANAGED
                .iter()
                .find(|(k, field, _)| *k == kind && *field == name)
                .map(|(_, _, why)| *why)
        })
}

/// A value written into a config: text is copied only into the config's
/// zeroizing buffer; JSON null leaves the field out.
#[derive(Debug, Clone)]
pub enum FieldValue<'a> {
    /// A string, secret or not.
    Text(&'a str),
    /// Any other JSON value (numbers, lists, null).
    Json(Value),
}

impl<'a> From<&'a str> for FieldValue<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for FieldValue<'_> {
    fn from(n: i64) -> Self {
        Self::Json(n.into())
    }
}

impl<'a> From<&'a Value> for FieldValue<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::String(text) => Self::Text(text),
            other => Self::Json(other.clone()),
        }
    }
}

impl FieldValue<'_> {
    /// The most bytes this value takes in JSON (escaping grows a string up
    /// to six times: `\u00XX`).
    fn max_len(&self) -> usize {
        match self {
            Self::Text(text) => 6 * text.len() + 2,
            Self::Json(value) => value.to_string().len(),
        }
    }
}

/// A config object as a request sent it: its string values are held in
/// zeroizing buffers from the moment they are parsed, and nothing else is
/// kept of them. Turned into a config by [`DecryptedConfig::from_input`].
#[derive(Default)]
pub struct ConfigInput(Vec<(String, InputValue)>);

enum InputValue {
    Text(Zeroizing<String>),
    Json(Value),
}

impl fmt::Debug for ConfigInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigInput(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for ConfigInput {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(InputVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = ConfigInput;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(InputField)?;
            fields.push((key, value));
        }
        Ok(ConfigInput(fields))
    }
}

/// One value of a [`ConfigInput`]: a string into a zeroizing buffer, any
/// other JSON as it is.
struct InputField;

impl<'de> DeserializeSeed<'de> for InputField {
    type Value = InputValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InputField {
    type Value = InputValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(InputValue::Text(Zeroizing::new(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(InputValue::Json(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(InputValue::Json(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(InputValue::Json(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(InputValue::Json(v.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(InputValue::Json(Value::Null))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(InputValue::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(InputValue::Json)
    }
}

/// The names of the fields a `kind` config may have.
pub fn field_names(kind: IntegrationType) -> impl Iterator<Item = &'static str> {
    fields(kind).iter().map(|f| f.name)
}

fn fields(kind: IntegrationType) -> &'static [Field] {
    match kind {
        IntegrationType::Slack => SLACK,
        IntegrationType::Telegram => TELEGRAM,
        IntegrationType::Gmail => GMAIL,
        IntegrationType::Teller => TELLER,
        IntegrationType::Email => EMAIL,
        IntegrationType::Webhook => WEBHOOK,
    }
}

/// Why a config was refused. Names fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

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
        for f in fields(kind) {
            if f.required && !scanned.iter().any(|(s, _)| s.name == f.name) {
                return Err(ConfigError(format!(
                    "{kind} config is missing the required field '{}' (required: {})",
                    f.name,
                    names(kind, |f| f.required)
                )));
            }
        }
        let clear = |name: &str| {
            scanned.iter().find_map(|(f, v)| match v {
                Scanned::Clear(v) if f.name == name => Some(id_text(v)),
                _ => None,
            })
        };
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
    /// identity fields ([`IDENTITIES`]) joined by `:`, case-folded where the
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

fn names(kind: IntegrationType, which: impl Fn(&Field) -> bool) -> String {
    fields(kind)
        .iter()
        .filter(|f| which(f))
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Refuse unknown or malformed fields; keep secret values (zeroizing).
    Validate,
    /// Skip unknown fields; never materialize a secret value.
    Redact,
}

enum Scanned {
    Clear(Value),
    Secret(Option<Zeroizing<String>>),
}

fn scan(
    kind: IntegrationType,
    json: &[u8],
    mode: Mode,
) -> Result<Vec<(&'static Field, Scanned)>, ConfigError> {
    // Checked up front so that serde's "invalid type" message, which quotes
    // the value, can never describe a top-level secret.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(ConfigError(format!("{kind} config must be a JSON object")));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let scanned = de
        .deserialize_map(ConfigVisitor { kind, mode })
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| ConfigError(format!("{kind} config is not valid: {e}")))?;
    Ok(scanned)
}

struct ConfigVisitor {
    kind: IntegrationType,
    mode: Mode,
}

impl<'de> Visitor<'de> for ConfigVisitor {
    type Value = Vec<(&'static Field, Scanned)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let kind = self.kind;
        let mut out: Vec<(&'static Field, Scanned)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(f) = fields(kind).iter().find(|f| f.name == key) else {
                if self.mode == Mode::Validate {
                    // The key is not repeated: a pasted secret may sit there.
                    return Err(de::Error::custom(format_args!(
                        "it has a field that is not one of {}",
                        names(kind, |_| true)
                    )));
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if out.iter().any(|(s, _)| s.name == f.name) {
                return Err(de::Error::custom(format_args!(
                    "field '{}' appears twice",
                    f.name
                )));
            }
            let value = if f.secret {
                let wrong = || {
                    de::Error::custom(format_args!(
                        "field '{}' must be a non-empty string",
                        f.name
                    ))
                };
                match self.mode {
                    Mode::Redact => {
                        map.next_value::<IgnoredAny>()?;
                        Scanned::Secret(None)
                    }
                    Mode::Validate => {
                        let text: Zeroizing<String> =
                            map.next_value_seed(SecretText).map_err(|_| wrong())?;
                        if text.trim().is_empty() {
                            return Err(wrong());
                        }
                        Scanned::Secret(Some(text))
                    }
                }
            } else {
                let v: Value = map.next_value()?;
                if self.mode == Mode::Validate {
                    check_shape(f, &v).map_err(de::Error::custom)?;
                }
                Scanned::Clear(v)
            };
            out.push((f, value));
        }
        Ok(out)
    }
}

fn check_shape(f: &Field, v: &Value) -> Result<(), String> {
    let ok = match (f.shape, v) {
        (_, Value::Null) => !f.required,
        (Shape::Text | Shape::Id, Value::String(s)) => !s.trim().is_empty(),
        (Shape::Id, Value::Number(n)) => n.is_i64(),
        (Shape::TextList, Value::Array(items)) => items.iter().all(Value::is_string),
        (Shape::OneOf(values), Value::String(s)) => values.contains(&s.as_str()),
        _ => false,
    };
    let expected: std::borrow::Cow<str> = match f.shape {
        Shape::Text => "a non-empty string".into(),
        Shape::Id => "a non-empty string or an integer".into(),
        Shape::TextList => "an array of strings".into(),
        Shape::OneOf(values) => format!("one of {}", values.join(", ")).into(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("field '{}' must be {expected}", f.name))
    }
}

/// The characters `str::trim` removes (Unicode `White_Space`), as a regex
/// character class body.
const WHITESPACE_CLASS: &str =
    "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The JSON Schema of a string that is not blank once trimmed.
pub fn non_blank_schema() -> Value {
    serde_json::json!({"type": "string", "pattern": format!("[^{WHITESPACE_CLASS}]")})
}

/// The characters [`url_host`] accepts in a host, as a regex class body
/// (`-` last, so that it reads literally).
const HOST_CLASS: &str = "A-Za-z0-9._\\[\\]-";

/// The JSON Schema of a `kind` config as a request may send it: the type's
/// fields (none that only the server writes), required ones required, each
/// of its shape, nothing else.
pub fn config_schema(kind: IntegrationType) -> Value {
    use serde_json::json;
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields(kind) {
        if server_managed(kind, f.name).is_some() {
            continue;
        }
        let text = if kind == IntegrationType::Webhook && f.name == "url" {
            // What `url_host` finds a host in.
            json!({"type": "string", "pattern": format!("^https?://([^/?#@]*@)?[{HOST_CLASS}]+([:/?#][\\s\\S]*)?$")})
        } else {
            non_blank_schema()
        };
        let shape = match f.shape {
            Text => text,
            Id => json!({"anyOf": [text, {"type": "integer", "format": "int64"}]}),
            TextList => json!({"type": "array", "items": {"type": "string"}}),
            OneOf(values) => json!({"type": "string", "enum": values}),
        };
        if f.required {
            required.push(f.name);
        }
        // null stands for "not set" in an optional clear field; a secret
        // one is read as a string only.
        let schema = if f.required || f.secret {
            shape
        } else {
            json!({"anyOf": [shape, {"type": "null"}]})
        };
        properties.insert(f.name.into(), schema);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Deserializes a string straight into a zeroizing buffer.
struct SecretText;

impl<'de> DeserializeSeed<'de> for SecretText {
    type Value = Zeroizing<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SecretText {
    type Value = Zeroizing<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IntegrationType::*;

    /// The characters of a regex class body made of `\t \n \f \r \uXXXX`,
    /// plain characters and `a-b` ranges.
    fn class_chars(class: &str) -> Vec<char> {
        let mut singles = Vec::new();
        let mut rest = class;
        while let Some(c) = rest.chars().next() {
            let (c, len) = match (c, rest.get(1..2)) {
                ('\\', Some("u")) => (
                    char::from_u32(u32::from_str_radix(&rest[2..6], 16).unwrap()).unwrap(),
                    6,
                ),
                ('\\', Some("t")) => ('\t', 2),
                ('\\', Some("n")) => ('\n', 2),
                ('\\', Some("f")) => ('\u{c}', 2),
                ('\\', Some("r")) => ('\r', 2),
                (c, _) => (c, c.len_utf8()),
            };
            singles.push(c);
            rest = &rest[len..];
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < singles.len() {
            if singles.get(i + 1) == Some(&'-') && i + 2 < singles.len() {
                out.extend(singles[i]..=singles[i + 2]);
                i += 3;
            } else {
                out.push(singles[i]);
                i += 1;
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_whitespace_class_is_what_trim_removes() {
        let trimmed: Vec<char> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        assert_eq!(class_chars(WHITESPACE_CLASS), trimmed);
    }

    fn valid(kind: IntegrationType, json: &str) -> Result<ValidConfig, ConfigError> {
        DecryptedConfig::validate(kind, Zeroizing::new(json.as_bytes().to_vec()))
    }

    #[test]
    fn every_type_accepts_its_required_fields_and_derives_facts() {
        let cases: &[(IntegrationType, &str, Option<&str>, &str)] = &[
            (
                Slack,
                r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1","team_name":"Vox Gateway"}"#,
                Some("T1:U1"),
                "Vox Gateway",
            ),
            (
                Telegram,
                r#"{"bot_token":"1:AA","bot_user_id":777,"bot_username":"VonzioBot"}"#,
                Some("777"),
                "@VonzioBot",
            ),
            (
                Telegram,
                r#"{"bot_token":"1:AA","bot_user_id":" 778 ","bot_username":"@VZFinance_bot"}"#,
                Some("778"),
                "@VZFinance_bot",
            ),
            (
                Gmail,
                r#"{"email":" A.Mouzou@Gmail.com ","refresh_token":"1//r","scopes":["gmail.readonly"]}"#,
                Some("a.mouzou@gmail.com"),
                "A.Mouzou@Gmail.com",
            ),
            (
                Teller,
                r#"{"enrollment_id":"enr_1","access_token":"test_token_1","institution_name":"PNC"}"#,
                Some("enr_1"),
                "PNC",
            ),
            (
                Email,
                r#"{"api_key":"re_1","from_address":"alerts@app.vonz.io","to_address":"me@x.io"}"#,
                None,
                "alerts@app.vonz.io",
            ),
            (
                Webhook,
                r#"{"url":"https://user:pw@Hooks.Zapier.com:443/hooks/catch/123/abc?x=1"}"#,
                None,
                "hooks.zapier.com",
            ),
        ];
        for (kind, json, external, label) in cases {
            let v = valid(*kind, json).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(v.external_id.as_deref(), *external, "{kind}");
            assert_eq!(v.config.identity(*kind), v.external_id, "{kind}");
            assert_eq!(v.default_label, *label, "{kind}");
        }
    }

    #[test]
    fn bad_configs_are_refused_naming_the_field_never_the_value() {
        let cases: &[(IntegrationType, &str, &str)] = &[
            (Slack, "not json SECRETVALUE", "JSON object"),
            (Slack, r#""SECRETVALUE""#, "JSON object"),
            (Slack, r#"{"bot_token":"SECRETVALUE""#, "not valid"),
            (
                Slack,
                r#"{"bot_token":"SECRETVALUE","team_id":"T"}"#,
                "'authed_user_id'",
            ),
            (
                Gmail,
                r#"{"email":"a@b","refresh_token":12345678}"#,
                "'refresh_token' must be a non-empty string",
            ),
            (
                Gmail,
                r#"{"email":"a@b","refresh_token":"  "}"#,
                "'refresh_token' must be a non-empty string",
            ),
            (
                Gmail,
                r#"{"email":"a@b","refresh_token":"SECRETVALUE","scopes":"x"}"#,
                "'scopes' must be an array",
            ),
            (
                Teller,
                r#"{"enrollment_id":"","access_token":"SECRETVALUE","institution_name":"P"}"#,
                "'enrollment_id' must be a non-empty string",
            ),
            (
                Telegram,
                r#"{"bot_token":"SECRETVALUE","bot_user_id":1.5,"bot_username":"b"}"#,
                "'bot_user_id'",
            ),
            (
                Email,
                r#"{"api_key":"SECRETVALUE","from_address":"a","to_address":"b","SECRETVALUE":"x"}"#,
                "not one of api_key, from_address, to_address",
            ),
            (
                Email,
                r#"{"api_key":"SECRETVALUE","api_key":"SECRETVALUE2","from_address":"a","to_address":"b"}"#,
                "appears twice",
            ),
            (Webhook, r#"{"url":"ftp://SECRETVALUE"}"#, "http(s) URL"),
            (Webhook, r#"{"url":"https://"}"#, "http(s) URL"),
            (Webhook, r#"{"url":"https://h.io/x"} trailing"#, "not valid"),
        ];
        for (kind, json, needle) in cases {
            let err = valid(*kind, json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
            assert!(!err.contains("SECRETVALUE"), "{json}: {err}");
            assert!(!err.contains("12345678"), "{json}: {err}");
        }
    }

    #[test]
    fn redacted_view_is_an_allowlist() {
        let v = valid(
            Telegram,
            r#"{"bot_token":"123:SECRET","bot_user_id":"123","bot_username":"b","owner_chat_id":42}"#,
        )
        .unwrap();
        let shown = v.config.redacted(Telegram).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"bot_token": MASK, "bot_user_id": "123", "bot_username": "b", "owner_chat_id": 42})
        );
        // A stored field the allowlist does not know is never shown.
        let legacy = DecryptedConfig::from_trusted(Zeroizing::new(
            br#"{"url":"https://h.io/SECRET","signing_key":"SECRET2","extra":{"a":"SECRET3"}}"#
                .to_vec(),
        ));
        let shown = legacy.redacted(Webhook).unwrap();
        assert_eq!(shown, serde_json::json!({"url": MASK}));
        assert_eq!(format!("{legacy:?}"), "DecryptedConfig(<redacted>)");
    }

    #[test]
    fn with_fields_replaces_and_adds_and_keeps_the_rest() {
        let v = valid(
            Gmail,
            r#"{"email":"a@gmail.com","refresh_token":"1//R","access_token":"ya29.OLD","scopes":["gmail.readonly"]}"#,
        )
        .unwrap();
        let updated = v
            .config
            .with_fields(
                Gmail,
                &[
                    ("access_token", "ya29.NEW".into()),
                    ("expires_at", 1_900_000_000i64.into()),
                ],
            )
            .unwrap();
        let get = |name| {
            updated
                .config
                .get(Gmail, name)
                .unwrap()
                .map(|t| t.to_string())
        };
        assert_eq!(get("refresh_token").as_deref(), Some("1//R"));
        assert_eq!(get("access_token").as_deref(), Some("ya29.NEW"));
        assert_eq!(get("expires_at").as_deref(), Some("1900000000"));
        assert_eq!(
            updated.config.redacted(Gmail).unwrap(),
            serde_json::json!({"email": "a@gmail.com", "refresh_token": MASK, "scopes": ["gmail.readonly"], "access_token": MASK, "expires_at": 1_900_000_000})
        );
        let refused = v.config.with_fields(Gmail, &[("password", "x".into())]);
        assert!(refused.is_err());
    }

    #[test]
    fn a_request_config_becomes_a_config_without_showing_its_secrets() {
        let input: ConfigInput = serde_json::from_str(
            r#"{"api_key":"re_SECRETVALUE","from_address":"a@x.io","to_address":"b@x.io"}"#,
        )
        .unwrap();
        assert_eq!(format!("{input:?}"), "ConfigInput(<redacted>)");
        let v = DecryptedConfig::from_input(Email, &input).unwrap();
        assert_eq!(
            v.config
                .get(Email, "api_key")
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("re_SECRETVALUE")
        );
        assert_eq!(v.default_label, "a@x.io");
        for (json, needle) in [
            (
                r#"{"api_key":12345678,"from_address":"a","to_address":"b"}"#,
                "'api_key'",
            ),
            (
                r#"{"api_key":"SECRETVALUE","from_address":"a"}"#,
                "'to_address'",
            ),
            (
                r#"{"SECRETVALUE":"x","api_key":"k","from_address":"a","to_address":"b"}"#,
                "not one of",
            ),
        ] {
            let input: ConfigInput = serde_json::from_str(json).unwrap();
            let err = DecryptedConfig::from_input(Email, &input)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
            assert!(
                !err.contains("SECRETVALUE") && !err.contains("12345678"),
                "{err}"
            );
        }
    }

    #[test]
    fn two_different_slack_users_never_make_one_identity() {
        let pairs = [("T1:U", "2"), ("T1", ":U2"), ("T1%3AU", "2"), ("T1", "U2")];
        let made: std::collections::HashSet<_> = pairs
            .iter()
            .map(|(team, user)| identity_value(Slack, &[team, user]).unwrap())
            .collect();
        assert_eq!(made.len(), pairs.len(), "{made:?}");
        assert_eq!(identity_value(Slack, &["T1", "U2"]).unwrap(), "T1:U2");
        assert_eq!(
            identity_value(Gmail, &["Ann@Example.com"]).unwrap(),
            "ann@example.com"
        );
    }

    #[test]
    fn a_change_naming_an_identity_field_is_refused() {
        let cases: &[(IntegrationType, &str, &str, &str)] = &[
            (
                Slack,
                r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1"}"#,
                "team_id",
                "connecting Slack again",
            ),
            (
                Slack,
                r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1"}"#,
                "authed_user_id",
                "connecting Slack again",
            ),
            (
                Gmail,
                r#"{"email":"a@gmail.com","refresh_token":"1//r"}"#,
                "email",
                "connecting Gmail again",
            ),
            (
                Telegram,
                r#"{"bot_token":"7:AA","bot_user_id":7,"bot_username":"b"}"#,
                "bot_user_id",
                "another bot",
            ),
            (
                Teller,
                r#"{"enrollment_id":"enr_1","access_token":"t","institution_name":"P"}"#,
                "enrollment_id",
                "Teller Connect",
            ),
        ];
        for (kind, json, name, why) in cases {
            let v = valid(*kind, json).unwrap();
            // Even to the value it has.
            let current = v.config.get(*kind, name).unwrap().unwrap();
            for value in [Value::String("OTHER".into()), current.as_str().into()] {
                let changes = Map::from_iter([(name.to_string(), value)]);
                let err = v.config.merged(*kind, &changes).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("'{name}'")) && err.contains(why),
                    "{err}"
                );
                assert!(!err.contains("OTHER"), "{err}");
            }
            assert!(
                !config_schema(*kind)["properties"]
                    .as_object()
                    .unwrap()
                    .contains_key(*name)
            );
        }
    }

    #[test]
    fn merged_replaces_adds_removes_and_names_fields_only() {
        let v = valid(
            Gmail,
            r#"{"email":"a@gmail.com","refresh_token":"1//R","access_token":"ya29.OLD","scopes":["gmail.readonly"]}"#,
        )
        .unwrap();
        let changes = |json: serde_json::Value| json.as_object().unwrap().clone();
        let updated = v
            .config
            .merged(
                Gmail,
                &changes(serde_json::json!({"refresh_token": "1//NEW", "access_token": null, "expires_at": 5})),
            )
            .unwrap();
        let get = |name| {
            updated
                .config
                .get(Gmail, name)
                .unwrap()
                .map(|t| t.to_string())
        };
        assert_eq!(get("refresh_token").as_deref(), Some("1//NEW"));
        assert_eq!(get("access_token"), None);
        assert_eq!(get("expires_at").as_deref(), Some("5"));
        assert_eq!(get("email").as_deref(), Some("a@gmail.com"));
        for (bad, needle) in [
            (
                serde_json::json!({"refresh_token": null}),
                "'refresh_token'",
            ),
            (
                serde_json::json!({"refresh_token": 12345678}),
                "'refresh_token'",
            ),
            (serde_json::json!({"SECRETVALUE": "x"}), "not one of"),
            (serde_json::json!({"scopes": "SECRETVALUE"}), "'scopes'"),
        ] {
            let err = v
                .config
                .merged(Gmail, &changes(bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
            assert!(
                !err.contains("SECRETVALUE") && !err.contains("12345678"),
                "{err}"
            );
        }
    }
}
