//! `/v1/dashboard/*`: the Settings page's session. A single-use sign-in key
//! (from `integrations dashboard-link`) becomes an HttpOnly, SameSite=Strict
//! cookie; the page reads its CSRF token from `GET /v1/dashboard/session`
//! and sends it with every state-changing request.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::{Caller, csrf_token, session_cookie, session_secret};
use super::body::Payload;
use super::error::ApiError;

/// `POST /v1/dashboard/sign-in`: spends a sign-in key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The key of a link from `integrations dashboard-link` (the part after `#`).
    #[schemars(with = "String")]
    pub key: Zeroizing<String>,
}

/// The signed-in person, and the token their page's state-changing
/// requests carry as `X-CSRF-Token`.
#[derive(Serialize, JsonSchema)]
pub struct DashboardSession {
    pub user_id: String,
    pub csrf_token: String,
}

/// `POST /v1/dashboard/sign-out`.
#[derive(Serialize, JsonSchema)]
pub struct SignedOut {
    /// Always `signed_out`.
    pub status: &'static str,
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Payload(body): Payload<SignIn>,
) -> Result<Response, ApiError> {
    // A form on another site cannot send JSON without a preflight, which
    // this server never answers: no other site can post a key. (The
    // sign-in page asks before it replaces a live session.)
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "sign in with 'Content-Type: application/json'",
        ));
    }
    let Some((user_id, secret)) = state.store.sign_in(&body.key).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this sign-in link is unknown, expired or was already used; ask for a new one (integrations dashboard-link)",
        ));
    };
    let mut response = Json(DashboardSession {
        csrf_token: csrf_token(&secret),
        user_id,
    })
    .into_response();
    let max_age = store::SESSION_TTL.as_secs();
    set_cookie(&state, &mut response, &secret, max_age);
    Ok(response)
}

/// `GET /v1/dashboard/session`: who the session cookie signs in, and its CSRF token.
pub async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<DashboardSession>, ApiError> {
    let secret = session_secret(&state, &headers).ok_or_else(signed_out)?;
    let user_id = state
        .store
        .user_for_session(secret)
        .await?
        .ok_or_else(signed_out)?;
    Ok(Json(DashboardSession {
        user_id,
        csrf_token: csrf_token(secret),
    }))
}

/// `POST /v1/dashboard/sign-out`: ends the session (CSRF-checked like any
/// change) and removes its cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = session_secret(&state, &headers) {
        state.store.sign_out(secret).await?;
    }
    let mut response = Json(SignedOut {
        status: "signed_out",
    })
    .into_response();
    set_cookie(&state, &mut response, "", 0);
    Ok(response)
}

fn signed_out() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "you are signed out; open a new sign-in link (integrations dashboard-link)",
    )
}

/// Sets the session cookie to `value` for `max_age` seconds (0: removes it).
fn set_cookie(state: &AppState, response: &mut Response, value: &str, max_age: u64) {
    let secure = if state.connect.is_https() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        session_cookie(state)
    );
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        let headers = response.headers_mut();
        headers.insert(header::SET_COOKIE, cookie);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
