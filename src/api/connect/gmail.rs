//! Gmail through Google's OAuth: the consent page with PKCE, then the
//! code exchanged for a lasting grant, and the mailbox's address read with
//! it.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use model::IntegrationType;
use model::config::FieldValue;
use model::ids::random_secret;
use providers::google as oauth;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::Purpose;

use super::{
    Callback, KEY_TTL, Refused, authorize_answer, connect, landing, not_configured, spend,
    with_query,
};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;

/// What the Gmail connection asks for: read, send and drafts.
const SCOPES: &str = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.compose";

/// `GET /v1/integrations/gmail/authorize`: to Google's consent page, with
/// PKCE, offline access and a forced consent (so a refresh token comes back).
pub async fn authorize(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = &state.connect;
    let client_id = c
        .google
        .client_id
        .as_deref()
        .ok_or_else(|| not_configured("Gmail (GMAIL_CLIENT_ID)"))?;
    let redirect_uri = c.redirect_uri("gmail")?;
    let verifier = random_secret("", 64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let binding = random_secret("", 32);
    let key = state
        .store
        .issue_oauth_state(
            &*state.keyring,
            &caller.0,
            Purpose::GmailState,
            &binding,
            Some(&verifier),
            KEY_TTL,
        )
        .await?;
    let url = with_query(
        &c.google.authorize_url,
        &[
            ("client_id", client_id),
            ("redirect_uri", &redirect_uri),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("state", &key),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
    );
    Ok(authorize_answer(c, "gmail", &binding, &headers, url))
}

/// `GET /api/gmail/callback`.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let outcome = gmail_connect(&state, &callback, &headers).await;
    landing(&state.connect, "gmail", outcome)
}

async fn gmail_connect(
    state: &AppState,
    callback: &Callback,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    let (spent, code) = spend(state, callback, headers, Purpose::GmailState, "Google").await?;
    let verifier = spent
        .verifier
        .ok_or_else(|| Refused::new("invalid_state", "This link was not issued for Gmail."))?;
    let redirect_uri = state
        .connect
        .redirect_uri("gmail")
        .map_err(|e| Refused::new("server_error", e.message))?;
    let consent = oauth::exchange_code(
        &state.connect.http,
        &state.connect.google,
        &code,
        &verifier,
        &redirect_uri,
    )
    .await
    .map_err(|e| {
        let message = format!("Google did not complete the connection: {e}.");
        if e.is_unavailable() {
            Refused::unavailable(message)
        } else {
            Refused::new("provider_error", message)
        }
    })?;
    let Some(refresh_token) = consent.refresh_token else {
        return Err(Refused::new(
            "no_refresh_token",
            "Google did not hand out a lasting grant, because this app already had access: remove the app's access at https://myaccount.google.com/permissions, then connect Gmail again.",
        ));
    };
    let token = std::sync::Arc::new(consent.access_token);
    let profile = state.connect.gmail.profile(&token).await.map_err(|e| {
        let message = format!("Gmail did not answer for the new grant: {e}.");
        if e.is_unavailable() {
            Refused::unavailable(message)
        } else {
            Refused::new("provider_error", message)
        }
    })?;
    let scopes: Vec<Value> = consent.scope.split_whitespace().map(Value::from).collect();
    let fields = [
        (
            "email",
            profile.email_address.as_deref().map(FieldValue::Text),
        ),
        ("refresh_token", Some(FieldValue::Text(&refresh_token))),
        ("scopes", Some(FieldValue::Json(scopes.into()))),
        ("access_token", Some(FieldValue::Text(&token))),
        (
            "expires_at",
            Some((model::clock::unix_now() + consent.expires_in).into()),
        ),
    ];
    connect(state, &spent.user_id, IntegrationType::Gmail, &fields).await?;
    Ok(())
}
