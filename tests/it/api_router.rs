//! The REST API in-process, through `integrations::api::router` (no
//! process, no socket), on a SQLite file and (with
//! `INTEGRATIONS_TEST_POSTGRES`) a fresh PostgreSQL database: every endpoint
//! and every error that reaches no provider, for whom, and what it never
//! shows. What only the process shows (its log, request ids, its limits,
//! SIGTERM, the tests against the fakes, whose base URLs come from the
//! environment) is `api`'s.

use crate::api_answers::{failed, ok};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use integrations::api::{AppState, router};
use serde_json::{Value, json};
use testkit::{Account, Backend, Database};
use tower::ServiceExt;

/// Secret values that must never come back in a response.
const CANARIES: &[&str] = &[
    "re_CANARY_key_1",
    "re_CANARY_key_2",
    "CANARY-secret-value",
    "CANARY-rotated",
    "whsec_CANARYsigningkey",
];

/// The router over a fresh store, and an API token of each user.
struct Api {
    app: axum::Router,
    mine: String,
    theirs: String,
    keys: String,
    db: Database,
}

impl Api {
    /// The example account on a fresh SQLite store.
    async fn new() -> Self {
        let api = Self::on(Backend::sqlite("router")).await;
        Account::seed(&api.db.url, &api.keys);
        api
    }

    /// The router over `db`, which holds nothing but the two users' tokens.
    async fn on(db: Database) -> Self {
        let keys = testkit::cli::run(&db.url, "", &["keys", "generate"])
            .trim()
            .to_string();
        let token = |user: &str| {
            testkit::cli::run(&db.url, &keys, &["tokens", "create", "--user", user])
                .trim()
                .to_string()
        };
        let (mine, theirs) = (token(Account::USER), token(Account::OTHER));
        let store = store::Store::connect(&db.url).await.unwrap();
        let keyring = vault::Keyring::parse(&keys).unwrap();
        let state = AppState::with_keyring(store, &db.url, keyring).unwrap();
        Self {
            app: router(state),
            mine,
            theirs,
            keys,
            db,
        }
    }

    /// The `integrations` CLI on the same store: its stdout.
    fn cli(&self, args: &[&str]) -> String {
        testkit::cli::run(&self.db.url, &self.keys, args)
    }

    /// A new API token of `user`.
    fn token(&self, user: &str) -> String {
        self.cli(&["tokens", "create", "--user", user])
            .trim()
            .to_string()
    }

    /// `method path` with `token` (if any) and `body`: the status and the JSON.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// `method path` with `token` (if any) and the bytes of `body` as JSON:
    /// the status and the JSON.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body)
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn a_users_rows_are_theirs_alone_and_secrets_never_come_back() {
    let api = Api::new().await;
    let (status, created) = api
        .send(
            "POST",
            "/v1/integrations",
            Some(&api.mine),
            Some(json!({"type": "webhook", "config": {"url": "https://hooks.example.com/in?token=CANARY-path", "secret": "whsec_Q0FOQVJZ"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["config"]["url"], "********");
    assert!(!created.to_string().contains("CANARY"), "{created}");

    // Another user's row answers exactly like a missing one.
    let missing = format!("/v1/integrations/int_{}", "x".repeat(21));
    for path in [format!("/v1/integrations/{id}"), missing] {
        let (status, body) = api
            .send(
                "PATCH",
                &path,
                Some(&api.theirs),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }
    let (_, theirs) = api
        .send("GET", "/v1/integrations", Some(&api.theirs), None)
        .await;
    assert_eq!(theirs["integrations"], json!([]));
    let (_, mine) = api
        .send("GET", "/v1/integrations", Some(&api.mine), None)
        .await;
    assert_eq!(mine["integrations"].as_array().unwrap().len(), 1);

    // No token, a forged one: 401.
    let (status, _) = api
        .send("GET", "/v1/integrations", Some("not-a-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_write_is_refused_naming_the_field_and_storing_nothing() {
    let api = Api::new().await;
    let (status, body) = api
        .send(
            "POST",
            "/v1/integrations",
            Some(&api.mine),
            Some(json!({"type": "email", "config": {"provider": "smtp", "smtp_host": "smtp.example.com", "smtp_username": "me", "smtp_password": "CANARY-pw", "from_address": "a@b.c", "to_address": "a@b.c", "api_key": "re_CANARY"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'api_key' is for provider 'resend'"),
        "{message}"
    );
    assert!(!body.to_string().contains("CANARY"), "{body}");
    let (_, listed) = api
        .send("GET", "/v1/integrations", Some(&api.mine), None)
        .await;
    assert_eq!(listed["integrations"], json!([]));
}

/// Every endpoint and every error of the REST API that reaches no
/// provider, on `db`: authentication, profiles, integrations, secrets, the
/// isolation between users, and no secret in any response. (The log, the
/// request ids and the tests against the fakes are `api`'s.)
async fn every_endpoint_and_error(db: Database) {
    let api = Api::on(db).await;
    let (token, them) = (api.mine.clone(), api.theirs.clone());
    let me = Some(token.as_str());
    let mut seen = String::new();
    let mut record = |v: &Value| seen.push_str(&v.to_string());

    // Authentication.
    failed(
        api.send("GET", "/v1/integrations", None, None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    failed(
        api.send("GET", "/v1/integrations", Some("itk_not-a-token"), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    let unknown = format!("itk_{}", "A".repeat(32));
    failed(
        api.send("GET", "/v1/integrations", Some(&unknown), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    let revoked = api.token(Account::USER);
    ok(
        api.send("GET", "/v1/integrations", Some(&revoked), None)
            .await,
        StatusCode::OK,
    );
    let listed = api.cli(&["tokens", "list", "--user", Account::USER]);
    let revoked_id = listed
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(!listed.contains(&revoked), "a token list shows a token");
    api.cli(&["tokens", "revoke", &revoked_id, "--user", Account::USER]);
    failed(
        api.send("GET", "/v1/integrations", Some(&revoked), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    ok(
        api.send("GET", "/healthz", None, None).await,
        StatusCode::OK,
    );
    failed(
        api.send("PUT", "/v1/integrations", me, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    failed(
        api.send("GET", "/v1/integrations?kind=email", me, None)
            .await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    failed(
        api.send("GET", "/v2/nothing", me, None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Profiles.
    let created = ok(
        api.send(
            "PUT",
            "/v1/profiles/prof_vzfin",
            me,
            Some(json!({"slug": "vzfin", "name": "VZ Finance", "is_default": true})),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(created["slug"], "vzfin");
    ok(
        api.send(
            "PUT",
            "/v1/profiles/prof_coding",
            me,
            Some(json!({"slug": "coding"})),
        )
        .await,
        StatusCode::CREATED,
    );
    let updated = ok(
        api.send(
            "PUT",
            "/v1/profiles/prof_coding",
            me,
            Some(json!({"slug": "coding", "name": "Coding"})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(updated["name"], "Coding");
    ok(
        api.send(
            "PUT",
            "/v1/profiles/prof_theirs",
            Some(&them),
            Some(json!({"slug": "theirs"})),
        )
        .await,
        StatusCode::CREATED,
    );
    failed(
        api.send(
            "PUT",
            "/v1/profiles/prof_vzfin",
            Some(&them),
            Some(json!({"slug": "x"})),
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    let listed = ok(
        api.send("GET", "/v1/profiles", me, None).await,
        StatusCode::OK,
    );
    assert_eq!(listed["profiles"].as_array().unwrap().len(), 2);

    // Create: email and webhook only, one of each.
    let email = ok(
        api
            .send("POST", "/v1/integrations", me, Some(json!({"type": "email", "config": {"api_key": "re_CANARY_key_1", "from_address": "alerts@app.example", "to_address": "me@example.com"}})))
            .await,
        StatusCode::CREATED,
    );
    record(&email);
    assert_eq!(email["config"]["api_key"], "********");
    assert_eq!(email["scope"], "all");
    let email_id = email["id"].as_str().unwrap().to_string();
    failed(
        api.send("POST", "/v1/integrations", me, Some(json!({"type": "email", "config": {"api_key": "re_CANARY_key_2", "from_address": "a@b.example", "to_address": "c@d.example"}}))).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    let message = failed(
        api.send(
            "POST",
            "/v1/integrations",
            me,
            Some(json!({"type": "slack", "config": {}})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED_TYPE",
    );
    assert!(message.contains("own flow"), "{message}");
    let hook = ok(
        api
            .send("POST", "/v1/integrations", me, Some(json!({"type": "webhook", "config": {"url": "https://hooks.example.com/1", "secret": "whsec_CANARYsigningkey"}, "profile_ids": ["prof_vzfin"], "label": "Zapier"})))
            .await,
        StatusCode::CREATED,
    );
    record(&hook);
    assert_eq!(
        (hook["scope"].as_str(), hook["label"].as_str()),
        (Some("agents"), Some("Zapier"))
    );
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let filtered = ok(
        api.send("GET", "/v1/integrations?type=webhook", me, None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(filtered["integrations"].as_array().unwrap().len(), 1);
    failed(
        api.send("GET", "/v1/integrations?type=fax", me, None).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );

    // The CLI's --json and the API show a row the same way.
    let from_cli: Value = serde_json::from_str(&api.cli(&["show", &hook_id, "--json"])).unwrap();
    assert_eq!(from_cli, filtered["integrations"][0]);

    // Patch.
    let patched = ok(api.send("PATCH", &format!("/v1/integrations/{email_id}"), me, Some(json!({"config": {"api_key": "re_CANARY_key_2"}, "label": "Mail", "enabled": false}))).await, StatusCode::OK);
    record(&patched);
    assert_eq!(
        (patched["label"].as_str(), patched["enabled"].as_bool()),
        (Some("Mail"), Some(false))
    );
    assert_eq!(
        patched["config"]["from_address"], "alerts@app.example",
        "config fields merged, not replaced"
    );
    let scoped = ok(
        api.send(
            "PATCH",
            &format!("/v1/integrations/{email_id}"),
            me,
            Some(json!({"profile_ids": ["prof_coding"]})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(
        (scoped["scope"].as_str(), scoped["profile_ids"].clone()),
        (Some("agents"), json!(["prof_coding"]))
    );
    let scoped = ok(
        api.send(
            "PATCH",
            &format!("/v1/integrations/{email_id}"),
            me,
            Some(json!({"scope": "all"})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(
        (scoped["scope"].as_str(), scoped["profile_ids"].clone()),
        (Some("all"), json!([]))
    );
    let before = ok(
        api.send("GET", "/v1/integrations", me, None).await,
        StatusCode::OK,
    );
    let message = failed(
        api.send(
            "PATCH",
            &format!("/v1/integrations/{hook_id}"),
            me,
            Some(json!({"profile_ids": ["prof_vzfin", "prof_theirs"], "label": "nope"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "PROFILE_NOT_FOUND",
    );
    assert!(message.contains("prof_theirs"), "{message}");
    for (body, code) in [
        (b"{\"label\": ".to_vec(), "VALIDATION_FAILED"),
        (
            b"{\"label\": \"x\", \"password\": \"CANARY-secret-value\"}".to_vec(),
            "VALIDATION_FAILED",
        ),
        (
            b"{\"enabled\": \"CANARY-secret-value\"}".to_vec(),
            "VALIDATION_FAILED",
        ),
        (
            format!("{{\"label\": \"{}\"}}", "x".repeat(70 * 1024)).into_bytes(),
            "PAYLOAD_TOO_LARGE",
        ),
    ] {
        let (status, body) = api
            .raw(
                "PATCH",
                &format!("/v1/integrations/{hook_id}"),
                me,
                Some(body),
            )
            .await;
        assert_eq!(body["error"]["code"], code, "{status} {body}");
        assert!(!body.to_string().contains("CANARY"), "{body}");
        let expected = if code == "PAYLOAD_TOO_LARGE" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected);
    }
    let after = ok(
        api.send("GET", "/v1/integrations", me, None).await,
        StatusCode::OK,
    );
    assert_eq!(before, after, "a refused request wrote something");

    // Another user's row answers exactly like a missing one.
    let theirs = failed(
        api.send(
            "PATCH",
            &format!("/v1/integrations/{hook_id}"),
            Some(&them),
            Some(json!({"label": "x"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let missing = failed(
        api.send(
            "PATCH",
            "/v1/integrations/int_doesnotexist000000000",
            me,
            Some(json!({"label": "x"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_eq!(
        theirs.replace(&hook_id, "<id>"),
        missing.replace("int_doesnotexist000000000", "<id>")
    );
    for (method, path) in [
        ("DELETE", format!("/v1/integrations/{hook_id}")),
        ("POST", format!("/v1/integrations/{hook_id}/test")),
    ] {
        failed(
            api.send(method, &path, Some(&them), None).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        );
    }

    // Secrets.
    let secret = ok(api.send("POST", "/v1/secrets", me, Some(json!({"name": "OPENAI_API_KEY", "value": "CANARY-secret-value", "profile_ids": ["prof_vzfin"]}))).await, StatusCode::CREATED);
    record(&secret);
    assert!(secret.get("value").is_none());
    let secret_id = secret["id"].as_str().unwrap().to_string();
    failed(
        api.send(
            "POST",
            "/v1/secrets",
            me,
            Some(json!({"name": "OPENAI_API_KEY", "value": "x"})),
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    failed(
        api.send(
            "POST",
            "/v1/secrets",
            me,
            Some(json!({"name": "lower-case", "value": "x"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
    );
    failed(
        api.send(
            "POST",
            "/v1/secrets",
            me,
            Some(json!({"name": "X", "value": "x", "profile_ids": ["prof_theirs"]})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "PROFILE_NOT_FOUND",
    );
    ok(
        api.send(
            "POST",
            "/v1/secrets",
            me,
            Some(json!({"name": "SHARED_TOKEN", "value": "shared"})),
        )
        .await,
        StatusCode::CREATED,
    );
    let env = |profile: &str| {
        api.cli(&[
            "secrets",
            "env",
            "--user",
            Account::USER,
            "--profile",
            profile,
        ])
    };
    assert_eq!(
        env("prof_vzfin"),
        "OPENAI_API_KEY=CANARY-secret-value\nSHARED_TOKEN=shared\n"
    );
    assert_eq!(env("prof_coding"), "SHARED_TOKEN=shared\n");
    let rotated = ok(
        api.send(
            "PATCH",
            &format!("/v1/secrets/{secret_id}"),
            me,
            Some(json!({"value": "CANARY-rotated"})),
        )
        .await,
        StatusCode::OK,
    );
    record(&rotated);
    assert!(env("prof_vzfin").contains("OPENAI_API_KEY=CANARY-rotated"));
    let widened = ok(
        api.send(
            "PATCH",
            &format!("/v1/secrets/{secret_id}"),
            me,
            Some(json!({"profile_ids": ["prof_vzfin", "prof_coding"]})),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(widened["profile_ids"], json!(["prof_vzfin", "prof_coding"]));
    failed(
        api.send(
            "PATCH",
            &format!("/v1/secrets/{secret_id}"),
            me,
            Some(json!({"profile_ids": ["prof_theirs"]})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "PROFILE_NOT_FOUND",
    );
    failed(
        api.send(
            "PATCH",
            &format!("/v1/secrets/{secret_id}"),
            Some(&them),
            Some(json!({"name": "X"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let secrets = ok(
        api.send("GET", "/v1/secrets", me, None).await,
        StatusCode::OK,
    );
    record(&secrets);
    assert_eq!(secrets["secrets"].as_array().unwrap().len(), 2);

    // The other user sees none of it.
    for path in ["/v1/integrations", "/v1/secrets", "/v1/profiles"] {
        let theirs = ok(
            api.send("GET", path, Some(&them), None).await,
            StatusCode::OK,
        );
        let list = theirs
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        assert!(
            list.iter()
                .all(|row| !row.to_string().contains("prof_vzfin")
                    && !row.to_string().contains(&email_id)),
            "{path}: {theirs}"
        );
    }
    failed(
        api.send(
            "DELETE",
            &format!("/v1/secrets/{secret_id}"),
            Some(&them),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Deleting a profile removes it from every profile_ids.
    let gone = ok(
        api.send("DELETE", "/v1/profiles/prof_coding", me, None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(gone["status"], "deleted");
    let secrets = ok(
        api.send("GET", "/v1/secrets", me, None).await,
        StatusCode::OK,
    );
    assert!(!secrets.to_string().contains("prof_coding"), "{secrets}");
    failed(
        api.send("DELETE", "/v1/profiles/prof_coding", me, None)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    failed(
        api.send("DELETE", "/v1/profiles/prof_theirs", me, None)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Delete.
    let deleted = ok(
        api.send("DELETE", &format!("/v1/secrets/{secret_id}"), me, None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(deleted, json!({"status": "deleted", "id": secret_id}));
    let deleted = ok(
        api.send("DELETE", &format!("/v1/integrations/{hook_id}"), me, None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(
        (
            deleted["status"].as_str(),
            deleted["id"].as_str(),
            deleted["revoked"].as_bool()
        ),
        (Some("deleted"), Some(hook_id.as_str()), Some(false))
    );
    failed(
        api.send("DELETE", &format!("/v1/integrations/{hook_id}"), me, None)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // The document.
    let doc = ok(
        api.send("GET", "/v1/openapi.json", None, None).await,
        StatusCode::OK,
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/secrets/{id}"]["patch"].is_object());

    // No secret in any response.
    for canary in CANARIES {
        assert!(
            !seen.contains(canary),
            "{:?} leaked {canary} in a response",
            api.db.backend
        );
    }
}

#[tokio::test]
async fn every_endpoint_and_every_error_on_sqlite() {
    every_endpoint_and_error(Backend::sqlite("router")).await;
}

#[tokio::test]
async fn every_endpoint_and_every_error_on_postgres() {
    if let Some(db) = Backend::postgres("router") {
        every_endpoint_and_error(db).await;
    }
}
