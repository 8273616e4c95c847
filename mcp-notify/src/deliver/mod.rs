//! Delivery to the four outbound channels, each through its provider's
//! client (`providers::slack`, `telegram`, `resend`, `smtp`; pointed at
//! fakes in tests by their `*_API_BASE` variables, or at a test SMTP server)
//! or a signed webhook, with bounded retries that never duplicate a message.

mod email;
mod retry;
mod slack;
mod smtp;
mod telegram;
mod webhook;

use std::time::Duration;

use tokio::time::Instant;

use model::config::DecryptedConfig;
use model::{Integration, IntegrationType};
use providers::resend::ResendClient;
use providers::slack::SlackClient;
use providers::telegram::TelegramClient;
use serde::{Deserialize, Serialize};
use store::ThreadAnchor;
use zeroize::Zeroizing;

/// How urgent a notification is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    #[default]
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

impl<'de> Deserialize<'de> for Urgency {
    /// Like the derived form, with an error that names the argument.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        match value.as_str() {
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            _ => Err(serde::de::Error::custom(format!(
                "urgency must be low, normal or high, not '{}'",
                value.chars().take(20).collect::<String>().escape_debug()
            ))),
        }
    }
}

/// Who asked for a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Agent,
    Platform,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Platform => "platform",
        }
    }
}

/// One notification on its way to one integration.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `ntf_...`: stable across retries (webhook id, Resend idempotency key).
    pub id: String,
    pub message: String,
    pub title: Option<String>,
    pub urgency: Urgency,
    pub source: Source,
    /// The channel string, e.g. `slack` or `telegram:int_...`.
    pub channel: String,
    pub profile_id: Option<String>,
    pub session_id: Option<String>,
    /// A thread the user's replies continue (Telegram's claim buttons, a
    /// Slack thread), with its label.
    pub claim_thread: Option<Option<String>>,
}

/// What the provider confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub provider_message_id: Option<String>,
    pub attempts: u32,
    /// With `claim_thread`: the chat and the message the thread hangs on.
    pub thread: Option<(String, ThreadAnchor)>,
}

/// Why a delivery failed: one sentence without a secret, and whether the
/// integration's grant is dead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    pub attempts: u32,
    /// The provider refused the credentials: mark the row `needs_reauth`.
    pub reauth: bool,
    /// The provider could not be reached, or kept failing or rate limiting
    /// until the deadline: it refused nothing.
    pub unavailable: bool,
    /// The message may have been delivered: the provider's connection was
    /// lost after it was handed over. Never sent again.
    pub unknown: bool,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            attempts: 1,
            reauth: false,
            unavailable: false,
            unknown: false,
        }
    }

    pub(crate) fn reauth(message: impl Into<String>) -> Self {
        Self {
            reauth: true,
            ..Self::new(message)
        }
    }

    /// How its `notification_log` row and claim end: `unknown` or `failed`.
    pub fn status(&self) -> &'static str {
        if self.unknown { "unknown" } else { "failed" }
    }
}

/// The providers' clients and how long to wait for them, from the
/// environment.
#[derive(Debug)]
pub struct Providers {
    slack: SlackClient,
    telegram: TelegramClient,
    resend: ResendClient,
    /// The CAs an SMTP server's certificate may chain to (`SMTP_CA_PATH`),
    /// or why they could not be read.
    smtp_roots: Result<providers::smtp::Roots, String>,
    /// `INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE=1`: webhooks (and SMTP servers)
    /// may reach loopback and private addresses, webhooks over plain http.
    pub allow_private: bool,
    /// One request's timeout (`NOTIFY_TIMEOUT_MS`, default 10 s).
    pub timeout: Duration,
    /// All attempts of one delivery (`NOTIFY_DEADLINE_MS`, default and at most 15 s).
    pub deadline: Duration,
    /// Webhook clients by host and checked address, so that a receiver's
    /// connection is kept alive while its address stays the same.
    webhook_clients: webhook::Clients,
}

const USER_AGENT: &str = concat!("vz-integrations/", env!("CARGO_PKG_VERSION"));

impl Providers {
    /// From `NOTIFY_TIMEOUT_MS`, `NOTIFY_DEADLINE_MS`,
    /// `INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE`, `SMTP_CA_PATH` and the
    /// providers' clients' variables.
    pub fn from_env() -> Self {
        let millis = |name: &str, default: u64| {
            Duration::from_millis(
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        let timeout = millis("NOTIFY_TIMEOUT_MS", 10_000);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            slack: SlackClient::from_env(http.clone()),
            telegram: TelegramClient::from_env(http.clone()),
            resend: ResendClient::from_env(http),
            smtp_roots: providers::smtp::Roots::from_env().map_err(|e| e.to_string()),
            allow_private: std::env::var("INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE").as_deref()
                == Ok("1"),
            timeout,
            deadline: millis("NOTIFY_DEADLINE_MS", 15_000).min(Duration::from_secs(15)),
            webhook_clients: webhook::Clients::default(),
        }
    }

    /// Sends `out` through `integration`, whose config is `config`.
    pub async fn deliver(
        &self,
        integration: &Integration,
        config: &DecryptedConfig,
        out: &Outgoing,
    ) -> Result<Delivered, Failure> {
        // One deadline for every request and retry of this delivery.
        let deadline = Instant::now() + self.deadline;
        match Channel::of(integration, config)? {
            Channel::Slack { token, user } => slack::send(self, deadline, &token, &user, out).await,
            Channel::Telegram { token, chat } => {
                let Some(chat) = chat else {
                    return Err(Failure::new(format!(
                        "the Telegram bot {} is not linked to a chat yet: the user must open the bot and send /link <code> first",
                        integration.label
                    )));
                };
                telegram::send(self, deadline, &token, &chat, out).await
            }
            Channel::Smtp { login, from, to } => {
                smtp::send(self, deadline, &login, &from, &to, out).await
            }
            Channel::Resend { key, from, to } => {
                email::send(self, deadline, &key, &from, &to, out).await
            }
            Channel::Webhook { url, secret, style } => {
                webhook::send(
                    self,
                    deadline,
                    &url,
                    secret.as_deref().map(|s| s.as_str()),
                    style,
                    out,
                )
                .await
            }
        }
    }

    /// Whether `integration`'s credentials still work, sending nothing:
    /// Slack's `auth.test`, Telegram's `getMe`, Resend's key, a login to
    /// the SMTP server. A webhook holds no credential to check.
    pub async fn check(
        &self,
        integration: &Integration,
        config: &DecryptedConfig,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + self.deadline;
        match Channel::of(integration, config)? {
            Channel::Slack { token, .. } => slack::check(self, deadline, &token).await,
            Channel::Telegram { token, .. } => telegram::check(self, deadline, &token).await,
            Channel::Smtp { login, from, .. } => smtp::check(self, deadline, &login, &from).await,
            Channel::Resend { key, .. } => email::check(self, deadline, &key).await,
            Channel::Webhook { .. } => Ok(()),
        }
    }

    /// Revokes `integration`'s grant at its provider where one exists
    /// (Slack `auth.revoke`, Telegram `deleteWebhook`). `Ok(false)` when the
    /// provider says the token was already dead.
    pub async fn revoke(
        &self,
        integration: &Integration,
        config: &DecryptedConfig,
    ) -> Result<bool, Failure> {
        let deadline = Instant::now() + self.deadline;
        let token = config
            .get(integration.kind, "bot_token")
            .ok()
            .flatten()
            .ok_or_else(|| Failure::new("the config has no bot token"))?;
        match integration.kind {
            IntegrationType::Slack => slack::revoke(self, deadline, &token).await,
            IntegrationType::Telegram => telegram::delete_webhook(self, deadline, &token).await,
            other => Err(Failure::new(format!(
                "{other} has no downstream revocation"
            ))),
        }
    }
}

/// A notification channel's config, read for a delivery or a check.
enum Channel {
    Slack {
        token: Zeroizing<String>,
        user: Zeroizing<String>,
    },
    Telegram {
        token: Zeroizing<String>,
        chat: Option<Zeroizing<String>>,
    },
    Smtp {
        login: providers::smtp::Login,
        from: Zeroizing<String>,
        to: Zeroizing<String>,
    },
    Resend {
        key: Zeroizing<String>,
        from: Zeroizing<String>,
        to: Zeroizing<String>,
    },
    Webhook {
        url: Zeroizing<String>,
        secret: Option<Zeroizing<String>>,
        style: webhook::Style,
    },
}

impl Channel {
    /// `integration`'s channel, its fields from `config`; a config that
    /// lacks one asks the user to reconnect.
    fn of(integration: &Integration, config: &DecryptedConfig) -> Result<Self, Failure> {
        let kind = integration.kind;
        let field = |name: &str| config.get(kind, name).ok().flatten();
        let missing = || {
            Failure::reauth(format!(
                "the {kind} integration is missing part of its configuration; the user must reconnect it"
            ))
        };
        let required = |name: &str| field(name).ok_or_else(missing);
        Ok(match kind {
            IntegrationType::Slack => {
                // A direct message goes only to the Slack user this row
                // holds as its identity, which no other row can hold.
                if integration.external_id.is_none()
                    || integration.external_id != config.identity(kind)
                {
                    return Err(Failure::new(
                        "this Slack integration holds no Slack user of its own (it was connected before each Slack user could belong to one integration, or another integration holds its user), so nothing was sent: the user must reconnect Slack",
                    ));
                }
                Self::Slack {
                    token: required("bot_token")?,
                    user: required("authed_user_id")?,
                }
            }
            IntegrationType::Telegram => Self::Telegram {
                token: required("bot_token")?,
                chat: field("owner_chat_id"),
            },
            IntegrationType::Email
                if field("provider").as_deref().map(|p| p.as_str()) == Some("smtp") =>
            {
                let security = providers::smtp::Security::from_config(
                    field("smtp_security").as_deref().map(|s| s.as_str()),
                );
                Self::Smtp {
                    login: providers::smtp::Login {
                        host: required("smtp_host")?.to_string(),
                        port: field("smtp_port")
                            .and_then(|p| p.parse().ok())
                            .unwrap_or_else(|| security.default_port()),
                        security,
                        username: required("smtp_username")?.to_string(),
                        password: required("smtp_password")?,
                    },
                    from: required("from_address")?,
                    to: required("to_address")?,
                }
            }
            IntegrationType::Email => Self::Resend {
                key: required("api_key")?,
                from: required("from_address")?,
                to: required("to_address")?,
            },
            IntegrationType::Webhook => Self::Webhook {
                url: required("url")?,
                secret: field("secret"),
                style: webhook::Style::from_config(
                    field("signature").as_deref().map(|s| s.as_str()),
                ),
            },
            other => {
                return Err(Failure::new(format!(
                    "{other} is not a notification channel"
                )));
            }
        })
    }
}
