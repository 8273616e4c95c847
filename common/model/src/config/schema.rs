//! The JSON Schema of each type's config as a request may send it, for the
//! API's OpenAPI document.

use serde_json::{Map, Value};

use super::fields::Shape::{Id, OneOf, Port, Text, TextList};
use super::fields::{EMAIL_PROVIDERS, fields};
use super::identity::{create_only, server_managed};
use crate::IntegrationType;

/// The characters `str::trim` removes (Unicode `White_Space`), as a regex
/// character class body.
const WHITESPACE_CLASS: &str =
    "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The JSON Schema of a string that is not blank once trimmed.
pub fn non_blank_schema() -> Value {
    serde_json::json!({"type": "string", "pattern": format!("[^{WHITESPACE_CLASS}]")})
}

/// The characters `url_host` accepts in a host, as a regex class body
/// (`-` last, so that it reads literally).
const HOST_CLASS: &str = "A-Za-z0-9._\\[\\]-";

/// The JSON Schema of a `kind` config as a request may send it: the type's
/// fields (none that only the server writes), required ones required, each
/// of its shape, nothing else; for a type with providers (Email), `oneOf`
/// one such schema per provider, its `provider` field naming it (optional
/// for the default).
pub fn config_schema(kind: IntegrationType) -> Value {
    match kind {
        IntegrationType::Email => {
            let variants: Vec<Value> = EMAIL_PROVIDERS
                .iter()
                .enumerate()
                .map(|(i, provider)| provider_schema(kind, Some((provider, i == 0))))
                .collect();
            serde_json::json!({ "oneOf": variants })
        }
        _ => provider_schema(kind, None),
    }
}

/// The schema of a `kind` config of `provider` (and whether it is the
/// default), or of a type without providers.
fn provider_schema(kind: IntegrationType, provider: Option<(&str, bool)>) -> Value {
    use serde_json::json;
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields(kind) {
        let written_by_flow = server_managed(kind, f.name).is_some() && !create_only(kind, f.name);
        if written_by_flow || provider.is_some_and(|(p, _)| !f.is_for(p)) {
            continue;
        }
        if let (Some((p, default)), "provider") = (provider, f.name) {
            properties.insert(f.name.into(), json!({"type": "string", "enum": [p]}));
            if !default {
                required.push(f.name);
            }
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
            Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
