//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the API, its schemas
//! generated from the very types the handlers take and return.

use axum::Json;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::connect::{Nonce, TellerEnrollment};
use super::error::ErrorBody;
use super::integrations::{CreateIntegration, Deleted, IntegrationList, PatchIntegration, Tested};
use super::profiles::{ProfileDeleted, ProfileList, ProfileView, PutProfile};
use super::secrets::{CreateSecret, PatchSecret, SecretDeleted, SecretList, SecretView};
use super::sessions::{CreateSession, SessionCreated, SessionRevoked};
use super::telegram::{ConnectBot, ConnectPlatform, Connected, Regenerate};
use crate::output::IntegrationView;

/// One operation of the document.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<Schema>,
    /// Status, description, schema of the success response.
    ok: (u16, &'static str, Schema),
    /// Another success status with the same body (201 of an upsert).
    also: Option<(u16, &'static str)>,
    /// The error statuses it may answer besides 401.
    errors: &'static [u16],
}

pub async fn document() -> Json<Value> {
    Json(build())
}

fn build() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut g = settings.into_generator();
    let ops = operations(&mut g);
    let error = g.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for op in ops {
        let mut responses = Map::new();
        responses.insert(
            op.ok.0.to_string(),
            json!({"description": op.ok.1, "content": {"application/json": {"schema": op.ok.2}}}),
        );
        if let Some((status, description)) = op.also {
            responses.insert(
                status.to_string(),
                json!({"description": description, "content": {"application/json": {"schema": op.ok.2}}}),
            );
        }
        for status in [401].iter().chain(op.errors) {
            responses.insert(status.to_string(), json!({"description": describe(*status), "content": {"application/json": {"schema": error}}}));
        }
        let mut operation = json!({"summary": op.summary, "responses": responses});
        if let Some(body) = op.body {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        let mut parameters = Vec::new();
        if op.path.contains("{id}") {
            parameters.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        if op.path == "/v1/integrations" && op.method == "get" {
            parameters.push(json!({"name": "type", "in": "query", "required": false, "schema": {"type": "string"}, "description": "only integrations of this type"}));
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let entry = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "integrations", "version": env!("CARGO_PKG_VERSION"), "description": "Connected accounts, agent profiles and per-agent secrets of the caller (the user of the bearer token)."},
        "security": [{"bearer": []}],
        "paths": with_open_routes(paths),
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API token from `integrations tokens create`"}},
        },
    })
}

/// `/healthz` and the document itself, which need no token.
fn with_open_routes(mut paths: Map<String, Value>) -> Map<String, Value> {
    paths.insert("/healthz".into(), json!({"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "{\"status\": \"ok\"}"}}}}));
    paths.insert("/v1/integrations/slack/authorize".into(), json!({"get": {"summary": "Redirect to Slack's consent page with a single-use state", "responses": {"303": {"description": "to Slack"}}}}));
    paths.insert("/v1/integrations/gmail/authorize".into(), json!({"get": {"summary": "Redirect to Google's consent page with a single-use state and PKCE", "responses": {"303": {"description": "to Google"}}}}));
    paths.insert("/v1/inbound".into(), json!({"get": {"summary": "The outbox of inbound Telegram messages after a cursor", "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}, {"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "{\"messages\": [...], \"next_cursor\"}"}}}}));
    for (path, summary) in [
        ("/api/slack/callback", "Slack's OAuth redirect (browser)"),
        ("/api/gmail/callback", "Google's OAuth redirect (browser)"),
    ] {
        paths.insert(path.into(), json!({"get": {"summary": summary, "security": [], "responses": {"303": {"description": "to DASHBOARD_URL?connected=<type>"}, "400": {"description": "a readable page; nothing written"}}}}));
    }
    paths.insert("/api/teller/webhook".into(), json!({"post": {"summary": "Teller's events, signed with Teller-Signature", "security": [], "responses": {"200": {"description": "accepted"}, "401": {"description": "bad signature"}}}}));
    paths.insert("/api/telegram/webhook/{bot_user_id}".into(), json!({"post": {"summary": "Telegram's updates, with X-Telegram-Bot-Api-Secret-Token", "security": [], "responses": {"200": {"description": "accepted"}, "401": {"description": "bad secret"}}}}));
    paths.insert("/v1/openapi.json".into(), json!({"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}));
    paths
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "VALIDATION_FAILED, PROFILE_NOT_FOUND or UNSUPPORTED_TYPE",
        401 => "UNAUTHORIZED: no or a bad token",
        404 => "NOT_FOUND (another user's row answers the same)",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE: a body over 64 KiB",
        502 => "DELIVERY_FAILED",
        503 => "NOT_CONFIGURED: the server lacks that provider's settings",
        _ => "error",
    }
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn operations(g: &mut SchemaGenerator) -> Vec<Operation> {
    vec![
        Operation {
            method: "get",
            path: "/v1/integrations",
            summary: "List your integrations, secrets redacted",
            body: None,
            ok: (200, "the integrations", schema::<IntegrationList>(g)),
            also: None,
            errors: &[400],
        },
        Operation {
            method: "post",
            path: "/v1/integrations",
            summary: "Create an email or webhook integration",
            body: Some(schema::<CreateIntegration>(g)),
            ok: (
                201,
                "the new integration, redacted",
                schema::<IntegrationView>(g),
            ),
            also: None,
            errors: &[400, 409, 413],
        },
        Operation {
            method: "patch",
            path: "/v1/integrations/{id}",
            summary: "Update config, enabled, scope, profile_ids, is_default, label or bound_profile_id",
            body: Some(schema::<PatchIntegration>(g)),
            ok: (
                200,
                "the integration, redacted",
                schema::<IntegrationView>(g),
            ),
            also: None,
            errors: &[400, 404, 409, 413],
        },
        Operation {
            method: "delete",
            path: "/v1/integrations/{id}",
            summary: "Revoke downstream where the provider allows, then delete",
            body: None,
            ok: (200, "deleted", schema::<Deleted>(g)),
            also: None,
            errors: &[404],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/{id}/test",
            summary: "A test notification, or for Gmail and Teller an authenticated read",
            body: None,
            ok: (200, "the test passed", schema::<Tested>(g)),
            also: None,
            errors: &[404, 502],
        },
        Operation {
            method: "get",
            path: "/v1/profiles",
            summary: "List your mirrored profiles",
            body: None,
            ok: (200, "the profiles", schema::<ProfileList>(g)),
            also: None,
            errors: &[],
        },
        Operation {
            method: "put",
            path: "/v1/profiles/{id}",
            summary: "Create or update a profile (201 when created)",
            body: Some(schema::<PutProfile>(g)),
            ok: (200, "the profile, updated", schema::<ProfileView>(g)),
            also: Some((201, "the profile, created")),
            errors: &[400, 409, 413],
        },
        Operation {
            method: "delete",
            path: "/v1/profiles/{id}",
            summary: "Delete a profile; it leaves every profile_ids",
            body: None,
            ok: (200, "deleted", schema::<ProfileDeleted>(g)),
            also: None,
            errors: &[404],
        },
        Operation {
            method: "get",
            path: "/v1/secrets",
            summary: "List your secrets (never their values)",
            body: None,
            ok: (200, "the secrets", schema::<SecretList>(g)),
            also: None,
            errors: &[],
        },
        Operation {
            method: "post",
            path: "/v1/secrets",
            summary: "Create a secret",
            body: Some(schema::<CreateSecret>(g)),
            ok: (
                201,
                "the secret, without its value",
                schema::<SecretView>(g),
            ),
            also: None,
            errors: &[400, 409, 413],
        },
        Operation {
            method: "patch",
            path: "/v1/secrets/{id}",
            summary: "Update name, value, scope or profile_ids",
            body: Some(schema::<PatchSecret>(g)),
            ok: (
                200,
                "the secret, without its value",
                schema::<SecretView>(g),
            ),
            also: None,
            errors: &[400, 404, 409, 413],
        },
        Operation {
            method: "delete",
            path: "/v1/secrets/{id}",
            summary: "Delete a secret",
            body: None,
            ok: (200, "deleted", schema::<SecretDeleted>(g)),
            also: None,
            errors: &[404],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/teller/nonce",
            summary: "A single-use nonce for Teller Connect",
            body: None,
            ok: (201, "the nonce", schema::<Nonce>(g)),
            also: None,
            errors: &[],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/teller/callback",
            summary: "Teller Connect's onSuccess: store the enrollment (200 when it updates one in place)",
            body: Some(schema::<TellerEnrollment>(g)),
            ok: (
                201,
                "the enrollment, redacted",
                schema::<IntegrationView>(g),
            ),
            also: Some((200, "the enrollment, updated in place")),
            errors: &[400, 409, 502],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/telegram/connect",
            summary: "Connect the user's own Telegram bot",
            body: Some(schema::<ConnectBot>(g)),
            ok: (201, "the bot and its pairing link", schema::<Connected>(g)),
            also: None,
            errors: &[400, 409, 502],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/telegram/connect-platform",
            summary: "Pair the platform's shared Telegram bot",
            body: Some(schema::<ConnectPlatform>(g)),
            ok: (201, "the pairing and its link", schema::<Connected>(g)),
            also: None,
            errors: &[400, 409, 502, 503],
        },
        Operation {
            method: "post",
            path: "/v1/integrations/telegram/regenerate-link-code",
            summary: "A new pairing link (earlier ones stop working)",
            body: Some(schema::<Regenerate>(g)),
            ok: (200, "the new link", schema::<Connected>(g)),
            also: None,
            errors: &[404],
        },
        Operation {
            method: "post",
            path: "/v1/sessions",
            summary: "Mint a running agent's capability token: its plan over streamable HTTP",
            body: Some(schema::<CreateSession>(g)),
            ok: (
                201,
                "the plan, in Claude Code's .mcp.json form",
                schema::<SessionCreated>(g),
            ),
            also: None,
            errors: &[400, 413],
        },
        Operation {
            method: "delete",
            path: "/v1/sessions/{id}",
            summary: "Revoke every capability token of a session",
            body: None,
            ok: (
                200,
                "how many tokens were revoked",
                schema::<SessionRevoked>(g),
            ),
            also: None,
            errors: &[],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_every_route_is_documented() {
        let doc = build();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        for (path, methods) in [
            ("/v1/integrations", &["get", "post"][..]),
            ("/v1/integrations/{id}", &["patch", "delete"]),
            ("/v1/integrations/{id}/test", &["post"]),
            ("/v1/profiles", &["get"]),
            ("/v1/profiles/{id}", &["put", "delete"]),
            ("/v1/secrets", &["get", "post"]),
            ("/v1/secrets/{id}", &["patch", "delete"]),
            ("/v1/sessions", &["post"]),
            ("/v1/sessions/{id}", &["delete"]),
        ] {
            for m in methods {
                assert!(doc["paths"][path][m].is_object(), "{m} {path}");
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(schemas["PatchIntegration"]["properties"]["scope"].is_object());
    }
}
