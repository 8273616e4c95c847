//! Google's OAuth endpoints: `POST /token` (the `refresh_token` and, with
//! PKCE, the `authorization_code` grants) and `POST /revoke`, with form bodies
//! and Google's `{"error", "error_description"}` answers; and the consent
//! page, `GET /o/oauth2/v2/auth`, whose "Allow" sends the browser back to the
//! `redirect_uri` with a code and the `state` (a test that drives no browser
//! calls [`Grants::authorize`] instead).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, CLIENT_SECRET, EMAIL, Fake, REFRESH_TOKEN, SCOPES};

/// How long an authorization code can be exchanged (Google: 10 minutes).
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// An authorization code handed out by the consent page.
struct Code {
    /// The request's `code_challenge` (`S256`).
    challenge: String,
    /// The request's `redirect_uri`; the exchange must repeat it.
    redirect_uri: String,
    /// Whether the exchange returns [`REFRESH_TOKEN`] (false: the user had
    /// already granted the app, so Google returns none).
    with_refresh_token: bool,
    until: Instant,
    /// Exchanged once already.
    used: bool,
}

/// The grant behind [`REFRESH_TOKEN`], the access tokens minted from it and
/// the authorization codes that (re)create it.
pub(super) struct Grants {
    /// Access token → when it stops working.
    access: HashMap<String, Instant>,
    minted: u64,
    /// Authorization code → its request.
    codes: HashMap<String, Code>,
    /// Successful `refresh_token` grants.
    pub(super) refreshes: usize,
    /// Successful `authorization_code` grants.
    pub(super) exchanges: usize,
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
            codes: HashMap::new(),
            refreshes: 0,
            exchanges: 0,
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

    /// The user consents to a request that carried `code_challenge` (`S256`)
    /// and `redirect_uri`: a single-use authorization code, exchangeable for
    /// `valid_for`.
    pub(super) fn authorize(
        &mut self,
        code_challenge: &str,
        redirect_uri: &str,
        with_refresh_token: bool,
        valid_for: Duration,
    ) -> String {
        let code = format!(
            "4/0AeanS0{:04}FakeGmailAuthCode-vzFinance-Xq7Lw2",
            self.codes.len() + 1
        );
        self.codes.insert(
            code.clone(),
            Code {
                challenge: code_challenge.into(),
                redirect_uri: redirect_uri.into(),
                with_refresh_token,
                until: Instant::now() + valid_for,
                used: false,
            },
        );
        code
    }

    /// `POST /token`: the grant `grant_type` names.
    fn grant(&mut self, form: &HashMap<String, String>) -> Result<Value, (StatusCode, Value)> {
        match form.get("grant_type").map(String::as_str) {
            None => Err(missing("grant_type")),
            Some("refresh_token") => self.refresh(form),
            Some("authorization_code") => self.exchange(form),
            Some(other) => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )),
        }
    }

    /// The `refresh_token` grant: a token response, or Google's error.
    fn refresh(&mut self, form: &HashMap<String, String>) -> Result<Value, (StatusCode, Value)> {
        let field = |name: &str| form.get(name).map(String::as_str);
        check_client(form)?;
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

    /// The `authorization_code` grant with PKCE: a token response, or
    /// Google's error. Only a successful exchange uses the code up.
    fn exchange(&mut self, form: &HashMap<String, String>) -> Result<Value, (StatusCode, Value)> {
        let field = |name: &str| form.get(name).map(String::as_str);
        check_client(form)?;
        let Some(code) = field("code") else {
            return Err(missing("code"));
        };
        let Some(redirect_uri) = field("redirect_uri") else {
            return Err(missing("redirect_uri"));
        };
        let invalid_grant =
            |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
        let Some(found) = self.codes.get_mut(code) else {
            return Err(invalid_grant("Malformed auth code."));
        };
        if found.used || Instant::now() >= found.until {
            return Err(invalid_grant("Bad Request"));
        }
        if redirect_uri != found.redirect_uri {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "Bad Request",
            ));
        }
        let Some(verifier) = field("code_verifier") else {
            return Err(invalid_grant("Missing code verifier."));
        };
        if !is_verifier(verifier) || s256(verifier) != found.challenge {
            return Err(invalid_grant("Invalid code verifier."));
        }
        found.used = true;
        let with_refresh_token = found.with_refresh_token;
        self.exchanges += 1;
        if with_refresh_token {
            // The user consented again: the grant lives, whatever befell it.
            self.alive = true;
        }
        let expires_in = self.expires_in;
        let mut body = json!({
            "access_token": self.mint(expires_in),
            "expires_in": expires_in,
        });
        if with_refresh_token {
            body["refresh_token"] = REFRESH_TOKEN.into();
        }
        body["scope"] = SCOPES.into();
        body["token_type"] = "Bearer".into();
        body["id_token"] = id_token(expires_in).into();
        Ok(body)
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

/// The client must be [`CLIENT_ID`] with [`CLIENT_SECRET`].
fn check_client(form: &HashMap<String, String>) -> Result<(), (StatusCode, Value)> {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") == Some(CLIENT_ID) && field("client_secret") == Some(CLIENT_SECRET) {
        Ok(())
    } else {
        Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        ))
    }
}

/// The `S256` code challenge of `verifier`: BASE64URL-NOPAD(SHA-256).
pub(super) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636: 43 to 128 unreserved characters.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A JWT-shaped ID token for [`EMAIL`]; its signature is not a real one.
fn id_token(expires_in: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = json!({"alg": "RS256", "kid": "fake-gmail", "typ": "JWT"});
    let claims = json!({
        "iss": "https://accounts.google.com",
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": "108204268033311374519",
        "email": EMAIL,
        "email_verified": true,
        "iat": now,
        "exp": now + expires_in,
    });
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(header),
        part(claims),
        URL_SAFE_NO_PAD.encode("fake-signature")
    )
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

/// `GET /o/oauth2/v2/auth`: the consent page, for a request that names
/// this client, a code response, an `S256` challenge and a redirect URI.
/// "Allow" returns to the redirect URI with a code (and a refresh token at
/// the exchange, as `prompt=consent` gives); "Cancel" with `access_denied`.
pub(super) async fn consent(State(fake): State<Fake>, RawQuery(query): RawQuery) -> Response {
    let params = form(query.as_deref(), &[]);
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let redirect_uri = field("redirect_uri");
    let problem = if field("client_id") != CLIENT_ID {
        Some("The OAuth client was not found.")
    } else if field("response_type") != "code" || field("code_challenge_method") != "S256" {
        Some("Required parameter is missing or invalid: response_type or code_challenge_method.")
    } else if !redirect_uri.starts_with("http") || field("code_challenge").is_empty() {
        Some("Required parameter is missing: redirect_uri or code_challenge.")
    } else {
        None
    };
    if let Some(problem) = problem {
        let page = format!(
            "<!doctype html><title>Error 400</title><h1>Access blocked: authorization error</h1><p>{}</p>",
            escape(problem)
        );
        return (StatusCode::BAD_REQUEST, axum::response::Html(page)).into_response();
    }
    let code = fake.grants.lock().unwrap().authorize(
        field("code_challenge"),
        redirect_uri,
        true,
        CODE_LIFETIME,
    );
    let back = |pairs: &[(&str, &str)]| {
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        format!(
            "{redirect_uri}{sep}{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let state = field("state");
    let allow = back(&[("state", state), ("code", &code), ("scope", SCOPES)]);
    let cancel = back(&[("state", state), ("error", "access_denied")]);
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in - Google Accounts</title></head>\
         <body><h1>The app wants to access your Google Account</h1><p>{EMAIL}</p>\
         <p>Read, compose and send email from your Gmail account.</p>\
         <p><a href=\"{}\">Cancel</a> <a href=\"{}\">Allow</a></p></body></html>",
        escape(&cancel),
        escape(&allow)
    );
    axum::response::Html(page).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `POST /token`.
pub(super) async fn token(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let form = form(query.as_deref(), &body);
    answer(fake.grants.lock().unwrap().grant(&form))
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
        form.insert("grant_type".into(), "password".into());
        assert_eq!(
            error_of(grants.grant(&form)),
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

    /// RFC 7636's example verifier and its `S256` challenge.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT_URI: &str = "http://127.0.0.1:8080/oauth/google/callback";

    fn exchange_form(code: &str, verifier: &str, redirect_uri: &str) -> HashMap<String, String> {
        [
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "authorization_code"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn description_of(result: Result<Value, (StatusCode, Value)>) -> (u16, String, String) {
        let (status, body) = result.unwrap_err();
        let field = |name: &str| body[name].as_str().unwrap().to_string();
        (status.as_u16(), field("error"), field("error_description"))
    }

    #[test]
    fn s256_matches_rfc_7636() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
    }

    #[test]
    fn authorization_code_checks_pkce_and_is_single_use() {
        let mut grants = Grants::default();
        let code = grants.authorize(CHALLENGE, REDIRECT_URI, true, CODE_LIFETIME);
        assert!(code.starts_with("4/0A"));

        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
        assert_eq!(
            description_of(grants.grant(&exchange_form(&code, wrong, REDIRECT_URI))),
            (400, "invalid_grant".into(), "Invalid code verifier.".into())
        );
        assert_eq!(
            description_of(grants.grant(&exchange_form(&code, CHALLENGE, REDIRECT_URI))),
            (400, "invalid_grant".into(), "Invalid code verifier.".into()),
            "the challenge is not its own verifier"
        );
        let mut form = exchange_form(&code, VERIFIER, REDIRECT_URI);
        form.remove("code_verifier");
        assert_eq!(
            description_of(grants.grant(&form)),
            (400, "invalid_grant".into(), "Missing code verifier.".into())
        );
        let elsewhere = "http://127.0.0.1:8080/oauth/google/callback/";
        assert_eq!(
            description_of(grants.grant(&exchange_form(&code, VERIFIER, elsewhere))),
            (400, "redirect_uri_mismatch".into(), "Bad Request".into())
        );
        let mut form = exchange_form(&code, VERIFIER, REDIRECT_URI);
        form.insert("client_secret".into(), "wrong".into());
        assert_eq!(
            error_of(grants.grant(&form)),
            (401, "invalid_client".into())
        );
        assert_eq!(grants.exchanges, 0, "failed attempts leave the code usable");

        let token = grants
            .grant(&exchange_form(&code, VERIFIER, REDIRECT_URI))
            .unwrap();
        assert_eq!(token["refresh_token"], REFRESH_TOKEN);
        assert_eq!(
            (&token["expires_in"], &token["scope"], &token["token_type"]),
            (&json!(3599), &json!(SCOPES), &json!("Bearer"))
        );
        assert!(grants.is_valid(token["access_token"].as_str().unwrap()));
        assert_eq!(token["id_token"].as_str().unwrap().split('.').count(), 3);
        assert_eq!(grants.exchanges, 1);

        assert_eq!(
            description_of(grants.grant(&exchange_form(&code, VERIFIER, REDIRECT_URI))),
            (400, "invalid_grant".into(), "Bad Request".into()),
            "reused"
        );
        assert_eq!(
            description_of(grants.grant(&exchange_form("4/0Anope", VERIFIER, REDIRECT_URI))),
            (400, "invalid_grant".into(), "Malformed auth code.".into())
        );
        let stale = grants.authorize(CHALLENGE, REDIRECT_URI, true, Duration::ZERO);
        assert_eq!(
            description_of(grants.grant(&exchange_form(&stale, VERIFIER, REDIRECT_URI))),
            (400, "invalid_grant".into(), "Bad Request".into()),
            "expired"
        );
        assert_eq!(grants.exchanges, 1);
    }

    #[test]
    fn consenting_again_revives_a_dead_grant_only_with_a_refresh_token() {
        let mut grants = Grants::default();
        grants.kill();
        let code = grants.authorize(CHALLENGE, REDIRECT_URI, false, CODE_LIFETIME);
        let token = grants
            .grant(&exchange_form(&code, VERIFIER, REDIRECT_URI))
            .unwrap();
        assert!(token.get("refresh_token").is_none());
        assert!(grants.is_valid(token["access_token"].as_str().unwrap()));
        assert_eq!(
            error_of(grants.refresh(&refresh_form())),
            (400, "invalid_grant".into())
        );
        let code = grants.authorize(CHALLENGE, REDIRECT_URI, true, CODE_LIFETIME);
        assert_ne!(
            grants
                .grant(&exchange_form(&code, VERIFIER, REDIRECT_URI))
                .unwrap()["access_token"],
            token["access_token"]
        );
        assert!(grants.refresh(&refresh_form()).is_ok());
        assert_eq!((grants.exchanges, grants.refreshes), (2, 1));
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
