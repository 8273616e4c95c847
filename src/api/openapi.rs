//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the API, its schemas
//! generated from the very types the handlers take and return, with the
//! rules the server checks ([`rules`]) taken from the checks themselves.

use axum::Json;
use axum::extract::State;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::AppState;
use super::connect::teller::{Nonce, TellerEnrollment};
use super::connect::{AuthorizeUrl, Callback};
use super::dashboard::{DashboardSession, SignIn, SignedOut};
use super::error::ErrorBody;
use super::inbound::{InboundPage, InboundQuery};
use super::integrations::{
    CreateIntegration, Deleted, IntegrationList, ListQuery, PatchIntegration, Tested,
};
use super::notifications::{CreateNotification, LogPage, LogQuery, NotificationSent};
use super::profiles::{ProfileDeleted, ProfileList, ProfileView, PutProfile};
use super::providers::{OAuthProvider, TelegramProvider, TellerProvider};
use super::rules;
use super::secrets::{CreateSecret, PatchSecret, SecretDeleted, SecretList, SecretView};
use super::sessions::{CreateSession, SessionCreated, SessionList, SessionRevoked, SessionsEnded};
use super::telegram::{ConnectBot, ConnectPlatform, Connected, Regenerate};
use crate::ops::output::IntegrationView;

/// What a response carries.
enum Content {
    Json(Schema),
    /// A page for a person (the OAuth callbacks' refusals).
    Html,
    /// A redirect, with `Location`.
    Redirect,
}

/// What an authorize endpoint answers, either way setting the cookie its
/// callback checks.
const AUTHORIZE_JSON: &str =
    "with `Accept: application/json`: the consent page's URL; sets the cookie the callback checks";
const AUTHORIZE_REDIRECT: &str =
    "otherwise: a redirect to the consent page; sets the cookie the callback checks";

/// One operation of the document.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    /// Whether it takes the bearer token (401 without a valid one).
    secured: bool,
    /// Whether it takes only the bearer token, not the page's session.
    token_only: bool,
    /// The schemas of the path's `{parameters}` that are checked; the
    /// others are any string.
    path_params: Vec<(&'static str, Value)>,
    /// The struct its query string deserializes into.
    query: Option<Schema>,
    /// Headers it requires: name, description.
    headers: &'static [(&'static str, &'static str)],
    /// A JSON body (400 when it is not that, 408 when it does not arrive in
    /// time, 413 when too large).
    body: Option<Schema>,
    /// Its success responses, and any answered in its own shape.
    responses: Vec<(u16, &'static str, Content)>,
    /// The error statuses it may answer besides those that follow from its
    /// shape (401, 400, 404 for a path id, 408, 413).
    errors: &'static [u16],
}

impl Operation {
    fn new(method: &'static str, path: &'static str, summary: &'static str) -> Self {
        Self {
            method,
            path,
            summary,
            secured: true,
            token_only: false,
            path_params: Vec::new(),
            query: None,
            headers: &[],
            body: None,
            responses: Vec::new(),
            errors: &[],
        }
    }

    fn open(mut self) -> Self {
        self.secured = false;
        self
    }

    fn token_only(mut self) -> Self {
        self.token_only = true;
        self
    }

    fn path_param(mut self, name: &'static str, schema: Value) -> Self {
        self.path_params.push((name, schema));
        self
    }

    fn query(mut self, schema: Schema) -> Self {
        self.query = Some(schema);
        self
    }

    fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }

    fn body(mut self, schema: Schema) -> Self {
        self.body = Some(schema);
        self
    }

    fn ok(mut self, status: u16, description: &'static str, content: Content) -> Self {
        self.responses.push((status, description, content));
        self
    }

    fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }

    /// The `{names}` of its path template.
    fn templated(&self) -> Vec<&'static str> {
        self.path
            .split('{')
            .skip(1)
            .filter_map(|piece| piece.split_once('}').map(|(name, _)| name))
            .collect()
    }

    /// Every error status it may answer.
    fn error_statuses(&self) -> Vec<u16> {
        let mut statuses = Vec::new();
        if self.secured {
            statuses.push(401);
            if self.method != "get" {
                statuses.push(403);
            }
        }
        if self.body.is_some() || self.query.is_some() {
            statuses.push(400);
        }
        if !self.templated().is_empty() {
            statuses.push(404);
        }
        if self.body.is_some() {
            statuses.extend([408, 413]);
        }
        statuses.extend(self.errors);
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    fn parameters(&self) -> Vec<Value> {
        let mut parameters: Vec<Value> = self
            .templated()
            .into_iter()
            .map(|name| {
                let schema = self
                    .path_params
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or_else(|| json!({"type": "string"}), |(_, s)| s.clone());
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        for (name, description) in self.headers {
            parameters.push(json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}}));
        }
        if let Some(query) = &self.query {
            let required = query.get("required").cloned().unwrap_or(json!([]));
            let properties = query.get("properties").and_then(Value::as_object);
            for (name, schema) in properties.into_iter().flatten() {
                let mut schema = schema.clone();
                let description = schema
                    .as_object_mut()
                    .and_then(|s| s.remove("description"))
                    .unwrap_or(Value::Null);
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.as_array().is_some_and(|r| r.contains(&json!(name))),
                    "description": description,
                    "schema": without_null(schema),
                }));
            }
        }
        parameters
    }
}

/// A query parameter's schema without `null`: a query string has none.
fn without_null(mut schema: Value) -> Value {
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if let [one] = types.as_slice() {
            schema["type"] = one.clone();
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&json!("null")))
            .cloned()
            .collect();
        if let [one] = rest.as_slice() {
            return one.clone();
        }
    }
    schema
}

pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(build(state.mint_limits.max_ttl))
}

/// The document of a server whose tokens minted over REST live at most `max_ttl`.
fn build(max_ttl: std::time::Duration) -> Value {
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
        for (status, description, content) in &op.responses {
            let response = match content {
                Content::Json(schema) => {
                    json!({"description": description, "content": {"application/json": {"schema": schema}}})
                }
                Content::Html => {
                    json!({"description": description, "content": {"text/html": {"schema": {"type": "string"}}}})
                }
                Content::Redirect => {
                    json!({"description": description, "headers": {"Location": {"required": true, "schema": {"type": "string"}}}})
                }
            };
            responses.insert(status.to_string(), response);
        }
        for status in op.error_statuses() {
            responses.entry(status.to_string()).or_insert_with(|| {
                json!({"description": describe(status), "content": {"application/json": {"schema": error}}})
            });
        }
        let mut operation = json!({"summary": op.summary, "responses": responses});
        if !op.secured {
            operation["security"] = json!([]);
        } else if op.token_only {
            operation["security"] = json!([{"bearer": []}]);
        }
        if let Some(body) = &op.body {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        let parameters = op.parameters();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let entry = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method] = operation;
    }
    let mut schemas = g.take_definitions(true);
    rules::cap_ttl(&mut schemas, max_ttl);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "integrations", "version": env!("CARGO_PKG_VERSION"), "description": "Connected accounts, agent profiles and per-agent secrets of the caller (the user of the bearer token, or of the Settings page's session, whose state-changing requests carry its CSRF token as X-CSRF-Token)."},
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token from `integrations tokens create`"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::SESSION_COOKIE, "description": "the Settings page's session, from a sign-in link (`integrations dashboard-link`), named `__Host-integrations_session` under an https PUBLIC_BASE_URL; a request that changes anything also sends `X-CSRF-Token` (from GET /v1/dashboard/session), else 403. /v1/sessions and /v1/sessions/{id} take an API token only"},
            },
        },
    })
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "VALIDATION_FAILED, PROFILE_NOT_FOUND or UNSUPPORTED_TYPE",
        401 => "UNAUTHORIZED: no or a bad token or session",
        403 => "CSRF_FAILED: a change made with the page's session but without its X-CSRF-Token",
        415 => "UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json",
        404 => "NOT_FOUND (another user's row answers the same)",
        409 => "CONFLICT",
        408 => "REQUEST_TIMEOUT: the body did not arrive whole within HTTP_BODY_TIMEOUT_MS",
        413 => "PAYLOAD_TOO_LARGE: a body over 64 KiB",
        429 => {
            "RATE_LIMITED: past a limit of the minute (NOTIFY_MAX_PER_MINUTE tests, MCP_MAX_MINTS_PER_MINUTE mints per API token); see Retry-After"
        }
        500 => "INTERNAL: the store failed; Slack delivers the event again",
        502 => {
            "PROVIDER_UNAVAILABLE: the provider could not be reached or is down; DELIVERY_FAILED: it refused"
        }
        503 => "NOT_CONFIGURED: the server lacks that provider's settings",
        _ => "error",
    }
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn json<T: JsonSchema>(g: &mut SchemaGenerator) -> Content {
    Content::Json(schema::<T>(g))
}

/// The inline schema of a query struct (its properties become parameters).
fn query<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

fn from_json(value: Value) -> Schema {
    Schema::try_from(value).unwrap_or_default()
}

fn literal(value: Value) -> Content {
    Content::Json(from_json(value))
}

fn operations(g: &mut SchemaGenerator) -> Vec<Operation> {
    let profile_id = model::ids::ident_schema();
    vec![
        Operation::new("get", "/v1/integrations", "List your integrations, secrets redacted")
            .query(query::<ListQuery>(g))
            .ok(200, "the integrations", json::<IntegrationList>(g)),
        Operation::new("post", "/v1/integrations", "Create an email or webhook integration")
            .body(schema::<CreateIntegration>(g))
            .ok(201, "the new integration, redacted", json::<IntegrationView>(g))
            .errors(&[409]),
        Operation::new(
            "patch",
            "/v1/integrations/{id}",
            "Update config, enabled, scope, profile_ids, is_default, label or bound_profile_id",
        )
        .body(schema::<PatchIntegration>(g))
        .ok(200, "the integration, redacted", json::<IntegrationView>(g))
        .errors(&[409]),
        Operation::new(
            "delete",
            "/v1/integrations/{id}",
            "Revoke downstream where the provider allows, then delete",
        )
        .ok(200, "deleted", json::<Deleted>(g))
        .errors(&[502]),
        Operation::new(
            "post",
            "/v1/integrations/{id}/test",
            "A test notification, or for Gmail and Teller an authenticated read",
        )
        .ok(200, "the test passed", json::<Tested>(g))
        .errors(&[429, 502]),
        Operation::new(
            "get",
            "/v1/integrations/slack/authorize",
            "Start connecting Slack: a single-use state, bound to this browser by a cookie",
        )
        .ok(200, AUTHORIZE_JSON, json::<AuthorizeUrl>(g))
        .ok(303, AUTHORIZE_REDIRECT, Content::Redirect)
        .errors(&[503]),
        Operation::new(
            "get",
            "/v1/integrations/gmail/authorize",
            "Start connecting Gmail: a single-use state with PKCE, bound to this browser by a cookie",
        )
        .ok(200, AUTHORIZE_JSON, json::<AuthorizeUrl>(g))
        .ok(303, AUTHORIZE_REDIRECT, Content::Redirect)
        .errors(&[503]),
        Operation::new("get", "/api/slack/callback", "Slack's OAuth redirect (browser)")
            .open()
            .query(query::<Callback>(g))
            .ok(303, "to DASHBOARD_URL?connected=slack", Content::Redirect)
            .ok(400, "a readable page; nothing written", Content::Html)
            .ok(502, "the provider could not be reached: a readable page; nothing written", Content::Html),
        Operation::new("get", "/api/gmail/callback", "Google's OAuth redirect (browser)")
            .open()
            .query(query::<Callback>(g))
            .ok(303, "to DASHBOARD_URL?connected=gmail", Content::Redirect)
            .ok(400, "a readable page; nothing written", Content::Html)
            .ok(502, "the provider could not be reached: a readable page; nothing written", Content::Html),
        Operation::new(
            "post",
            "/v1/integrations/teller/nonce",
            "A single-use nonce for Teller Connect",
        )
        .ok(201, "the nonce", json::<Nonce>(g)),
        Operation::new(
            "post",
            "/v1/integrations/teller/callback",
            "Teller Connect's onSuccess: store the enrollment (200 when it updates one in place)",
        )
        .body(schema::<TellerEnrollment>(g))
        .ok(201, "the enrollment, redacted", json::<IntegrationView>(g))
        .ok(200, "the enrollment, updated in place", json::<IntegrationView>(g))
        .errors(&[409, 502]),
        Operation::new("post", "/api/teller/webhook", "Teller's events, signed with Teller-Signature")
            .open()
            .headers(&[("Teller-Signature", "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")])
            .body(from_json(json!({"type": "object"})))
            .ok(200, "accepted", literal(json!({"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]})))
            .errors(&[401, 503]),
        Operation::new(
            "post",
            "/v1/integrations/telegram/connect",
            "Connect the user's own Telegram bot",
        )
        .body(schema::<ConnectBot>(g))
        .ok(201, "the bot and its pairing link", json::<Connected>(g))
        .errors(&[409, 502, 503]),
        Operation::new(
            "post",
            "/v1/integrations/telegram/connect-platform",
            "Pair the platform's shared Telegram bot",
        )
        .body(schema::<ConnectPlatform>(g))
        .ok(201, "the pairing and its link", json::<Connected>(g))
        .errors(&[409, 502, 503]),
        Operation::new(
            "post",
            "/v1/integrations/telegram/regenerate-link-code",
            "A new pairing link (earlier ones stop working)",
        )
        .body(schema::<Regenerate>(g))
        .ok(200, "the new link", json::<Connected>(g))
        .errors(&[404]),
        Operation::new(
            "post",
            "/api/telegram/webhook/{bot_user_id}",
            "Telegram's updates, with X-Telegram-Bot-Api-Secret-Token",
        )
        .open()
        .path_param("bot_user_id", providers::telegram::bot_id_schema())
        .headers(&[("X-Telegram-Bot-Api-Secret-Token", "the secret_token given to setWebhook")])
        .body(from_json(json!({"type": "object"})))
        .ok(200, "accepted (whatever its handling did)", literal(json!({"type": "object", "properties": {"ok": {"const": true}}, "required": ["ok"]})))
        .errors(&[401]),
        Operation::new("post", "/api/slack/events", "Slack's Events API, signed with X-Slack-Signature")
            .open()
            .headers(&[
                ("X-Slack-Request-Timestamp", "unix seconds, within 5 minutes of now"),
                ("X-Slack-Signature", "v0=<hex HMAC-SHA256 of \"v0:<timestamp>:<body>\" with SLACK_SIGNING_SECRET>"),
            ])
            .body(from_json(json!({"type": "object"})))
            .ok(200, "url_verification: its challenge; an event: handled or ignored", literal(json!({"type": "object", "properties": {"challenge": {"type": "string"}, "ok": {"const": true}}})))
            .errors(&[401, 500, 503]),
        Operation::new(
            "get",
            "/v1/inbound",
            "The outbox of inbound Telegram and Slack messages after a cursor",
        )
        .query(query::<InboundQuery>(g))
        .ok(200, "the messages and the next cursor", json::<InboundPage>(g)),
        Operation::new("get", "/v1/profiles", "List your mirrored profiles")
            .ok(200, "the profiles", json::<ProfileList>(g)),
        Operation::new(
            "put",
            "/v1/profiles/{id}",
            "Create or update a profile (201 when created)",
        )
        .path_param("id", profile_id.clone())
        .body(schema::<PutProfile>(g))
        .ok(200, "the profile, updated", json::<ProfileView>(g))
        .ok(201, "the profile, created", json::<ProfileView>(g))
        .errors(&[409]),
        Operation::new(
            "delete",
            "/v1/profiles/{id}",
            "Delete a profile; it leaves every profile_ids",
        )
        .ok(200, "deleted", json::<ProfileDeleted>(g)),
        Operation::new("get", "/v1/secrets", "List your secrets (never their values)")
            .ok(200, "the secrets", json::<SecretList>(g)),
        Operation::new("post", "/v1/secrets", "Create a secret")
            .body(schema::<CreateSecret>(g))
            .ok(201, "the secret, without its value", json::<SecretView>(g))
            .errors(&[409]),
        Operation::new(
            "patch",
            "/v1/secrets/{id}",
            "Update name, value, scope or profile_ids",
        )
        .body(schema::<PatchSecret>(g))
        .ok(200, "the secret, without its value", json::<SecretView>(g))
        .errors(&[409]),
        Operation::new("delete", "/v1/secrets/{id}", "Delete a secret")
            .ok(200, "deleted", json::<SecretDeleted>(g)),
        Operation::new("get", "/v1/integrations/slack/config", "Whether Slack can be connected here")
            .ok(200, "the Slack connect flow's availability", json::<OAuthProvider>(g)),
        Operation::new("get", "/v1/integrations/gmail/config", "Whether Gmail can be connected here")
            .ok(200, "the Gmail connect flow's availability", json::<OAuthProvider>(g)),
        Operation::new("get", "/v1/integrations/teller/config", "What Teller Connect needs")
            .ok(200, "Teller Connect's settings (public)", json::<TellerProvider>(g)),
        Operation::new("get", "/v1/integrations/telegram/config", "How a Telegram bot can be connected here")
            .ok(200, "the Telegram connect flows' availability", json::<TelegramProvider>(g)),
        Operation::new(
            "post",
            "/v1/dashboard/sign-in",
            "Spend a sign-in link's key: sets the Settings page's session cookie",
        )
        .open()
        .body(schema::<SignIn>(g))
        .ok(200, "signed in; sets the HttpOnly session cookie", json::<DashboardSession>(g))
        .errors(&[401, 415]),
        Operation::new(
            "get",
            "/v1/dashboard/session",
            "The Settings page's session (from its cookie) and its CSRF token",
        )
        .open()
        .ok(200, "the signed-in user", json::<DashboardSession>(g))
        .errors(&[401]),
        Operation::new("post", "/v1/dashboard/sign-out", "End the Settings page's session")
            .ok(200, "signed out; removes the cookie", json::<SignedOut>(g)),
        Operation::new("get", "/v1/openapi.json", "This document")
            .open()
            .ok(200, "OpenAPI 3.1", literal(json!({"type": "object"}))),
        Operation::new("get", "/healthz", "Liveness")
            .open()
            .ok(200, "alive", literal(json!({"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}))),
        Operation::new(
            "post",
            "/v1/notifications",
            "Send a platform notification through channels granted to one of your profiles",
        )
        .body(schema::<CreateNotification>(g))
        .ok(200, "what each channel did", json::<NotificationSent>(g)),
        Operation::new(
            "get",
            "/v1/notifications",
            "Your notification log after a cursor",
        )
        .query(query::<LogQuery>(g))
        .ok(200, "the notifications and the next cursor", json::<LogPage>(g)),
        Operation::new(
            "post",
            "/v1/sessions",
            "Mint a running agent's capability token: its plan over streamable HTTP",
        )
        .token_only()
        .body(schema::<CreateSession>(g))
        .ok(201, "the plan, in Claude Code's .mcp.json form", json::<SessionCreated>(g))
        .errors(&[429]),
        Operation::new(
            "get",
            "/v1/sessions",
            "Your live capability tokens: session, profile, servers, what minted each, expiry, last use",
        )
        .token_only()
        .ok(200, "the live tokens, newest first", json::<SessionList>(g)),
        Operation::new(
            "delete",
            "/v1/sessions",
            "Revoke every live capability token of yours, whatever minted it",
        )
        .token_only()
        .ok(200, "how many tokens were revoked", json::<SessionsEnded>(g)),
        Operation::new(
            "delete",
            "/v1/sessions/{id}",
            "Revoke every capability token of a session (200 even when none was the caller's)",
        )
        .token_only()
        .ok(200, "how many tokens were revoked", json::<SessionRevoked>(g)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_every_route_is_documented() {
        let doc = build(std::time::Duration::from_secs(3600));
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
            ("/v1/sessions", &["post", "get", "delete"]),
            ("/v1/sessions/{id}", &["delete"]),
            ("/v1/dashboard/sign-in", &["post"]),
            ("/v1/dashboard/session", &["get"]),
            ("/v1/dashboard/sign-out", &["post"]),
            ("/v1/integrations/teller/config", &["get"]),
        ] {
            for m in methods {
                assert!(doc["paths"][path][m].is_object(), "{m} {path}");
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(schemas["PatchIntegration"]["properties"]["scope"].is_object());
        assert_eq!(
            schemas["CreateSession"]["properties"]["ttl_seconds"]["anyOf"][0]["maximum"],
            3600
        );
    }
}
