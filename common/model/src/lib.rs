//! The rules of the integrations layer, without I/O: the records of the
//! store as the rest of the system sees them (this file), ids, the scope
//! rules, channel parsing, per-type config validation and redaction, and
//! retry delays.

pub mod channel;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod ids;
pub mod retry;
pub mod scope;
pub mod sealing;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kinds of third-party account a user can connect.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationType {
    Slack,
    Telegram,
    Gmail,
    Teller,
    Email,
    Webhook,
}

impl IntegrationType {
    /// Every type, in display order.
    pub const ALL: [IntegrationType; 6] = [
        Self::Slack,
        Self::Telegram,
        Self::Gmail,
        Self::Teller,
        Self::Email,
        Self::Webhook,
    ];

    /// The lowercase name stored in the `type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Telegram => "telegram",
            Self::Gmail => "gmail",
            Self::Teller => "teller",
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }

    /// Telegram bots and Teller enrollments may have several rows per user;
    /// every other type is one per user.
    pub fn allows_many_per_user(self) -> bool {
        matches!(self, Self::Telegram | Self::Teller)
    }

    /// Whether notifications can be delivered through this type.
    pub fn is_channel(self) -> bool {
        matches!(
            self,
            Self::Slack | Self::Telegram | Self::Email | Self::Webhook
        )
    }
}

impl fmt::Display for IntegrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for IntegrationType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown integration type '{}': use one of slack, telegram, gmail, teller, email, webhook",
                    s.escape_debug()
                )
            })
    }
}

/// Which profiles of its user an integration is granted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every profile of the user.
    All,
    /// Only the profiles listed in `profile_ids`.
    Agents,
}

impl Scope {
    /// The value stored in the `scope` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Agents => "agents",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "agents" => Ok(Self::Agents),
            _ => Err(format!(
                "unknown scope '{}': use all or agents",
                s.escape_debug()
            )),
        }
    }
}

/// Whether the provider still honours the stored grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    /// A provider said the grant is dead: the user must reconnect.
    NeedsReauth,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
        }
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "needs_reauth" => Ok(Self::NeedsReauth),
            _ => Err(format!("unknown status '{}'", s.escape_debug())),
        }
    }
}

/// Why a row became `needs_reauth`: a stable code, in the
/// `integration.needs_reauth` event and on the Settings page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReauthReason {
    /// The provider refused the stored grant or credentials when they were
    /// used (a tool call, a delivery or a health check).
    ProviderRefused,
    /// Teller said the enrollment was disconnected (its webhook).
    EnrollmentDisconnected,
    /// The row's external identity is held by another row (rows from
    /// before identities were unique).
    IdentityTaken,
}

impl ReauthReason {
    /// The value stored in the `status_reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderRefused => "provider_refused",
            Self::EnrollmentDisconnected => "enrollment_disconnected",
            Self::IdentityTaken => "identity_taken",
        }
    }
}

impl FromStr for ReauthReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::ProviderRefused,
            Self::EnrollmentDisconnected,
            Self::IdentityTaken,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown reason '{}'", s.escape_debug()))
    }
}

/// An agent profile of the platform, mirrored so that scope can be checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub id: String,
    pub user_id: String,
    pub slug: String,
    pub name: String,
    pub is_default: bool,
    pub created_at: String,
}

/// An encrypted config (or user secret) exactly as stored
/// (`v1.<kid>.<nonce>.<ciphertext>`). Opaque: only the vault's keyring
/// (`vault::Keyring::open_config`, `vault::Keyring::open_secret`) reads it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SealedConfig(pub(crate) String);

impl SealedConfig {
    /// An envelope as it was stored, taken as is: nothing is checked until
    /// it is opened (the fuzz targets feed arbitrary text through this).
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The envelope as stored (ciphertext; safe to copy, useless without a key).
    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// The id of the key it is encrypted under, when the envelope is well formed.
    pub fn kid(&self) -> Option<&str> {
        let mut parts = self.0.split('.');
        (parts.next() == Some("v1")).then(|| parts.next()).flatten()
    }
}

impl fmt::Debug for SealedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedConfig(kid={:?}, {} bytes)",
            self.kid(),
            self.0.len()
        )
    }
}

/// One row of `user_integrations`: clear-text metadata and the sealed config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    pub user_id: String,
    pub kind: IntegrationType,
    /// The row's external identity (`config::IDENTITIES`: Slack team and
    /// user, Telegram bot, Gmail address, Teller enrollment, SMTP login);
    /// unique per type.
    pub external_id: Option<String>,
    pub label: String,
    pub sealed: SealedConfig,
    pub enabled: bool,
    pub is_default: bool,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    /// Telegram only: the profile this bot speaks for.
    pub bound_profile_id: Option<String>,
    pub status: Status,
    /// Why a `needs_reauth` row needs its user, and since when.
    pub status_note: Option<StatusNote>,
    pub created_at: String,
    pub updated_at: String,
}

/// Why a row is `needs_reauth`: the reason, the provider's words (no
/// secret), and since when (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusNote {
    pub reason: ReauthReason,
    pub detail: String,
    pub since: String,
}

/// One row of `user_secrets`: clear-text metadata and the sealed value, which
/// only `vault::Keyring::open_secret` reads and `Debug` does not show.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Secret {
    pub id: String,
    pub user_id: String,
    /// An environment variable name, unique per user.
    pub name: String,
    pub scope: Scope,
    pub profile_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub sealed: SealedConfig,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("profile_ids", &self.profile_ids)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// The running agent, fixed at spawn. Never taken from tool arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub profile_id: String,
    pub session_id: Option<String>,
}

impl Identity {
    /// From `INTEGRATIONS_USER_ID`, `INTEGRATIONS_PROFILE_ID` and
    /// `INTEGRATIONS_SESSION_ID`; `user`/`profile` (command-line flags) win.
    pub fn from_env(user: Option<String>, profile: Option<String>) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (user.or_else(|| var("INTEGRATIONS_USER_ID")), profile.or_else(|| var("INTEGRATIONS_PROFILE_ID"))) {
            (Some(user_id), Some(profile_id)) => Ok(Self { user_id, profile_id, session_id: var("INTEGRATIONS_SESSION_ID") }),
            _ => Err("no identity: set INTEGRATIONS_USER_ID and INTEGRATIONS_PROFILE_ID (or pass --user and --profile)".into()),
        }
    }
}

/// How a tool call ended, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

impl Decision {
    /// The value stored in `audit_log.decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// One `audit_log` row. `detail` is the sentence the agent saw, never a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub identity: &'a Identity,
    pub server: &'a str,
    pub tool: &'a str,
    pub integration_id: Option<&'a str>,
    pub decision: Decision,
    pub detail: Option<&'a str>,
    pub duration: Duration,
}
