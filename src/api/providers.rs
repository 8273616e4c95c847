//! `GET /v1/integrations/{slack,gmail,teller,telegram}/config`: which
//! connect flows this server is configured for, so that the Settings page
//! offers only what can work. Never a secret: whether one is set, at most.

use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use super::auth::Caller;

/// Whether an OAuth connect flow (Slack, Gmail) can work on this server.
#[derive(Serialize, JsonSchema)]
pub struct OAuthProvider {
    /// Its client and `PUBLIC_BASE_URL` (where the callback lands) are set.
    pub enabled: bool,
}

/// What the page needs to open Teller Connect.
#[derive(Serialize, JsonSchema)]
pub struct TellerProvider {
    /// `TELLER_APPLICATION_ID` is set and the Teller client could be built.
    pub enabled: bool,
    /// The platform's Teller application (public: Teller Connect shows it).
    pub application_id: Option<String>,
    /// `sandbox`, `development` or `production`.
    pub environment: String,
    /// Where Teller Connect's script is loaded from (`TELLER_CONNECT_URL`).
    pub connect_url: String,
}

/// How a Telegram bot can be connected here.
#[derive(Serialize, JsonSchema)]
pub struct TelegramProvider {
    /// A BotFather token can be connected (`PUBLIC_BASE_URL` is set, where
    /// Telegram delivers the bot's updates).
    pub enabled: bool,
    /// The platform's own bot can be paired (`PLATFORM_TELEGRAM_BOT_TOKEN`).
    pub platform_bot: bool,
}

pub async fn slack(State(state): State<AppState>, _caller: Caller) -> Json<OAuthProvider> {
    Json(OAuthProvider {
        enabled: state.connect.slack_enabled(),
    })
}

pub async fn gmail(State(state): State<AppState>, _caller: Caller) -> Json<OAuthProvider> {
    Json(OAuthProvider {
        enabled: state.connect.gmail_enabled(),
    })
}

pub async fn teller(State(state): State<AppState>, _caller: Caller) -> Json<TellerProvider> {
    let (application_id, environment, connect_url) = state.connect.teller_connect();
    Json(TellerProvider {
        enabled: application_id.is_some(),
        application_id: application_id.map(str::to_string),
        environment: environment.to_string(),
        connect_url: connect_url.to_string(),
    })
}

pub async fn telegram(State(state): State<AppState>, _caller: Caller) -> Json<TelegramProvider> {
    let callbacks = state.connect.public_base_url().is_ok();
    Json(TelegramProvider {
        enabled: callbacks,
        platform_bot: callbacks && state.telegram.has_platform_bot(),
    })
}
