//! Reading a stored or written config's JSON against its field table, in
//! one of two modes: validating (every field checked, secret values kept in
//! zeroizing buffers) or redacting (unknown fields skipped, no secret value
//! ever materialized).

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use zeroize::Zeroizing;

use super::ConfigError;
use super::fields::{Field, Shape, fields, names};
use crate::IntegrationType;

/// How [`scan`] reads a config.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Refuse unknown or malformed fields; keep secret values (zeroizing).
    Validate,
    /// Skip unknown fields; never materialize a secret value.
    Redact,
}

/// One field as [`scan`] read it.
pub(super) enum Scanned {
    Clear(Value),
    Secret(Option<Zeroizing<String>>),
}

/// The known fields of a `kind` config's `json`, in their order, read in
/// `mode`.
pub(super) fn scan(
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
        (Shape::Port, Value::Number(n)) => n.as_u64().is_some_and(|n| (1..=65535).contains(&n)),
        _ => false,
    };
    let expected: std::borrow::Cow<str> = match f.shape {
        Shape::Text => "a non-empty string".into(),
        Shape::Id => "a non-empty string or an integer".into(),
        Shape::TextList => "an array of strings".into(),
        Shape::OneOf(values) => format!("one of {}", values.join(", ")).into(),
        Shape::Port => "an integer from 1 to 65535".into(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("field '{}' must be {expected}", f.name))
    }
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
