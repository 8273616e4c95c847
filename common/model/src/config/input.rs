//! What a request or a provider's flow writes into a config: a
//! [`FieldValue`], or a whole [`ConfigInput`] parsed with its strings held in
//! zeroizing buffers.

use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;
use zeroize::Zeroizing;

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
    pub(super) fn max_len(&self) -> usize {
        match self {
            Self::Text(text) => 6 * text.len() + 2,
            Self::Json(value) => value.to_string().len(),
        }
    }
}

/// A config object as a request sent it: its string values are held in
/// zeroizing buffers from the moment they are parsed, and nothing else is
/// kept of them. Turned into a config by
/// [`DecryptedConfig::from_input`](super::DecryptedConfig::from_input).
#[derive(Default)]
pub struct ConfigInput(pub(super) Vec<(String, InputValue)>);

/// One value of a [`ConfigInput`].
pub(super) enum InputValue {
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
