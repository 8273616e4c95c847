//! Google's OAuth endpoints: `POST /token` (the `refresh_token` grant) and
//! `POST /revoke`, with form bodies and Google's `{"error",
//! "error_description"}` answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{CLIENT_ID, CLIENT_SECRET, Fake, REFRESH_TOKEN, SCOPES};

/// The grant behind [`REFRESH_TOKEN`] and the access tokens minted from it.
pub(super) struct Grants {
    /// Access token → when it stops working.
    access: HashMap<String, Instant>,
    minted: u64,
    /// Successful `refresh_token` grants.
    pub(super) refreshes: usize,
    /// False once revoked or killed: refreshing answers `invalid_grant`.
    alive: bool,
    /// `expires_in` of the next minted tokens.
    pub(super) expires_in: u64,
    /// Every token posted to `/revoke`, oldest first.
    pub(super) revoked: Vec<String>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            access: HashMap::new(),
            minted: 0,
            refreshes: 0,
            alive: true,
            expires_in: 3599,
            revoked: Vec::new(),
        }
    }
}

impl Grants {
    /// A new access token, valid for `expires_in` seconds from now.
    pub(super) fn mint(&mut self, expires_in: u64) -> String {
        self.minted += 1;
        let token = format!("ya29.fake-{}", self.minted);
        let until = Instant::now() + Duration::from_secs(expires_in);
        self.access.insert(token.clone(), until);
        token
    }

    /// Whether `token` is an access token that has not expired.
    pub(super) fn is_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Invalidates every access token minted so far.
    pub(super) fn expire_all(&mut self) {
        self.access.clear();
    }

    /// Kills the grant: refreshing answers `invalid_grant` from now on.
    pub(super) fn kill(&mut self) {
        self.alive = false;
    }

    /// The `refresh_token` grant: a token response, or Google's error.
    fn refresh(&mut self, form: &HashMap<String, String>) -> Result<Value, (StatusCode, Value)> {
        let field = |name: &str| form.get(name).map(String::as_str);
        match field("grant_type") {
            None => return Err(missing("grant_type")),
            Some("refresh_token") => {}
            Some(other) => {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!("Invalid grant_type: {other}"),
                ));
            }
        }
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            ));
        }
        let Some(refresh_token) = field("refresh_token") else {
            return Err(missing("refresh_token"));
        };
        if refresh_token != REFRESH_TOKEN || !self.alive {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Token has been expired or revoked.",
            ));
        }
        self.refreshes += 1;
        let expires_in = self.expires_in;
        Ok(json!({
            "access_token": self.mint(expires_in),
            "expires_in": expires_in,
            "scope": SCOPES,
            "token_type": "Bearer",
        }))
    }

    /// Revokes the grant that `token` (the refresh token or one of its access
    /// tokens) belongs to: Google drops the whole grant either way.
    fn revoke(&mut self, token: &str) -> Result<(), (StatusCode, Value)> {
        self.revoked.push(token.into());
        let known = (token == REFRESH_TOKEN && self.alive) || self.access.contains_key(token);
        if !known {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Token expired or revoked",
            ));
        }
        self.kill();
        self.expire_all();
        Ok(())
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn missing(field: &str) -> (StatusCode, Value) {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("Missing required parameter: {field}"),
    )
}

fn answer(result: Result<Value, (StatusCode, Value)>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err((status, body)) => (status, axum::Json(body)).into_response(),
    }
}

/// The form fields of `body` (Google also takes them in the query string).
fn form(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut fields: HashMap<String, String> =
        serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    fields.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default());
    fields
}

/// `POST /token`.
pub(super) async fn token(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let form = form(query.as_deref(), &body);
    answer(fake.grants.lock().unwrap().refresh(&form))
}

/// `POST /revoke`.
pub(super) async fn revoke(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = form(query.as_deref(), &body).remove("token") else {
        return answer(Err(missing("token")));
    };
    let result = fake.grants.lock().unwrap().revoke(&token);
    answer(result.map(|()| json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh_form() -> HashMap<String, String> {
        [
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
            ("grant_type", "refresh_token"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn error_of(result: Result<Value, (StatusCode, Value)>) -> (u16, String) {
        let (status, body) = result.unwrap_err();
        (status.as_u16(), body["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn each_refresh_mints_a_distinct_token_and_old_ones_stay_valid() {
        let mut grants = Grants::default();
        let first = grants.refresh(&refresh_form()).unwrap();
        let second = grants.refresh(&refresh_form()).unwrap();
        let (a, b) = (
            first["access_token"].as_str().unwrap(),
            second["access_token"].as_str().unwrap(),
        );
        assert_ne!(a, b);
        assert!(grants.is_valid(a) && grants.is_valid(b));
        assert_eq!(first["expires_in"], 3599);
        assert_eq!(grants.refreshes, 2);
    }

    #[test]
    fn refresh_errors_follow_google() {
        let mut grants = Grants::default();
        let mut form = refresh_form();
        form.insert("client_secret".into(), "wrong".into());
        assert_eq!(
            error_of(grants.refresh(&form)),
            (401, "invalid_client".into())
        );
        let mut form = refresh_form();
        form.insert("grant_type".into(), "authorization_code".into());
        assert_eq!(
            error_of(grants.refresh(&form)),
            (400, "unsupported_grant_type".into())
        );
        let mut form = refresh_form();
        form.remove("refresh_token");
        assert_eq!(
            error_of(grants.refresh(&form)),
            (400, "invalid_request".into())
        );
        grants.kill();
        assert_eq!(
            error_of(grants.refresh(&refresh_form())),
            (400, "invalid_grant".into())
        );
    }

    #[test]
    fn tokens_expire_and_revoking_drops_the_grant() {
        let mut grants = Grants::default();
        let gone = grants.mint(0);
        assert!(!grants.is_valid(&gone));
        let live = grants.mint(60);
        assert!(grants.revoke(REFRESH_TOKEN).is_ok());
        assert!(!grants.is_valid(&live));
        assert_eq!(
            error_of(grants.refresh(&refresh_form())),
            (400, "invalid_grant".into())
        );
        assert!(grants.revoke(REFRESH_TOKEN).is_err());
        assert_eq!(grants.revoked, [REFRESH_TOKEN, REFRESH_TOKEN]);
    }
}
