//! The schemas of the fields the server checks beyond their JSON type, for
//! `#[schemars(schema_with = ...)]` and `transform`: each is built from the
//! constants of the check it describes, so the two cannot drift apart.

use model::Scope;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

fn schema(value: Value) -> Schema {
    Schema::try_from(value).unwrap_or_default()
}

fn or_null(value: Value) -> Schema {
    schema(json!({"anyOf": [value, {"type": "null"}]}))
}

fn profile_ids() -> Value {
    json!({"type": "array", "items": model::ids::ident_schema()})
}

/// A profile slug (`model::ids::validate_slug`).
pub fn slug(_: &mut SchemaGenerator) -> Schema {
    schema(model::ids::slug_schema())
}

/// An id (`model::ids::validate_ident`): a profile's, a session's.
pub fn ident(_: &mut SchemaGenerator) -> Schema {
    schema(model::ids::ident_schema())
}

/// A capability token's lifetime in seconds, or null for the default:
/// its maximum is this server's `MCP_MAX_TOKEN_TTL`, set by [`cap_ttl`].
pub fn ttl_seconds_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(json!({"type": "integer", "minimum": 1}))
}

/// Gives `ttl_seconds` of `CreateSession` among `schemas` its maximum.
pub fn cap_ttl(schemas: &mut serde_json::Map<String, Value>, max: std::time::Duration) {
    if let Some(ttl) = schemas
        .get_mut("CreateSession")
        .and_then(|s| s.pointer_mut("/properties/ttl_seconds/anyOf/0"))
    {
        ttl["maximum"] = json!(max.as_secs());
    }
}

/// A profile id (`model::ids::validate_ident`), or null.
pub fn ident_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(model::ids::ident_schema())
}

/// A list of profile ids, or null.
pub fn profile_ids_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(profile_ids())
}

/// A secret's name (an environment variable's).
pub fn secret_name(_: &mut SchemaGenerator) -> Schema {
    schema(store::secret_name_schema())
}

/// A secret's name, or null.
pub fn secret_name_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(store::secret_name_schema())
}

/// A secret's value.
pub fn secret_value(_: &mut SchemaGenerator) -> Schema {
    schema(store::secret_value_schema())
}

/// A secret's value, or null.
pub fn secret_value_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(store::secret_value_schema())
}

/// Text that is not blank once trimmed (a label), or null.
pub fn non_blank_or_null(_: &mut SchemaGenerator) -> Schema {
    or_null(model::config::non_blank_schema())
}

/// A Telegram bot token from @BotFather.
pub fn bot_token(_: &mut SchemaGenerator) -> Schema {
    schema(providers::telegram::token_schema())
}

/// A 64-bit integer in a query string (which has no null).
pub fn int64(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX}))
}

/// Scope `agents` needs at least one profile id
/// (`model::scope::ScopeError::NoProfiles`).
pub fn agents_need_profiles(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        json!({"properties": {"scope": {"const": Scope::Agents.as_str()}}, "required": ["scope"]}),
    );
    let mut ids = profile_ids();
    ids["minItems"] = json!(1);
    schema.insert(
        "then".into(),
        json!({"properties": {"profile_ids": ids}, "required": ["profile_ids"]}),
    );
}

/// In a change, a list of profile ids without scope `all` means scope
/// `agents` (`model::scope::merge`), so it may not be empty.
pub fn listed_profiles_not_empty(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        json!({
            "properties": {
                "profile_ids": {"type": "array"},
                "scope": {"not": {"const": Scope::All.as_str()}},
            },
            "required": ["profile_ids"],
        }),
    );
    schema.insert(
        "then".into(),
        json!({"properties": {"profile_ids": {"minItems": 1}}}),
    );
}
