//! The Settings page's sign-in, from outside, on SQLite and (with
//! `INTEGRATIONS_TEST_POSTGRES`) PostgreSQL: a dashboard link is single-use
//! and lands a session cookie (HttpOnly, SameSite=Strict, Secure over
//! https); the session acts for its user only; every change made with it
//! needs its CSRF token; signing out ends it; the provider config endpoints
//! and the page hold no secret; no log line holds a key or a session.
//! (The page itself is driven in a real browser by `scripts/browser.sh`.)

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use testkit::{Server, cli, service};

use service::{OTHER, Store, USER};

const SLACK_SECRET: &str = "CANARY-slack-client-secret";
const PLATFORM_BOT: &str = "7000000100:CANARYplatformbottokenfake0100";

/// A signed-in browser: its cookie header and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn serve(store: &Store, public_base_url: &str) -> Server {
    Server::start(
        std::path::Path::new(crate::BIN),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("INTEGRATIONS_DB", &store.url),
            ("INTEGRATIONS_KEYS", &store.keys),
            ("PUBLIC_BASE_URL", public_base_url),
            ("SLACK_CLIENT_ID", "slack-client"),
            ("SLACK_CLIENT_SECRET", SLACK_SECRET),
            ("PLATFORM_TELEGRAM_BOT_TOKEN", PLATFORM_BOT),
            ("TELLER_APPLICATION_ID", "app_public_id"),
        ],
    )
    .await
}

/// The key of a fresh dashboard link for `user`.
fn link_key(store: &Store, user: &str, base: &str) -> String {
    let link = store.cli(&["dashboard-link", "--user", user, "--url", base]);
    let (page, key) = link.trim().split_once('#').expect("the key follows '#'");
    assert_eq!(page, format!("{base}/settings/sign-in"));
    key.to_string()
}

async fn sign_in(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/dashboard/sign-in"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap()
}

async fn signed_in(http: &reqwest::Client, served: &Server, store: &Store, user: &str) -> Session {
    let key = link_key(store, user, &served.base);
    let response = sign_in(http, &served.base, &key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user_id"], user);
    Session {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

/// A request of `session`: `csrf` is the token it sends, if any.
async fn send(
    http: &reqwest::Client,
    base: &str,
    session: &Session,
    method: &str,
    path: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header(COOKIE, &session.cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn sign_in_and_sessions(store: &Store) {
    let served = serve(store, "http://127.0.0.1:9").await;
    let base = served.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A link is single-use, and only JSON spends it: a form posted from
    // another site (text/plain) is refused and spends nothing.
    let key = link_key(store, USER, &base);
    let forged = http
        .post(format!("{base}/v1/dashboard/sign-in"))
        .header(CONTENT_TYPE, "text/plain")
        .body(json!({ "key": key }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(forged.headers().get(SET_COOKIE).is_none());
    let first = sign_in(&http, &base, &key).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("integrations_session=dss_"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure cookie over plain http"
    );
    let again = sign_in(&http, &base, &key).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.headers().get(SET_COOKIE).is_none());
    let forged_key = sign_in(&http, &base, "not-a-key").await;
    assert_eq!(forged_key.status(), StatusCode::UNAUTHORIZED);

    // A link lives at most a day.
    let too_long = cli::command(
        &store.url,
        &store.keys,
        &["dashboard-link", "--user", USER, "--ttl", "25h"],
    )
    .output()
    .unwrap();
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("24 hours"));

    let mine = signed_in(&http, &served, store, USER).await;
    let theirs = signed_in(&http, &served, store, OTHER).await;

    // Reads need no CSRF token; the session sees its user's rows only.
    let (status, listed) = send(&http, &base, &mine, "GET", "/v1/integrations", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["integrations"][0]["id"], store.teller_id.as_str());
    let (status, listed) = send(&http, &base, &theirs, "GET", "/v1/integrations", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["integrations"], json!([]));
    let path = format!("/v1/integrations/{}", store.teller_id);
    let patch = Some(json!({"scope": "all"}));
    let (status, _) = send(
        &http,
        &base,
        &theirs,
        "PATCH",
        &path,
        Some(&theirs.csrf),
        patch.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's row is not found"
    );

    // A change without the CSRF token, or with another session's, is
    // refused and changes nothing.
    let secret = Some(json!({"name": "FORGED", "value": "x"}));
    for csrf in [
        None,
        Some(theirs.csrf.as_str()),
        Some("0".repeat(64).as_str()),
    ] {
        let (status, body) = send(
            &http,
            &base,
            &mine,
            "POST",
            "/v1/secrets",
            csrf,
            secret.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "CSRF_FAILED");
    }
    for (method, path) in [("PATCH", path.as_str()), ("DELETE", path.as_str())] {
        let (status, _) = send(
            &http,
            &base,
            &mine,
            method,
            path,
            None,
            Some(json!({"enabled": false})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} without the CSRF token"
        );
    }
    let (_, secrets) = send(&http, &base, &mine, "GET", "/v1/secrets", None, None).await;
    assert_eq!(secrets["secrets"], json!([]));
    let (_, listed) = send(&http, &base, &mine, "GET", "/v1/integrations", None, None).await;
    assert_eq!(
        listed["integrations"][0]["enabled"], true,
        "nothing changed"
    );

    // Minting an agent's capability token takes an API token: nothing a
    // browser holds outlives its sign-out.
    let mint = Some(json!({"profile_id": "prof_vzfin", "session_id": "s_page"}));
    let (status, _) = send(
        &http,
        &base,
        &mine,
        "POST",
        "/v1/sessions",
        Some(&mine.csrf),
        mint,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, patched) =
        send(&http, &base, &mine, "PATCH", &path, Some(&mine.csrf), patch).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["scope"], "all");

    // The session's own answer, and the providers' configuration: no secret.
    let (status, me) = send(
        &http,
        &base,
        &mine,
        "GET",
        "/v1/dashboard/session",
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, &me["csrf_token"]),
        (StatusCode::OK, &json!(mine.csrf))
    );
    let mut configs = String::new();
    for provider in ["slack", "gmail", "teller", "telegram"] {
        let (status, config) = send(
            &http,
            &base,
            &mine,
            "GET",
            &format!("/v1/integrations/{provider}/config"),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        configs.push_str(&config.to_string());
    }
    assert!(
        configs.contains(r#""application_id":"app_public_id""#),
        "{configs}"
    );
    assert!(configs.contains(r#""platform_bot":true"#), "{configs}");
    for secret in [SLACK_SECRET, PLATFORM_BOT] {
        assert!(!configs.contains(secret), "{configs}");
    }

    // Signing out needs the CSRF token too, then ends the session.
    let (status, _) = send(
        &http,
        &base,
        &mine,
        "POST",
        "/v1/dashboard/sign-out",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        &http,
        &base,
        &mine,
        "POST",
        "/v1/dashboard/sign-out",
        Some(&mine.csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/v1/integrations", "/v1/dashboard/session"] {
        let (status, _) = send(&http, &base, &mine, "GET", path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} after sign-out");
    }
    let (status, _) = send(&http, &base, &theirs, "GET", "/v1/integrations", None, None).await;
    assert_eq!(status, StatusCode::OK, "another session lives on");

    // An expired session is refused, and an operator ends every session of
    // a user at once.
    let expiring = signed_in(&http, &served, store, OTHER).await;
    store
        .execute(&format!(
            "UPDATE dashboard_sessions SET expires_at = '2020-01-01T00:00:00.000000Z'              WHERE session_sha256 = '{}'",
            sha256_hex(expiring.cookie.trim_start_matches("integrations_session="))
        ))
        .await;
    let (status, _) = send(
        &http,
        &base,
        &expiring,
        "GET",
        "/v1/integrations",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an expired session");
    let ended = store.cli(&["dashboard-sign-out", "--user", OTHER]);
    assert_eq!(
        ended.trim(),
        format!("ended 1 session(s) of {OTHER}"),
        "the expired one was dropped first"
    );
    let (status, _) = send(&http, &base, &theirs, "GET", "/v1/integrations", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "after dashboard-sign-out");

    // The page: `/` leads to it, the query kept; it is static, holds no
    // user's data, and runs only this server's scripts.
    let root = http
        .get(format!("{base}/?connected=gmail"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        root.headers()["location"],
        "/settings/integrations?connected=gmail"
    );
    let page = http
        .get(format!("{base}/settings/integrations"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Notifications &amp; chat") && html.contains("Data sources"));
    assert!(!html.contains(USER) && !html.contains(&store.teller_id));

    let log = served.log();
    for (what, secret) in [
        ("a sign-in key", key.as_str()),
        ("a session", mine.cookie.as_str()),
        ("a secret", SLACK_SECRET),
    ] {
        let secret = secret.trim_start_matches("integrations_session=");
        assert!(!log.contains(secret), "{what} is in the log");
    }
}

#[tokio::test]
async fn sign_in_and_sessions_on_sqlite() {
    sign_in_and_sessions(&Store::sqlite().await).await;
}

#[tokio::test]
async fn sign_in_and_sessions_on_postgres() {
    let Some(store) = Store::postgres().await else {
        eprintln!("INTEGRATIONS_TEST_POSTGRES is not set: skipped");
        return;
    };
    sign_in_and_sessions(&store).await;
}

#[tokio::test]
async fn a_session_cookie_is_secure_over_https() {
    let store = Store::sqlite().await;
    let served = serve(&store, "https://integrations.example").await;
    let key = link_key(&store, USER, &served.base);
    let response = sign_in(&reqwest::Client::new(), &served.base, &key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // `__Host-`: a browser takes it only from this host, Secure, for `/`.
    assert!(
        cookie.starts_with("__Host-integrations_session="),
        "{cookie}"
    );
    let plain = cookie.split(';').next().unwrap().replacen("__Host-", "", 1);
    let planted = reqwest::Client::new()
        .get(format!("{}/v1/integrations", served.base))
        .header(COOKIE, plain)
        .send()
        .await
        .unwrap();
    assert_eq!(
        planted.status(),
        StatusCode::UNAUTHORIZED,
        "the unprefixed name means nothing over https"
    );
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
