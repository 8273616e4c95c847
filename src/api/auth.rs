//! Who is calling: a bearer token, looked up by its SHA-256, or the
//! Settings page's session cookie, whose state-changing requests must also
//! carry the session's CSRF token ([`Caller`]); or a bearer token only
//! ([`TokenCaller`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// The cookie that holds a Settings page session's secret, over plain http.
pub const SESSION_COOKIE: &str = "integrations_session";
/// The same over https: the `__Host-` prefix makes browsers refuse one set
/// by a sibling subdomain or without `Secure`, so none can be planted.
const HOST_SESSION_COOKIE: &str = "__Host-integrations_session";

/// The session cookie's name on this server.
pub fn session_cookie(state: &AppState) -> &'static str {
    if state.connect.is_https() {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}
/// The header a session's state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The user an API token or a session belongs to: every handler acts for
/// this user only. A request whose caller was found carries [`Authenticated`],
/// and its body ([`Payload`](super::body::Payload)) is taken only if the
/// caller is still found once it has arrived.
pub struct Caller(pub String);

/// Marks a request whose credentials were checked before its body was read.
#[derive(Clone, Copy)]
pub struct Authenticated;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if sidecar::http::bearer(&parts.headers).is_some() {
            let caller = TokenCaller::from_request_parts(parts, state).await?;
            return Ok(Caller(caller.user_id));
        }
        let secret = session_secret(state, &parts.headers).ok_or_else(ApiError::unauthorized)?;
        let user = state
            .store
            .user_for_session(secret)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
        if !reads.contains(&parts.method) && !csrf_matches(&parts.headers, secret) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF_FAILED",
                "a request made with the Settings page's session must carry its CSRF token in 'X-CSRF-Token'; reload the page",
            ));
        }
        parts.extensions.insert(Authenticated);
        Ok(Caller(user))
    }
}

/// The session secret of the request's cookie, if it brought exactly one.
pub fn session_secret<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    only_cookie(headers, session_cookie(state))
}

/// The user of an API token, and the token's id, for what only a program
/// does (minting agents' capability tokens, which the token's revocation
/// revokes): the Settings page's session is refused there, so that nothing
/// a browser holds outlives its sign-out.
pub struct TokenCaller {
    pub user_id: String,
    pub token_id: String,
}

impl FromRequestParts<AppState> for TokenCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = sidecar::http::bearer(&parts.headers) else {
            return Err(ApiError::unauthorized());
        };
        match state.store.user_for_token(token).await? {
            Some(owner) => {
                parts.extensions.insert(Authenticated);
                Ok(TokenCaller {
                    user_id: owner.user_id,
                    token_id: owner.id,
                })
            }
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// The value of the cookie `name`, if the request brought exactly one: a
/// second one (planted from a sibling site, say) makes it ambiguous, and it
/// is refused like a missing one.
pub fn only_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        });
    let first = found.next().filter(|value| !value.is_empty())?;
    found.next().is_none().then_some(first)
}

/// The CSRF token of the session whose secret is `secret`: derived from it,
/// so that it needs no storage, and readable only by the page that the
/// session's cookie lets call `GET /v1/dashboard/session`.
pub fn csrf_token(secret: &str) -> String {
    let digest = Sha256::digest(format!("integrations-csrf|{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn csrf_matches(headers: &HeaderMap, secret: &str) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // Compared as digests: how long the comparison takes says nothing
    // about how much of the token was right.
    Sha256::digest(sent.as_bytes()) == Sha256::digest(csrf_token(secret).as_bytes())
}
