//! Every tool schema of the three sidecars, as a client gets them from
//! `tools/list`, in the dialect every client takes: one `type` per schema,
//! no `null` type or `nullable`, no `format` outside JSON Schema 2020-12's
//! vocabulary, and every `required` entry a property. (The sidecars are
//! this workspace's binaries beside `integrations`: `cargo test --workspace`
//! builds them.)

use rmcp::ServiceExt;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Map, Value};

use testkit::cli;

/// JSON Schema 2020-12's formats (Validation, section 7.3).
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

/// The portability problems of `schema` and its subschemas, by path.
fn problems(schema: &Value, path: &str, found: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    match object.get("type") {
        Some(Value::String(t)) if t == "null" => found.push(format!("{path}: type null")),
        Some(Value::String(_)) | None => {}
        Some(other) => found.push(format!("{path}: type {other}")),
    }
    if object.contains_key("nullable") {
        found.push(format!("{path}: nullable"));
    }
    if let Some(format) = object.get("format")
        && !format.as_str().is_some_and(|f| FORMATS.contains(&f))
    {
        found.push(format!("{path}: format {format}"));
    }
    if let Some(Value::Array(values)) = object.get("enum")
        && values.iter().any(Value::is_null)
    {
        found.push(format!("{path}: null in enum"));
    }
    let empty = Map::new();
    let properties = object
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in object
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !name.as_str().is_some_and(|n| properties.contains_key(n)) {
            found.push(format!("{path}: required {name} is not a property"));
        }
    }
    for (keyword, value) in object {
        match keyword.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    problems(sub, &format!("{path}.{keyword}.{name}"), found);
                }
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    problems(sub, &format!("{path}.{keyword}[{i}]"), found);
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames" => problems(value, &format!("{path}.{keyword}"), found),
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_tool_schema_of_every_sidecar_is_portable() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let keys = cli::run(&db, "", &["keys", "generate"]);
    let mut tools = 0;
    let mut found = Vec::new();
    for sidecar in ["mcp-teller", "mcp-gmail", "mcp-notify"] {
        let bin = testkit::bin(sidecar);
        let command = tokio::process::Command::new(&bin).configure(|cmd| {
            cmd.env_clear()
                .env("INTEGRATIONS_DB", &db)
                .env("INTEGRATIONS_KEYS", keys.trim())
                .env("INTEGRATIONS_USER_ID", "u1")
                .env("INTEGRATIONS_PROFILE_ID", "prof_a");
        });
        let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();
        let listed = client.list_all_tools().await.unwrap();
        assert!(!listed.is_empty(), "{sidecar} lists no tools");
        for tool in listed {
            tools += 1;
            let input = Value::Object((*tool.input_schema).clone());
            assert_eq!(input["type"], "object", "{sidecar} {}", tool.name);
            problems(&input, &format!("{} inputSchema", tool.name), &mut found);
            if let Some(output) = &tool.output_schema {
                let output = Value::Object((**output).clone());
                problems(&output, &format!("{} outputSchema", tool.name), &mut found);
            }
        }
        client.cancel().await.unwrap();
    }
    assert_eq!(tools, 5 + 7 + 1);
    assert!(found.is_empty(), "{}", found.join("\n"));
}
