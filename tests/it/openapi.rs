//! The OpenAPI document as `integrations serve` serves it: its structure
//! says everything a client needs (every path parameter declared, every
//! error an operation can answer documented, every reference resolved), and
//! the rules the server checks are in its schemas.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use testkit::cli;

/// The document of a server on a fresh SQLite store.
async fn document() -> Value {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("openapi.db").display()
    );
    let keys = cli::run(&url, "", &["keys", "generate"]).trim().to_string();
    cli::run(&url, &keys, &["migrate"]);
    let mut server = tokio::process::Command::new(crate::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("INTEGRATIONS_DB", &url)
        .env("INTEGRATIONS_KEYS", &keys)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base = line.trim().trim_start_matches("listening on ").to_string();
    reqwest::get(format!("{base}/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Each operation of the document: path, method, operation.
fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.as_str(), method.as_str(), op));
        }
    }
    out
}

#[tokio::test]
async fn every_path_parameter_is_declared_and_every_error_documented() {
    let doc = document().await;
    let ops = operations(&doc);
    assert!(ops.len() >= 25, "{} operations", ops.len());
    for (path, method, op) in ops {
        let at = format!("{method} {path}");
        let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
        let templated: Vec<&str> = path
            .split('{')
            .skip(1)
            .map(|piece| piece.split_once('}').unwrap().0)
            .collect();
        for name in &templated {
            assert!(
                parameters.iter().any(|p| p["name"] == *name
                    && p["in"] == "path"
                    && p["required"] == true
                    && p["schema"].is_object()),
                "{at}: path parameter {name} is not declared"
            );
        }
        let responses = op["responses"].as_object().unwrap();
        let documents = |status: &str| responses.contains_key(status);
        let secured = op.get("security") != Some(&Value::Array(Vec::new()));
        if secured {
            assert!(documents("401"), "{at}: no 401");
        }
        if op.get("requestBody").is_some() {
            assert!(documents("400") && documents("413"), "{at}: no 400 or 413");
        }
        if parameters.iter().any(|p| p["in"] == "query") {
            assert!(documents("400"), "{at}: no 400 for its query");
        }
        if !templated.is_empty() && path.starts_with("/v1/") {
            assert!(documents("404"), "{at}: no 404 for its id");
        }
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{at}: no success response"
        );
    }
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
}

#[tokio::test]
async fn the_rules_the_server_checks_are_in_the_schemas() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let pattern = |schema: &Value| schema["pattern"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        pattern(&schemas["PutProfile"]["properties"]["slug"]),
        "^[a-z0-9][a-z0-9_-]{0,63}$"
    );
    assert_eq!(
        pattern(&schemas["CreateSecret"]["properties"]["name"]),
        "^[A-Z_][A-Z0-9_]{0,127}$"
    );
    assert_eq!(
        schemas["CreateSecret"]["properties"]["value"]["maxLength"],
        8192
    );
    assert_eq!(
        schemas["CreateSecret"]["required"],
        serde_json::json!(["name", "value"])
    );
    let profile = &doc["paths"]["/v1/profiles/{id}"]["put"]["parameters"][0]["schema"];
    assert_eq!(pattern(profile), "^[A-Za-z0-9_.:@-]{1,128}$");
    // POST /v1/integrations: one branch per type it creates, each with that
    // type's config.
    let create = &schemas["CreateIntegration"];
    assert_eq!(
        create["properties"]["type"]["enum"],
        serde_json::json!(["email", "webhook"])
    );
    let branches = create["oneOf"].as_array().unwrap();
    let webhook = branches
        .iter()
        .find(|b| b["properties"]["type"]["const"] == "webhook")
        .unwrap();
    let config = &webhook["properties"]["config"];
    assert_eq!(config["required"], serde_json::json!(["url"]));
    assert_eq!(config["additionalProperties"], false);
    assert!(pattern(&config["properties"]["url"]).starts_with("^https?://"));
    // Scope `agents` needs a profile; enums are enums.
    assert_eq!(create["then"]["properties"]["profile_ids"]["minItems"], 1);
    assert!(schemas["Scope"]["enum"].is_array() || schemas["Scope"]["oneOf"].is_array());
    let types = &doc["paths"]["/v1/integrations"]["get"]["parameters"][0];
    assert_eq!(types["name"], "type");
    let bot = &doc["paths"]["/api/telegram/webhook/{bot_user_id}"]["post"]["parameters"][0];
    assert_eq!(pattern(&bot["schema"]), "^[0-9]{1,20}$");
}
