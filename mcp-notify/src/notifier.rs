//! One notification from request to log row: validation, idempotency, the
//! per-minute limit, the channel among the integrations granted now, the
//! delivery, and the `notification_log` row. Shared by `notify_user`,
//! `integrations notify` and `integrations test`.

use model::sealing::Sealer;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use model::Identity;
use model::channel::{self, ChannelError};
use model::{Integration, IntegrationType, ReauthReason};
use sidecar::fair::{Share, Shares};
use sidecar::http::DEFAULT_MAX_IN_FLIGHT_PER_USER;
use store::{Claim, LoggedNotification, NewClaim, SidecarStore, ThreadRow};
use vault::Keyring;

use crate::deliver::{Delivered, Failure, Outgoing, Providers, Source, Urgency};

/// The longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 20_000;
/// The longest `claim_thread_label`, in characters: it is shown in
/// Telegram's answer to a tap (at most 200 characters, with our sentence
/// around it) and in the reply it switches.
pub const MAX_LABEL_CHARS: usize = 64;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a notification waits for one of its user's deliveries in
/// flight before it is refused.
const SHARE_WAIT: Duration = Duration::from_secs(10);

/// How long until one more may go, for `recent` (when each one that counts
/// was sent, oldest first, within [`WINDOW`]) under `limit` a window:
/// `None` while under the limit.
pub fn retry_in(recent: &[SystemTime], limit: usize) -> Option<Duration> {
    if recent.len() < limit {
        return None;
    }
    // When the oldest one that counts leaves the window.
    Some(
        recent
            .get(recent.len() - limit)
            .and_then(|oldest| (*oldest + WINDOW).duration_since(SystemTime::now()).ok())
            .unwrap_or(WINDOW),
    )
}

/// What to send.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub message: String,
    pub channel: Option<String>,
    pub urgency: Urgency,
    pub title: Option<String>,
    pub claim_thread: bool,
    pub claim_thread_label: Option<String>,
    pub idempotency_key: Option<String>,
}

/// What was sent (or, for a repeated idempotency key, what was sent first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Sent {
    pub channel: String,
    pub integration_id: String,
    pub notification_id: String,
    pub provider_message_id: Option<String>,
    /// True when an earlier call with the same idempotency key already sent it.
    pub replayed: bool,
}

/// Why nothing was sent. Each reads as a sentence the agent can act on.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}", capitalize(&.0.to_string()))]
    Channel(#[from] ChannelError),
    #[error("Too many notifications: at most {limit} a minute for this agent. Try again in {} seconds.", .retry_in.as_secs().max(1))]
    RateLimited { limit: usize, retry_in: Duration },
    #[error("The notification was not delivered via {channel}: {failure}.")]
    Delivery {
        channel: String,
        integration_id: String,
        /// The id of its `notification_log` row.
        notification_id: String,
        failure: Failure,
    },
    #[error(
        "A notification with this idempotency_key is being sent right now; call again with the same key in a few seconds to get its result."
    )]
    InFlight,
    #[error(
        "A notification with this idempotency_key may already have been delivered (the connection to its provider was lost after the message was handed over), so it is not sent again; check with the user before sending it under a new key."
    )]
    MaybeSent,
    #[error(
        "Too many of this user's notifications are being delivered right now (at most {limit} at once). Try again in a few seconds."
    )]
    Busy { limit: u32 },
    #[error("{0}")]
    Unavailable(String),
}

impl NotifyError {
    /// The integration involved, for the audit row.
    pub fn integration_id(&self) -> Option<&str> {
        match self {
            Self::Delivery { integration_id, .. } => Some(integration_id),
            _ => None,
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect::<String>() + ".")
        .unwrap_or_default()
}

/// Sends notifications for one store, keyring and set of providers.
pub struct Notifier {
    store: SidecarStore,
    keyring: Arc<Keyring>,
    providers: Providers,
    /// `NOTIFY_MAX_PER_MINUTE` (default 20), per user and profile.
    max_per_minute: usize,
    /// Each user's notifications under way at once
    /// (`MCP_MAX_IN_FLIGHT_PER_USER`, default 16; 0: no limit), so that one
    /// user's slow receivers hold up no other user's; `None`: no limit.
    per_user: Option<Arc<Shares>>,
}

impl Notifier {
    pub fn new(store: SidecarStore, keyring: Arc<Keyring>, providers: Providers) -> Self {
        let max_per_minute = std::env::var("NOTIFY_MAX_PER_MINUTE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let per_user = std::env::var("MCP_MAX_IN_FLIGHT_PER_USER")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT_PER_USER as u32);
        Self {
            store,
            keyring,
            providers,
            max_per_minute,
            per_user: (per_user > 0).then(|| Shares::new(per_user)),
        }
    }

    /// One of `user`'s notifications under way, waited for a bounded time.
    async fn turn(&self, user: &str) -> Result<Option<Share>, NotifyError> {
        let Some(shares) = &self.per_user else {
            return Ok(None);
        };
        match shares.take(user, 1, SHARE_WAIT).await {
            Some(turn) => Ok(Some(turn)),
            None => Err(NotifyError::Busy {
                limit: shares.limit(),
            }),
        }
    }

    /// Sends `request` for `who` through a channel granted to `who`'s
    /// profile; an agent's notifications count against the profile's
    /// per-minute limit.
    pub async fn notify(
        &self,
        who: &Identity,
        request: &Request,
        source: Source,
    ) -> Result<Sent, NotifyError> {
        self.choose_and_send(who, request, source, source == Source::Agent)
            .await
    }

    /// [`Notifier::notify`], counted against the per-minute limit whatever
    /// its source (a user's own request over the API).
    pub async fn notify_counted(
        &self,
        who: &Identity,
        request: &Request,
        source: Source,
    ) -> Result<Sent, NotifyError> {
        self.choose_and_send(who, request, source, true).await
    }

    async fn choose_and_send(
        &self,
        who: &Identity,
        request: &Request,
        source: Source,
        counted: bool,
    ) -> Result<Sent, NotifyError> {
        validate(request)?;
        let _turn = self.turn(&who.user_id).await?;
        let id = new_id();
        if let Some(first) = self.claim(who, request, source, counted, &id).await? {
            return Ok(first);
        }
        match self.choose(who, request).await {
            Ok(integration) => self.deliver(&integration, who, request, source, id).await,
            Err(e) => {
                if let Err(e) = self.store.release_claim(&id).await {
                    tracing::warn!(error = %e, "could not release a claim");
                }
                Err(e)
            }
        }
    }

    /// Claims notification `id` in the store (its idempotency key, its place
    /// in an agent's per-minute count), across every sidecar of the profile.
    /// `Some` is the first result of a key that was sent already.
    async fn claim(
        &self,
        who: &Identity,
        request: &Request,
        source: Source,
        counted: bool,
        id: &str,
    ) -> Result<Option<Sent>, NotifyError> {
        let claim = NewClaim {
            notification_id: id.to_string(),
            user_id: who.user_id.clone(),
            profile_id: who.profile_id.clone(),
            source: source.as_str().into(),
            idempotency_key: request.idempotency_key.clone(),
            limit: counted.then_some((self.max_per_minute, WINDOW)),
        };
        match self
            .store
            .claim(&claim)
            .await
            .map_err(|e| unavailable(&e))?
        {
            Claim::Granted => Ok(None),
            Claim::Pending => Err(NotifyError::InFlight),
            Claim::Unknown => Err(NotifyError::MaybeSent),
            Claim::Sent => {
                let key = request.idempotency_key.as_deref().unwrap_or_default();
                let first = self
                    .store
                    .sent_with_key(&who.user_id, &who.profile_id, key, source.as_str())
                    .await
                    .map_err(|e| unavailable(&e))?
                    .ok_or(NotifyError::InFlight)?;
                Ok(Some(Sent {
                    channel: first.channel,
                    integration_id: first.integration_id.unwrap_or_default(),
                    notification_id: first.notification_id,
                    provider_message_id: first.provider_message_id,
                    replayed: true,
                }))
            }
            Claim::Limited(recent) => Err(NotifyError::RateLimited {
                limit: self.max_per_minute,
                retry_in: retry_in(&recent, self.max_per_minute).unwrap_or(WINDOW),
            }),
        }
    }

    /// The integration granted now that `request` goes through.
    async fn choose(&self, who: &Identity, request: &Request) -> Result<Integration, NotifyError> {
        let wanted = channel::parse(request.channel.as_deref())?;
        let snapshot = self
            .store
            .snapshot(&who.user_id, None)
            .await
            .map_err(|e| unavailable(&e))?;
        let integration = channel::select(
            &wanted,
            &snapshot.integrations,
            snapshot.profile(&who.profile_id),
        )?
        .clone();
        if request.claim_thread {
            if !matches!(
                integration.kind,
                IntegrationType::Telegram | IntegrationType::Slack
            ) {
                return Err(NotifyError::Invalid(format!(
                    "claim_thread works only on a Telegram or Slack channel, and this notification would go via {}; drop claim_thread or pick a telegram or slack channel.",
                    channel::channel_string(&integration)
                )));
            }
            if who.session_id.is_none() {
                return Err(NotifyError::Invalid(
                    "claim_thread needs a session, and this agent runs without one (INTEGRATIONS_SESSION_ID is not set); drop claim_thread.".into(),
                ));
            }
        }
        Ok(integration)
    }

    /// Writes the `failed` log row of a notification refused before any
    /// delivery (no granted channel, past the limit, an invalid request), so
    /// that every channel a platform notification named has its row; its id.
    pub async fn log_refused(
        &self,
        who: &Identity,
        request: &Request,
        source: Source,
        channel: &str,
        error: &NotifyError,
    ) -> String {
        let row = LoggedNotification {
            notification_id: new_id(),
            user_id: who.user_id.clone(),
            profile_id: Some(who.profile_id.clone()).filter(|p| !p.is_empty()),
            session_id: who.session_id.clone(),
            integration_id: None,
            channel: channel.to_string(),
            urgency: request.urgency.as_str().into(),
            source: source.as_str().into(),
            status: "failed".into(),
            error: Some(error.to_string()),
            attempts: 0,
            idempotency_key: request.idempotency_key.clone(),
            message: request.message.clone(),
            provider_message_id: None,
        };
        if let Err(e) = self.store.log_notification(&row).await {
            tracing::warn!(error = %e, "could not write the notification log row");
        }
        row.notification_id
    }

    /// Sends `request` through `integration` (named by an operator), with
    /// the same idempotency key rules, logs it, and records its thread.
    pub async fn send(
        &self,
        integration: &Integration,
        who: &Identity,
        request: &Request,
        source: Source,
    ) -> Result<Sent, NotifyError> {
        let _turn = self.turn(&who.user_id).await?;
        let id = new_id();
        let counted = source == Source::Agent;
        if let Some(first) = self.claim(who, request, source, counted, &id).await? {
            return Ok(first);
        }
        self.deliver(integration, who, request, source, id).await
    }

    /// Delivers the claimed notification `id`, logs it (ending its claim),
    /// and records its thread.
    async fn deliver(
        &self,
        integration: &Integration,
        who: &Identity,
        request: &Request,
        source: Source,
        id: String,
    ) -> Result<Sent, NotifyError> {
        let channel = channel::channel_string(integration);
        let out = Outgoing {
            id,
            message: request.message.clone(),
            title: request.title.clone(),
            urgency: request.urgency,
            source,
            channel: channel.clone(),
            profile_id: Some(who.profile_id.clone()).filter(|p| !p.is_empty()),
            session_id: who.session_id.clone(),
            claim_thread: request
                .claim_thread
                .then(|| request.claim_thread_label.clone()),
        };
        let delivered = match self.keyring.open_config(integration) {
            Ok(config) => self.providers.deliver(integration, &config, &out).await,
            Err(e) => {
                tracing::warn!(integration = %integration.id, error = %e, "cannot open the config");
                Err(Failure::new(
                    "its stored credentials cannot be read; ask the operator to check the keyring",
                ))
            }
        };
        if let Err(failure) = &delivered
            && failure.reauth
            && let Err(e) = self
                .store
                .mark_needs_reauth(
                    &integration.id,
                    &integration.sealed,
                    ReauthReason::ProviderRefused,
                    &failure.message,
                )
                .await
        {
            tracing::warn!(integration = %integration.id, error = %e, "could not mark needs_reauth");
        }
        self.log(integration, who, request, &out, &delivered).await;
        match delivered {
            Ok(delivered) => Ok(Sent {
                channel,
                integration_id: integration.id.clone(),
                notification_id: out.id,
                provider_message_id: delivered.provider_message_id,
                replayed: false,
            }),
            Err(failure) => Err(NotifyError::Delivery {
                channel,
                integration_id: integration.id.clone(),
                notification_id: out.id,
                failure,
            }),
        }
    }

    async fn log(
        &self,
        integration: &Integration,
        who: &Identity,
        request: &Request,
        out: &Outgoing,
        delivered: &Result<Delivered, Failure>,
    ) {
        let row = LoggedNotification {
            notification_id: out.id.clone(),
            user_id: who.user_id.clone(),
            profile_id: out.profile_id.clone(),
            session_id: who.session_id.clone(),
            integration_id: Some(integration.id.clone()),
            channel: out.channel.clone(),
            urgency: out.urgency.as_str().into(),
            source: out.source.as_str().into(),
            status: match delivered {
                Ok(_) => "sent",
                Err(failure) => failure.status(),
            }
            .into(),
            error: delivered.as_ref().err().map(|f| f.message.clone()),
            attempts: i64::from(match delivered {
                Ok(d) => d.attempts,
                Err(f) => f.attempts,
            }),
            idempotency_key: request.idempotency_key.clone(),
            message: request.message.clone(),
            provider_message_id: delivered
                .as_ref()
                .ok()
                .and_then(|d| d.provider_message_id.clone()),
        };
        if let Err(e) = self.store.log_notification(&row).await {
            tracing::warn!(error = %e, "could not write the notification log row");
        }
        if let (
            Ok(Delivered {
                thread: Some((chat, anchor)),
                ..
            }),
            Some(session),
        ) = (delivered, &who.session_id)
        {
            let thread = ThreadRow {
                notification_id: out.id.clone(),
                integration_id: integration.id.clone(),
                chat_id: chat.clone(),
                anchor: anchor.clone(),
                session_id: session.clone(),
                profile_id: who.profile_id.clone(),
                label: request.claim_thread_label.clone(),
            };
            if let Err(e) = self.store.add_thread(&thread).await {
                tracing::warn!(error = %e, "could not record the thread");
            }
        }
    }

    /// `NOTIFY_MAX_PER_MINUTE`: the notifications an agent may send in a
    /// minute, and the tests a user may run.
    pub fn max_per_minute(&self) -> usize {
        self.max_per_minute
    }

    /// The store, for callers that look integrations up themselves.
    pub fn store(&self) -> &SidecarStore {
        &self.store
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

/// A new notification id, `ntf_...`.
fn new_id() -> String {
    format!("ntf_{}", model::ids::random_token(20))
}

/// The store failed: logged, and one sentence for the caller.
fn unavailable(e: &dyn std::fmt::Display) -> NotifyError {
    tracing::warn!(error = %e, "store unavailable");
    NotifyError::Unavailable("The integrations store is not answering; try again shortly.".into())
}

/// The checks every notification passes before it is claimed.
pub fn validate(request: &Request) -> Result<(), NotifyError> {
    let invalid = |s: &str| Err(NotifyError::Invalid(s.into()));
    if request.message.trim().is_empty() {
        return invalid("The message is empty; write what the user should know.");
    }
    let chars = request.message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(NotifyError::Invalid(format!(
            "The message has {chars} characters; at most {MAX_MESSAGE_CHARS} are sent. Shorten it or link to the details."
        )));
    }
    if request
        .title
        .as_ref()
        .is_some_and(|t| t.chars().count() > 200)
    {
        return invalid("The title is longer than 200 characters; shorten it.");
    }
    if request
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        return invalid("The idempotency_key must be 1 to 200 characters.");
    }
    if request.claim_thread_label.is_some() && !request.claim_thread {
        return invalid("claim_thread_label goes with claim_thread: true.");
    }
    if let Some(chars) = request
        .claim_thread_label
        .as_ref()
        .map(|l| l.chars().count())
        .filter(|&n| n > MAX_LABEL_CHARS)
    {
        return Err(NotifyError::Invalid(format!(
            "The claim_thread_label has {chars} characters; at most {MAX_LABEL_CHARS} fit Telegram's buttons and tap answers. Shorten it."
        )));
    }
    Ok(())
}
