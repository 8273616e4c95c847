//! Telegram's server side: connecting a bot (the user's own or the
//! platform's shared one), the webhook that receives its updates, pairing a
//! chat with `/start <code>` or `/link <code>`, routing inbound messages to a
//! profile into the outbox, and claiming notification threads.

use model::sealing::Sealer;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use model::config::{DecryptedConfig, FieldValue};
use model::ids::random_token;
use model::{Integration, IntegrationType, Scope};
use providers::telegram::{self, Event, Tap, TelegramClient, TelegramError, Update, command_of};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{NewInbound, NewIntegration, Origin, Purpose};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Caller;
use super::body::Payload;
use super::error::ApiError;
use super::inbound;
use super::rules;

/// Why a Bot API call failed, as the API tells it; never holds the token.
#[derive(Debug)]
enum BotApiError {
    /// Telegram could not be reached, or answered as a service that is
    /// down (5xx, 429, an unreadable answer): a sentence saying so.
    Unavailable(String),
    /// Telegram answered and refused: its description.
    Refused(String),
}

impl From<TelegramError> for BotApiError {
    fn from(e: TelegramError) -> Self {
        match e {
            TelegramError::NoAnswer(e) => {
                Self::Unavailable(format!("Telegram could not be reached ({})", e.detail()))
            }
            TelegramError::Unreadable { status } => Self::Unavailable(format!(
                "Telegram sent a response that could not be read (HTTP {})",
                status.as_u16()
            )),
            TelegramError::Refused {
                status,
                description,
                ..
            } => {
                let description: String = description
                    .as_deref()
                    .unwrap_or("no reason given")
                    .chars()
                    .take(200)
                    .collect();
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Self::Unavailable(format!("Telegram is unavailable ({description})"))
                } else {
                    Self::Refused(description)
                }
            }
        }
    }
}

impl std::fmt::Display for BotApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

/// How long a link code may wait for its `/start`.
const LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// The Telegram settings of the server.
pub struct TelegramConfig {
    platform_token: Option<Zeroizing<String>>,
    client: TelegramClient,
}

impl TelegramConfig {
    /// From `PLATFORM_TELEGRAM_BOT_TOKEN` and the client's
    /// ([`TelegramClient::from_env`]).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            platform_token: var("PLATFORM_TELEGRAM_BOT_TOKEN").map(Zeroizing::new),
            client: TelegramClient::from_env(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()?,
            ),
        })
    }

    /// Calls the Bot API method `method` as `token`; Telegram's description
    /// of a failure (never the token, which is in the URL).
    async fn call(&self, token: &str, method: &str, body: Value) -> Result<Value, BotApiError> {
        Ok(self.client.call(token, method, &body).await?)
    }

    /// The platform's bot (`PLATFORM_TELEGRAM_BOT_TOKEN`): its token, id and
    /// username as Telegram's `getMe` describes it; `None` when unset.
    pub async fn platform_bot(&self) -> Option<Result<(Zeroizing<String>, i64, String), String>> {
        let token = self.platform_token.clone()?;
        Some(match self.client.get_me(&token).await {
            Ok(Some(me)) => Ok((token, me.id, me.username)),
            Ok(None) => Err("Telegram did not describe the bot".to_string()),
            Err(why) => Err(BotApiError::from(why).to_string()),
        })
    }

    /// The id of the platform's bot: the part of its token before the colon.
    fn platform_bot_id(&self) -> Option<String> {
        let token = self.platform_token.as_ref()?;
        telegram::bot_id_of(token).map(str::to_string)
    }

    /// Whether the platform's own bot is configured.
    pub fn has_platform_bot(&self) -> bool {
        self.platform_token.is_some()
    }

    /// The webhook secret of the platform's bot: derived from its token, so
    /// that every pairing agrees on it.
    fn platform_secret(&self) -> Option<Zeroizing<String>> {
        let token = self.platform_token.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).ok()?;
        mac.update(b"telegram webhook secret");
        Some(Zeroizing::new(
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ))
    }
}

/// `POST /v1/integrations/telegram/connect`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBot {
    /// From @BotFather: `<bot id>:<secret>`.
    #[schemars(schema_with = "rules::bot_token")]
    pub bot_token: Zeroizing<String>,
    /// The profile the bot speaks for.
    #[serde(default)]
    #[schemars(schema_with = "rules::ident_or_null")]
    pub bound_profile_id: Option<String>,
}

/// `POST /v1/integrations/telegram/connect-platform`.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectPlatform {
    #[serde(default)]
    #[schemars(schema_with = "rules::ident_or_null")]
    pub bound_profile_id: Option<String>,
}

/// A connected bot, waiting for its owner's `/start`.
#[derive(Serialize, JsonSchema)]
pub struct Connected {
    pub id: String,
    pub bot_username: String,
    /// Open it in Telegram to pair the chat: single-use, 15 minutes.
    pub link_url: String,
}

/// `POST /v1/integrations/telegram/regenerate-link-code`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    pub id: String,
}

/// `getMe`: the bot's id and username.
async fn who_is(state: &AppState, token: &str) -> Result<(i64, String), ApiError> {
    let me = state
        .telegram
        .client
        .get_me(token)
        .await
        .map_err(|e| match BotApiError::from(e) {
            BotApiError::Refused(why) => {
                ApiError::invalid(format!("Telegram refused the bot token: {why}"))
            }
            BotApiError::Unavailable(why) => {
                ApiError::provider_unavailable(format!("{why}; try again later"))
            }
        })?;
    match me {
        Some(me) => Ok((me.id, me.username)),
        None => Err(ApiError::invalid("Telegram did not describe the bot")),
    }
}

fn webhook_url(state: &AppState, bot_id: i64) -> Result<String, ApiError> {
    Ok(format!(
        "{}/api/telegram/webhook/{bot_id}",
        state.connect.public_base_url()?
    ))
}

/// Issues a link code for `integration` and its `t.me` link.
async fn link_url(
    state: &AppState,
    integration: &Integration,
    username: &str,
) -> Result<String, ApiError> {
    state.store.drop_link_codes(&integration.id).await?;
    let code = state
        .store
        .issue_connect_key(
            &integration.user_id,
            Purpose::TelegramLink,
            Some(&integration.id),
            LINK_TTL,
        )
        .await?;
    if !telegram::valid_username(username) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "DELIVERY_FAILED",
            "Telegram described the bot with a username that is not one",
        ));
    }
    Ok(format!("https://t.me/{username}?start={}", code.as_str()))
}

/// Stores a bot row, then points its webhook here; a webhook Telegram
/// refuses removes the row again.
async fn connect_bot(
    state: &AppState,
    caller: &Caller,
    token: &str,
    bound: Option<String>,
    secret: Zeroizing<String>,
    platform: bool,
) -> Result<(StatusCode, Json<Connected>), ApiError> {
    let (bot_id, username) = who_is(state, token).await?;
    let url = webhook_url(state, bot_id)?;
    let owned = if platform {
        ("owner", FieldValue::Text("platform"))
    } else {
        ("webhook_secret", FieldValue::Text(&secret))
    };
    let fields = [
        ("bot_token", FieldValue::Text(token)),
        ("bot_user_id", bot_id.into()),
        ("bot_username", FieldValue::Text(&username)),
        owned,
    ];
    let mut valid = DecryptedConfig::from_fields(IntegrationType::Telegram, &fields)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if platform {
        // Every user pairs the same bot: one row each.
        valid.external_id = Some(format!("{bot_id}:{}", caller.0));
    }
    let new = NewIntegration {
        user_id: caller.0.clone(),
        kind: IntegrationType::Telegram,
        label: None,
        is_default: false,
        scope: Scope::All,
        profile_ids: Vec::new(),
        bound_profile_id: bound,
    };
    let row = state
        .store
        .add_integration(&*state.keyring, &new, &valid)
        .await?;
    let set = state
        .telegram
        .client
        .set_webhook(token, &url, &secret, &["message", "callback_query"])
        .await;
    if let Err(why) = set.map_err(BotApiError::from) {
        state.store.delete_integration(&row.id).await?;
        return Err(match why {
            BotApiError::Refused(why) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DELIVERY_FAILED",
                format!("Telegram refused the webhook: {why}"),
            ),
            BotApiError::Unavailable(why) => {
                ApiError::provider_unavailable(format!("{why}; try again later"))
            }
        });
    }
    let link_url = link_url(state, &row, &username).await?;
    Ok((
        StatusCode::CREATED,
        Json(Connected {
            id: row.id,
            bot_username: username,
            link_url,
        }),
    ))
}

pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<ConnectBot>,
) -> Result<(StatusCode, Json<Connected>), ApiError> {
    let token = body.bot_token.trim();
    if !telegram::valid_token_shape(token) {
        return Err(ApiError::invalid(
            "bot_token is not shaped like a token from @BotFather (<digits>:<secret>)",
        ));
    }
    if let Some(id) = telegram::bot_id_of(token)
        && state.store.telegram_bot_in_use(id).await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "this bot is already connected",
        ));
    }
    let secret = Zeroizing::new(random_token(32));
    connect_bot(&state, &caller, token, body.bound_profile_id, secret, false).await
}

pub async fn connect_platform(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<ConnectPlatform>,
) -> Result<(StatusCode, Json<Connected>), ApiError> {
    let (Some(token), Some(secret)) = (
        state.telegram.platform_token.clone(),
        state.telegram.platform_secret(),
    ) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_CONFIGURED",
            "the platform's Telegram bot is not configured on this server",
        ));
    };
    connect_bot(&state, &caller, &token, body.bound_profile_id, secret, true).await
}

pub async fn regenerate_link_code(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<Regenerate>,
) -> Result<Json<Connected>, ApiError> {
    let row = state
        .store
        .integration(&body.id)
        .await?
        .filter(|i| i.user_id == caller.0 && i.kind == IntegrationType::Telegram)
        .ok_or_else(|| ApiError::not_found("telegram integration", &body.id))?;
    let username = field(&state, &row, "bot_username").map_or_else(String::new, |u| u.to_string());
    let link_url = link_url(&state, &row, &username).await?;
    Ok(Json(Connected {
        id: row.id,
        bot_username: username,
        link_url,
    }))
}

/// A clear or secret text field of a Telegram row's config.
fn field(state: &AppState, row: &Integration, name: &str) -> Option<Zeroizing<String>> {
    let config = state.keyring.open_config(row).ok()?;
    config.get(IntegrationType::Telegram, name).ok().flatten()
}

// ---- the webhook -----------------------------------------------------------

/// The bot an update came to, known by the secret token Telegram sends with
/// each update (`X-Telegram-Bot-Api-Secret-Token`): checked before the
/// update's body is read, so that a stranger without it is refused at once.
pub struct Bot {
    /// Its id, from the webhook's path.
    id: String,
    /// A user's own bot's row; `None` for the platform's shared bot.
    own: Option<Integration>,
}

impl FromRequestParts<AppState> for Bot {
    type Rejection = ApiError;

    /// The secret is checked against one row (none for the platform's bot).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let refused = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "the secret token does not match",
            )
        };
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| refused())?;
        if !telegram::valid_bot_id(&id) {
            return Err(refused());
        }
        let presented = parts
            .headers
            .get("x-telegram-bot-api-secret-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let same = |expected: &str| {
            Sha256::digest(expected.as_bytes()) == Sha256::digest(presented.as_bytes())
        };
        // The platform's bot is checked before any row is read.
        if state.telegram.platform_bot_id().as_deref() == Some(id.as_str()) {
            if !state.telegram.platform_secret().is_some_and(|e| same(&e)) {
                return Err(refused());
            }
            return Ok(Self { id, own: None });
        }
        let own = state.store.telegram_own_bot(&id).await?;
        let secret = own
            .as_ref()
            .and_then(|row| field(state, row, "webhook_secret"));
        if !secret.is_some_and(|e| same(&e)) {
            return Err(refused());
        }
        Ok(Self { id, own })
    }
}

/// `POST /api/telegram/webhook/{bot_user_id}`: Telegram's updates. An update
/// without the bot's secret token is 401 before its body is read; one with
/// it is always answered 200, whatever its handling did (Telegram would
/// redeliver it again and again); failures are logged. The work per update
/// is bounded whatever the number of users of a bot: the secret is checked
/// against one row ([`Bot`]), the chat's row is one indexed read, and the
/// forward to `INBOUND_FORWARD_URL` runs after the answer.
pub async fn webhook(State(state): State<AppState>, bot: Bot, body: Bytes) -> Json<Value> {
    let Some(update) = Update::parse(&body) else {
        tracing::warn!(bot = %bot.id, "a Telegram update was not JSON");
        return Json(json!({"ok": true}));
    };
    let owner = match update.chat {
        Some(chat) => {
            state
                .store
                .telegram_chat(&*state.keyring, &bot.id, chat)
                .await
        }
        None => Ok(None),
    };
    let handled = match &owner {
        Ok(owner) => handle(&state, &bot, owner.as_ref(), &update).await,
        Err(e) => Err(anyhow::anyhow!("the chat's row was not read: {e}")),
    };
    if let Err(e) = handled {
        tracing::warn!(bot = %bot.id, update = update.id.unwrap_or(0), error = %e, "a Telegram update was not handled");
        let row = owner.ok().flatten().or(bot.own);
        inbound::record_failure(&state, row.as_ref(), "telegram", &format!("{e:#}")).await;
    }
    Json(json!({"ok": true}))
}

/// Where an update was received: the bot, the update's id and its chat.
struct At<'a> {
    bot: &'a Bot,
    id: i64,
    chat: i64,
}

async fn handle(
    state: &AppState,
    bot: &Bot,
    owner: Option<&Integration>,
    update: &Update,
) -> anyhow::Result<()> {
    let (chat, text) = match &update.event {
        Event::Tap(query) => return tap(state, bot, owner, query).await,
        Event::Message { chat, text } => (*chat, text.as_str()),
        Event::Ignored => return Ok(()),
    };
    let token = bot_token(state, bot)?;
    let reply = |text: String| {
        let token = token.clone();
        async move {
            if let Err(why) = state
                .telegram
                .call(
                    &token,
                    "sendMessage",
                    json!({"chat_id": chat, "text": text}),
                )
                .await
            {
                tracing::warn!(error = %why, "a reply to Telegram was not sent");
            }
        }
    };
    let (command, argument) = command_of(text);
    if matches!(command.as_deref(), Some("start" | "link")) && !argument.is_empty() {
        reply(pair(state, bot, owner, chat, argument).await?).await;
        return Ok(());
    }
    // Only the owner's chat is heard.
    let Some(row) = owner else {
        return Ok(());
    };
    let at = At {
        bot,
        id: update.id.unwrap_or_default(),
        chat,
    };
    match command.as_deref() {
        Some(c @ ("help" | "start" | "agents")) => {
            // A redelivered command is answered once.
            let recorded = record(
                state,
                row,
                &at,
                text,
                if c == "agents" { c } else { "help" },
            )
            .await;
            if !matches!(recorded, Ok(false)) {
                reply(match c {
                    "agents" => agents(state, row).await?,
                    _ => "Write to me to talk to your agents. Start with @slug to pick one; /agents lists them; /new starts a new conversation; /end ends it.".into(),
                })
                .await;
            }
            recorded.map(|_| ())
        }
        Some(c @ ("new" | "end")) => record(state, row, &at, text, c).await.map(|_| ()),
        _ => match resolver::route(&state.store, &row.id, text).await {
            // A reply without a tap continues the newest open thread of the
            // profile it was routed to, which `route` found granted now.
            Ok(route) => write_inbound(state, row, &at, &route.profile_id, &route.text, None)
                .await
                .map(|_| ()),
            Err(e) => {
                reply(format!("This message was not delivered: {e}.")).await;
                Ok(())
            }
        },
    }
}

/// The token to answer as: the platform's own for its shared bot.
fn bot_token(state: &AppState, bot: &Bot) -> anyhow::Result<Zeroizing<String>> {
    let Some(row) = bot.own.as_ref() else {
        return state
            .telegram
            .platform_token
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the platform's bot has no token here"));
    };
    field(state, row, "bot_token").ok_or_else(|| anyhow::anyhow!("the bot's token does not open"))
}

/// `/start <code>` or `/link <code>`: claims the code once for this bot.
async fn pair(
    state: &AppState,
    bot: &Bot,
    owner: Option<&Integration>,
    chat: i64,
    code: &str,
) -> anyhow::Result<String> {
    if let Some(row) = owner {
        return Ok(format!("This chat is already linked to {}.", row.label));
    }
    let Some(row) = state.store.spend_link_code(code, &bot.id).await? else {
        return Ok("That link code is not valid: it is wrong, already used, or expired. Create a new link in Settings → Integrations.".into());
    };
    if field(state, &row, "owner_chat_id").is_some() {
        return Ok("This bot is already linked to another chat.".into());
    }
    if !state
        .store
        .link_telegram_chat(&*state.keyring, &row, chat)
        .await?
    {
        return Ok("The bot changed meanwhile; try the link again.".into());
    }
    Ok(format!("Linked! {} now talks to you here.", row.label))
}

/// The profiles granted the bot, for `/agents`.
async fn agents(state: &AppState, row: &Integration) -> anyhow::Result<String> {
    let profiles = state.store.profiles(&row.user_id).await?;
    let granted: Vec<String> = profiles
        .iter()
        .filter(|p| model::scope::is_granted(row, Some(p)))
        .map(|p| {
            let bound = if row.bound_profile_id.as_deref() == Some(p.id.as_str()) {
                " (default here)"
            } else {
                ""
            };
            format!("@{} {}{bound}", p.slug, p.name)
        })
        .collect();
    Ok(if granted.is_empty() {
        "No agent can use this bot yet: grant it to one in Settings → Integrations.".into()
    } else {
        format!("Your agents here:\n{}", granted.join("\n"))
    })
}

/// Records a command for the platform, routed like a message; `false` when
/// the update was already recorded.
async fn record(
    state: &AppState,
    row: &Integration,
    at: &At<'_>,
    text: &str,
    command: &str,
) -> anyhow::Result<bool> {
    let profile = match resolver::route(&state.store, &row.id, "").await {
        Ok(route) => route.profile_id,
        Err(e) => anyhow::bail!("the command was not recorded: {e}"),
    };
    write_inbound(state, row, at, &profile, text, Some(command)).await
}

/// Writes the update's outbox row (a message continues its profile's newest
/// open thread) and forwards it after the answer; `false` when the update
/// was already written (Telegram redelivered it).
async fn write_inbound(
    state: &AppState,
    row: &Integration,
    at: &At<'_>,
    profile_id: &str,
    text: &str,
    command: Option<&str>,
) -> anyhow::Result<bool> {
    let new = NewInbound {
        user_id: row.user_id.clone(),
        profile_id: profile_id.to_string(),
        integration_id: row.id.clone(),
        chat_id: at.chat.to_string(),
        text: text.to_string(),
        command: command.map(str::to_string),
        origin: Origin::Telegram {
            bot_id: at.bot.id.clone(),
            update_id: at.id,
            continue_thread: command.is_none(),
        },
    };
    inbound::write(state, &new).await
}

/// A tap on a notification's `📎 Reply here` or `💬 Keep my chat`. A claim
/// holds only while the thread's profile is still granted the bot.
async fn tap(
    state: &AppState,
    bot: &Bot,
    owner: Option<&Integration>,
    query: &Tap,
) -> anyhow::Result<()> {
    let (id, from, chat, message_id) = (&query.id, query.from, query.chat, query.message_id);
    let token = bot_token(state, bot)?;
    let answer = |text: &str| {
        let body = json!({"callback_query_id": id, "text": text});
        let token = token.clone();
        async move {
            if let Err(why) = state
                .telegram
                .call(&token, "answerCallbackQuery", body)
                .await
            {
                tracing::warn!(error = %why, "a callback answer was not sent");
            }
        }
    };
    let Some(row) = owner.filter(|_| from.is_some() && from == chat) else {
        answer("Only the owner of this chat can do that.").await;
        return Ok(());
    };
    let (action, notification) = query.action();
    match action {
        "claim" => match claim(state, row, notification).await? {
            Some(thread) => {
                let label = thread.label.unwrap_or_else(|| "your agent".into());
                let edit = json!({"chat_id": chat, "message_id": message_id, "text": format!("📎 Threaded: your replies here go to the {label} thread.")});
                if let Err(why) = state.telegram.call(&token, "editMessageText", edit).await {
                    tracing::warn!(error = %why, "the threaded message was not edited");
                }
                answer(&format!("Replies now go to the {label} thread.")).await;
            }
            None => answer("This notification has expired or was already handled.").await,
        },
        "keep" => match state.store.dismiss_thread(&row.id, notification).await? {
            Some(_) => answer("Kept: your replies stay in your main chat.").await,
            None => answer("This notification has expired or was already handled.").await,
        },
        _ => answer("This button is not known here.").await,
    }
    Ok(())
}

/// Claims a thread by its button, if its profile is still granted the bot.
async fn claim(
    state: &AppState,
    row: &Integration,
    notification: &str,
) -> anyhow::Result<Option<store::ClaimedThread>> {
    let Some(profile_id) = state.store.thread_profile(&row.id, notification).await? else {
        return Ok(None);
    };
    let profiles = state.store.profiles(&row.user_id).await?;
    let profile = profiles.iter().find(|p| p.id == profile_id);
    if !model::scope::is_granted(row, profile) {
        return Ok(None);
    }
    Ok(state
        .store
        .claim_thread(&row.id, notification, &profile_id)
        .await?)
}
