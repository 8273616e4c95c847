//! The REST API in-process, through `integrations::api::router` (no
//! process, no socket): what it answers, for whom, and what it never shows.
//! What only the process shows (its log, its limits, SIGTERM) is `api`'s.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use integrations::api::{AppState, router};
use serde_json::{Value, json};
use testkit::{Account, Backend};
use tower::ServiceExt;

/// The router over a fresh SQLite store seeded with the example account,
/// and an API token of each user.
struct Api {
    app: axum::Router,
    mine: String,
    theirs: String,
    _db: testkit::Database,
}

impl Api {
    async fn new() -> Self {
        let db = Backend::sqlite("router");
        let keys = testkit::cli::run(&db.url, "", &["keys", "generate"])
            .trim()
            .to_string();
        Account::seed(&db.url, &keys);
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
            _db: db,
        }
    }

    /// `method path` with `token` and `body`: the status and the JSON.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
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
            &api.mine,
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
            .send("PATCH", &path, &api.theirs, Some(json!({"enabled": false})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }
    let (_, theirs) = api.send("GET", "/v1/integrations", &api.theirs, None).await;
    assert_eq!(theirs["integrations"], json!([]));
    let (_, mine) = api.send("GET", "/v1/integrations", &api.mine, None).await;
    assert_eq!(mine["integrations"].as_array().unwrap().len(), 1);

    // No token, a forged one: 401.
    let (status, _) = api
        .send("GET", "/v1/integrations", "not-a-token", None)
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
            &api.mine,
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
    let (_, listed) = api.send("GET", "/v1/integrations", &api.mine, None).await;
    assert_eq!(listed["integrations"], json!([]));
}
