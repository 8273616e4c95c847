//! Slack through OAuth: the consent page (`oauth/v2/authorize`), then
//! `oauth.v2.access` for the app's token, checked with `auth.test`.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use model::IntegrationType;
use model::config::FieldValue;
use model::ids::random_secret;
use providers::slack::SlackError;
use store::Purpose;

use super::{
    Callback, KEY_TTL, Refused, authorize_answer, connect, landing, not_configured, spend,
    with_query,
};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;

/// What the Slack app asks for: DMs to the user who connects it, and the
/// events of their messages to it (`message.im`, `app_mention`), as
/// `docs/slack-app-manifest.json` declares them.
const SCOPES: &str = "chat:write,im:write,users:read,im:history,app_mentions:read";

/// `GET /v1/integrations/slack/authorize`: to Slack's consent page.
pub async fn authorize(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = &state.connect;
    let client_id = c
        .slack_client_id
        .as_deref()
        .ok_or_else(|| not_configured("Slack (SLACK_CLIENT_ID)"))?;
    let redirect_uri = c.redirect_uri("slack")?;
    let binding = random_secret("", 32);
    let key = state
        .store
        .issue_oauth_state(
            &*state.keyring,
            &caller.0,
            Purpose::SlackState,
            &binding,
            None,
            KEY_TTL,
        )
        .await?;
    let url = with_query(
        &c.slack_authorize_url,
        &[
            ("client_id", client_id),
            ("scope", SCOPES),
            ("redirect_uri", &redirect_uri),
            ("state", &key),
        ],
    );
    Ok(authorize_answer(c, "slack", &binding, &headers, url))
}

/// `GET /api/slack/callback`.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let outcome = slack_connect(&state, &callback, &headers).await;
    landing(&state.connect, "slack", outcome)
}

/// Spends the callback's state, exchanges its code for the app's token,
/// checks the token and stores the grant.
async fn slack_connect(
    state: &AppState,
    callback: &Callback,
    headers: &HeaderMap,
) -> Result<(), Refused> {
    let (spent, code) = spend(state, callback, headers, Purpose::SlackState, "Slack").await?;
    let c = &state.connect;
    let (Some(client_id), Some(client_secret)) = (&c.slack_client_id, &c.slack_client_secret)
    else {
        return Err(Refused::new(
            "server_error",
            "Slack is not configured on this server.",
        ));
    };
    let redirect_uri = c
        .redirect_uri("slack")
        .map_err(|e| Refused::new("server_error", e.message))?;
    // Slack's refusal, with its code; anything else is Slack not answering.
    let refused = |e: SlackError, what: &str| match e {
        SlackError::Refused { code } => Refused::new(
            "provider_error",
            format!("Slack {what} ({}).", slack_error(code.as_deref())),
        ),
        _ => Refused::unavailable("Slack could not be reached; try again."),
    };
    let access = c
        .slack
        .oauth_access(client_id, client_secret, &code, &redirect_uri)
        .await
        .map_err(|e| refused(e, "refused the connection"))?;
    let token = &access.access_token;
    let checked = c
        .slack
        .auth_test(token)
        .await
        .map_err(|e| refused(e, "did not accept the new token"))?;
    let team = access.team.as_ref();
    let fields = [
        ("bot_token", Some(token.as_str())),
        (
            "team_id",
            team.and_then(|t| t.id.as_deref())
                .or(checked["team_id"].as_str()),
        ),
        (
            "team_name",
            team.and_then(|t| t.name.as_deref())
                .or(checked["team"].as_str()),
        ),
        ("bot_user_id", access.bot_user_id.as_deref()),
        (
            "authed_user_id",
            access.authed_user.as_ref().and_then(|u| u.id.as_deref()),
        ),
    ]
    .map(|(name, value)| (name, value.map(FieldValue::Text)));
    connect(state, &spent.user_id, IntegrationType::Slack, &fields).await?;
    Ok(())
}

/// A provider's error code, bounded (or that none was given).
fn slack_error(code: Option<&str>) -> String {
    code.unwrap_or("no reason given").chars().take(64).collect()
}
