//! Tool arguments as agents' prompts written for the product's servers send
//! them: what those servers took is not refused for its shape. Before a call
//! is routed, [`normalize`] takes an integral number written as a float
//! (`50.0`) where the tool's schema says integer, and sets aside every
//! argument the schema does not name; identity-shaped ones (`user_id`,
//! `profile_id`, `session_id`, ...) among them, which are never used: who
//! calls comes from the spawn environment or the request's token. [`mention`]
//! then names what was set aside in the result's text. The published schemas
//! are unchanged.

use rmcp::ErrorData;
use rmcp::model::{CallToolRequestParams, CallToolResponse, ContentBlock, JsonObject};
use serde_json::Value;

use super::quoted;

/// Argument names that say who is calling.
const IDENTITY: &[&str] = &[
    "user_id",
    "userid",
    "user",
    "profile_id",
    "profileid",
    "profile",
    "session_id",
    "sessionid",
    "session",
    "agent_id",
    "agentid",
    "org_id",
    "tenant_id",
];

/// The arguments [`normalize`] set aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Names the tool does not take.
    pub unknown: Vec<String>,
    /// Identity-shaped names.
    pub identity: Vec<String>,
}

/// Normalizes `request`'s arguments against the tool's input `schema`
/// (none: left as they are) and returns what it set aside.
pub fn normalize(schema: Option<&JsonObject>, request: &mut CallToolRequestParams) -> Ignored {
    let mut ignored = Ignored::default();
    let (Some(schema), Some(arguments)) = (schema, request.arguments.as_mut()) else {
        return ignored;
    };
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return ignored;
    };
    arguments.retain(|name, value| {
        let Some(property) = properties.get(name) else {
            if IDENTITY.contains(&name.to_ascii_lowercase().as_str()) {
                ignored.identity.push(name.clone());
            } else {
                ignored.unknown.push(name.clone());
            }
            return false;
        };
        if takes_integer(property)
            && let Some(n) = value.as_f64()
            && n.fract() == 0.0
            && n.abs() < 9.0e15
            && !value.is_i64()
            && !value.is_u64()
        {
            *value = Value::from(n as i64);
        }
        true
    });
    ignored
}

/// Whether a property's schema admits integers only among numbers.
fn takes_integer(property: &Value) -> bool {
    match property.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(types)) => {
            types.iter().any(|t| t == "integer") && !types.iter().any(|t| t == "number")
        }
        _ => false,
    }
}

/// `response` with a sentence naming what was `ignored`, when anything was.
pub fn mention(
    response: Result<CallToolResponse, ErrorData>,
    ignored: &Ignored,
) -> Result<CallToolResponse, ErrorData> {
    let mut response = response;
    let Ok(CallToolResponse::Complete(result)) = &mut response else {
        return response;
    };
    let names = |names: &[String]| {
        names
            .iter()
            .map(|n| quoted(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut said = Vec::new();
    if !ignored.unknown.is_empty() {
        said.push(format!(
            "Ignored argument(s) this tool does not take: {}.",
            names(&ignored.unknown)
        ));
    }
    if !ignored.identity.is_empty() {
        said.push(format!(
            "Ignored {}: who is calling comes from the session, never from arguments.",
            names(&ignored.identity)
        ));
    }
    if said.is_empty() {
        return response;
    }
    // In the first text block, which every client shows.
    let said = said.join(" ");
    let first = result.content.iter_mut().find_map(|c| match c {
        ContentBlock::Text(text) => Some(text),
        _ => None,
    });
    match first {
        Some(text) => text.text = format!("{}\n{said}", text.text),
        None => result.content.insert(0, ContentBlock::text(said)),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(arguments: Value) -> CallToolRequestParams {
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        CallToolRequestParams::new("t").with_arguments(arguments)
    }

    #[test]
    fn integral_floats_unknown_and_identity_arguments() {
        let schema = json!({"properties": {
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "name": {"type": "string"},
        }});
        let mut call = request(json!({
            "count": 50.0, "ratio": 2.0, "name": "x", "colour": "red", "user_id": "u_other", "profileId": "p",
        }));
        let ignored = normalize(schema.as_object(), &mut call);
        assert_eq!(
            call.arguments.unwrap(),
            *json!({"count": 50, "ratio": 2.0, "name": "x"})
                .as_object()
                .unwrap()
        );
        assert_eq!(ignored.unknown, ["colour"]);
        assert_eq!(ignored.identity, ["user_id", "profileId"]);
    }

    #[test]
    fn a_fractional_number_is_left_for_the_tool_to_refuse() {
        let schema = json!({"properties": {"count": {"type": "integer"}}});
        let mut call = request(json!({"count": 2.5}));
        normalize(schema.as_object(), &mut call);
        assert_eq!(call.arguments.unwrap()["count"], json!(2.5));
    }
}
