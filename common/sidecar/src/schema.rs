//! Tool schemas every MCP client takes, and structured results that match
//! them.
//!
//! schemars writes an `Option<T>` as `type: ["T", "null"]` (or an `anyOf`
//! with a `null` branch) and integers with formats such as `uint64`. Clients
//! that map schemas onto a single-type dialect (Gemini's) reject the first,
//! and JSON Schema validators warn about the second. [`portable`] passes
//! every tool of a router through one transform: a nullable property becomes
//! an optional one of its single type, and a format outside JSON Schema
//! 2020-12's vocabulary is dropped. Arguments keep their meaning (an absent
//! or `null` optional argument is still `None`); results say "none" by
//! leaving the member out, which [`structured`] does for every result.

use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::JsonObject;
use rmcp::schemars::Schema;
use rmcp::schemars::transform::{Transform, transform_subschemas};
use serde::Serialize;
use serde_json::Value;

/// The formats JSON Schema 2020-12 defines; any other is dropped.
const FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// `router` with every tool's input and output schema made portable.
pub fn portable<S: Send + Sync + 'static>(router: ToolRouter<S>) -> ToolRouter<S> {
    router
        .into_iter()
        .map(|mut route| {
            route.attr.input_schema = portable_schema(&route.attr.input_schema);
            route.attr.output_schema = route.attr.output_schema.as_deref().map(portable_schema);
            route
        })
        .fold(ToolRouter::new(), |router, route| router.with_route(route))
}

/// A tool result as structured content: `data` as JSON with every `null`
/// member left out, as the portable output schemas describe it.
pub fn structured<T: Serialize>(data: &T) -> serde_json::Result<Value> {
    let mut value = serde_json::to_value(data)?;
    drop_nulls(&mut value);
    Ok(value)
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn portable_schema(schema: &JsonObject) -> Arc<JsonObject> {
    let mut schema = Schema::from(schema.clone());
    Portable.transform(&mut schema);
    match schema.to_value() {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("a schema made from an object stays an object"),
    }
}

struct Portable;

impl Transform for Portable {
    fn transform(&mut self, schema: &mut Schema) {
        // Read before the subschemas lose their null types.
        let nullable: BTreeSet<String> = match schema.get("properties") {
            Some(Value::Object(properties)) => properties
                .iter()
                .filter(|(_, p)| admits_null(p))
                .map(|(name, _)| name.clone())
                .collect(),
            _ => BTreeSet::new(),
        };
        transform_subschemas(self, schema);
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        if let Some(Value::Array(required)) = object.get_mut("required") {
            required.retain(|name| !name.as_str().is_some_and(|n| nullable.contains(n)));
        }
        if let Some(Value::Array(types)) = object.get_mut("type") {
            types.retain(|t| t != "null");
            if let [single] = types.as_slice() {
                let single = single.clone();
                object.insert("type".into(), single);
            }
        }
        if let Some(Value::Array(values)) = object.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
        if object.get("default").is_some_and(Value::is_null) {
            object.remove("default");
        }
        if let Some(Value::String(format)) = object.get("format")
            && !FORMATS.contains(&format.as_str())
        {
            object.remove("format");
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(Value::Array(branches)) = object.get_mut(keyword) else {
                continue;
            };
            branches.retain(|b| b.get("type").is_none_or(|t| t != "null"));
            if branches.len() == 1
                && let Some(Value::Object(branch)) = branches.pop()
            {
                object.remove(keyword);
                for (key, value) in branch {
                    object.entry(key).or_insert(value);
                }
            }
        }
    }
}

/// Whether `schema` lets `null` through: a `null` type, a `null` in its
/// `enum` or `const`, or an `anyOf`/`oneOf` branch that does.
fn admits_null(schema: &Value) -> bool {
    let null_type = match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    let null_value = schema.get("const").is_some_and(Value::is_null)
        || matches!(schema.get("enum"), Some(Value::Array(values)) if values.iter().any(Value::is_null));
    let null_branch = ["anyOf", "oneOf"].iter().any(|keyword| {
        matches!(schema.get(*keyword), Some(Value::Array(branches)) if branches.iter().any(admits_null))
    });
    null_type || null_value || null_branch
}
