//! `integrations serve`: the REST API over the store, for the Settings page
//! and the platform, and the page itself (`/settings/integrations`). Every
//! route but `/healthz`, `/v1/openapi.json`, the page's static files and the
//! provider callbacks acts for the user of the bearer token or of the page's
//! session, and sees only that user's rows.

mod auth;
mod body;
mod connect;
mod dashboard;
mod error;
mod inbound;
mod integrations;
mod notifications;
mod openapi;
mod page;
mod profiles;
mod providers;
mod rules;
mod secrets;
mod sessions;
mod slack;
pub(crate) mod telegram;
mod teller_webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use mcp_notify::Notifier;
use sidecar::connections;
use sidecar::http::{self, HttpConfig};
use sidecar::{Backing, IdentitySource};
use store::SidecarStore;
use store::{IdentityClaims, Store};
use vault::Keyring;

use body::MAX_BODY;
use connect::ConnectConfig;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// Test notifications go through the platform's notifier.
    pub notifier: Arc<Notifier>,
    pub connect: Arc<ConnectConfig>,
    pub telegram: Arc<telegram::TelegramConfig>,
    pub slack: Arc<slack::SlackConfig>,
    pub inbound: Arc<inbound::InboundConfig>,
    pub teller_webhook_secret: Option<Arc<zeroize::Zeroizing<String>>>,
    /// Held from a test's rate-limit count to its audit row, so that
    /// parallel tests cannot all pass the count first.
    pub test_turn: Arc<tokio::sync::Mutex<()>>,
    /// Where agents reach the MCP endpoints (`MCP_PUBLIC_URL`, else this
    /// server's own address): the base of a minted plan's URLs.
    pub mcp_url: Arc<str>,
    /// How long a capability token minted here may live, and how many an
    /// API token may mint a minute.
    pub mint_limits: sessions::MintLimits,
}

impl AppState {
    /// The API over `store`, configured from the environment.
    pub fn from_env(store: Store, db_url: &str) -> anyhow::Result<Self> {
        Self::with_keyring(store, db_url, Keyring::from_env()?)
    }

    /// The API over `store` (at `db_url`) with `keyring`, the rest from the
    /// environment (each provider's defaults where it says nothing): what
    /// a test drives in-process through [`router`].
    pub fn with_keyring(store: Store, db_url: &str, keyring: Keyring) -> anyhow::Result<Self> {
        let keyring = Arc::new(keyring);
        Ok(Self {
            store,
            notifier: Arc::new(crate::ops::probe::notifier(db_url, Arc::clone(&keyring))?),
            keyring,
            connect: Arc::new(ConnectConfig::from_env()?),
            telegram: Arc::new(telegram::TelegramConfig::from_env()?),
            slack: Arc::new(slack::SlackConfig::from_env()),
            inbound: Arc::new(inbound::InboundConfig::from_env()?),
            teller_webhook_secret: teller_webhook::secret_from_env().map(Arc::new),
            test_turn: Arc::default(),
            mcp_url: std::env::var("MCP_PUBLIC_URL").unwrap_or_default().into(),
            mint_limits: sessions::MintLimits::from_env()?,
        })
    }
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/integrations",
            get(integrations::list).post(integrations::create),
        )
        .route(
            "/v1/integrations/{id}",
            axum::routing::patch(integrations::patch).delete(integrations::delete),
        )
        .route("/v1/integrations/{id}/test", post(integrations::test))
        .route(
            "/v1/integrations/slack/authorize",
            get(connect::slack::authorize),
        )
        .route(
            "/v1/integrations/gmail/authorize",
            get(connect::gmail::authorize),
        )
        .route("/v1/integrations/slack/config", get(providers::slack))
        .route("/v1/integrations/gmail/config", get(providers::gmail))
        .route("/v1/integrations/teller/config", get(providers::teller))
        .route("/v1/integrations/telegram/config", get(providers::telegram))
        .route(
            "/v1/integrations/teller/nonce",
            post(connect::teller::nonce),
        )
        .route(
            "/v1/integrations/teller/callback",
            post(connect::teller::callback),
        )
        .route("/api/slack/callback", get(connect::slack::callback))
        .route("/api/gmail/callback", get(connect::gmail::callback))
        .route("/api/teller/webhook", post(teller_webhook::receive))
        .route("/v1/integrations/telegram/connect", post(telegram::connect))
        .route(
            "/v1/integrations/telegram/connect-platform",
            post(telegram::connect_platform),
        )
        .route(
            "/v1/integrations/telegram/regenerate-link-code",
            post(telegram::regenerate_link_code),
        )
        .route(
            "/api/telegram/webhook/{bot_user_id}",
            post(telegram::webhook),
        )
        .route("/api/slack/events", post(slack::events))
        .route("/v1/inbound", get(inbound::inbound))
        .route("/v1/profiles", get(profiles::list))
        .route(
            "/v1/profiles/{id}",
            axum::routing::put(profiles::put).delete(profiles::delete),
        )
        .route("/v1/secrets", get(secrets::list).post(secrets::create))
        .route(
            "/v1/secrets/{id}",
            axum::routing::patch(secrets::patch).delete(secrets::delete),
        )
        .route(
            "/v1/notifications",
            post(notifications::create).get(notifications::list),
        )
        .route(
            "/v1/sessions",
            post(sessions::create)
                .get(sessions::list)
                .delete(sessions::end_all),
        )
        .route("/v1/sessions/{id}", axum::routing::delete(sessions::revoke))
        .route("/v1/dashboard/sign-in", post(dashboard::sign_in))
        .route("/v1/dashboard/session", get(dashboard::session))
        .route("/v1/dashboard/sign-out", post(dashboard::sign_out))
        .route("/v1/openapi.json", get(openapi::document))
        .merge(page::routes())
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(request_log))
        .with_state(state)
}

/// The three sidecars' MCP endpoints (`/mcp/teller`, `/mcp/gmail`,
/// `/mcp/notify`) over `backing`, as `mcp-<server> serve` serves each.
fn mcp_routes(backing: &Backing, config: &HttpConfig) -> Router {
    Router::new()
        .merge(http::mount(
            "teller",
            mcp_teller::TellerServer::new(IdentitySource::Token, backing.named("mcp-teller")),
            backing.clone(),
            config,
        ))
        .merge(http::mount(
            "gmail",
            mcp_gmail::GmailServer::new(IdentitySource::Token, backing.named("mcp-gmail")),
            backing.clone(),
            config,
        ))
        .merge(http::mount(
            "notify",
            mcp_notify::NotifyServer::new(IdentitySource::Token, backing.named("mcp-notify")),
            backing.clone(),
            config,
        ))
}

/// Serves the API and the sidecars' MCP endpoints over the store at
/// `db_url` on `listen` until SIGTERM or Ctrl-C; requests in flight finish
/// first.
pub async fn serve(mut state: AppState, db_url: &str, listen: SocketAddr) -> anyhow::Result<()> {
    match state.store.rehash_chats(&*state.keyring).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            "Telegram chats re-hashed under the keyring's first key"
        ),
        Err(e) => tracing::warn!(error = %e, "Telegram chats were not re-hashed"),
    }
    match state.store.claim_identities(&*state.keyring).await {
        Ok(claims) if claims == IdentityClaims::default() => {}
        Ok(claims) => tracing::info!(
            claimed = claims.claimed,
            refused = claims.refused,
            "rows from before identities took theirs; those whose identity another row names were set needs_reauth"
        ),
        Err(e) => tracing::warn!(error = %e, "rows from before identities did not take theirs"),
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "integrations API listening");
    if state.mcp_url.is_empty() {
        state.mcp_url = format!("http://{bound}").into();
    }
    // A minted plan's token travels to this URL: https, or http on loopback.
    state.mcp_url = resolver::check_base_url(&state.mcp_url)
        .map_err(|why| {
            anyhow::anyhow!(
                "{why}; set MCP_PUBLIC_URL to the https:// address agents reach this server at"
            )
        })?
        .into();
    let config = HttpConfig::from_env(bound)?;
    let limits = connections::Limits::from_env()?;
    let events = std::sync::Arc::new(crate::events::Deliverer::new(
        state.store.clone(),
        crate::events::Receiver::from_env()?,
    ));
    let delivering = tokio::spawn({
        let events = events.clone();
        async move { events.run().await }
    });
    // The MCP endpoints and the keeper check grants over the API's own pool.
    let sidecar = SidecarStore::over(&state.store, db_url)?;
    let keeper = crate::health::Keeper::from_env(
        state.store.clone(),
        sidecar.clone(),
        state.keyring.clone(),
    )?;
    let keeping = tokio::spawn(async move {
        if let Some(keeper) = keeper {
            keeper.run().await;
        }
    });
    let backing = Backing::over("integrations", sidecar);
    let app = mcp_routes(&backing, &config).merge(router(state));
    // The bound address on stdout, for whoever started us with port 0.
    println!("listening on http://{bound}");
    let served = connections::serve_until_signal(listener, app, limits).await;
    delivering.abort();
    keeping.abort();
    events.stop().await;
    served?;
    tracing::info!("integrations API stopped");
    Ok(())
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such route; see /v1/openapi.json",
    )
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not take that method; see /v1/openapi.json",
    )
}

/// Gives each request an id (`x-request-id`, kept when the caller sent a
/// sane one) and logs one line per request: never a body, a query or a header.
async fn request_log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(
            || format!("req_{}", model::ids::random_token(16)),
            str::to_string,
        );
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert("x-request-id", value);
    }
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    let status = response.status().as_u16();
    tracing::info!(
        target: "integrations::api",
        request_id = %id,
        method = %method,
        path = %path,
        status,
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
