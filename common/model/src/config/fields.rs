//! The field tables: which fields each type's config has, which of them are
//! required or secret, and the shape of each value.

use crate::IntegrationType;

/// The shape a field's value must have.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// A non-empty string.
    Text,
    /// A non-empty string or an integer (Telegram ids).
    Id,
    /// An array of strings.
    TextList,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A TCP port: an integer from 1 to 65535.
    Port,
}

/// One field of a type's config.
pub(super) struct Field {
    pub(super) name: &'static str,
    /// A config without it is refused.
    pub(super) required: bool,
    /// Shown only as [`MASK`](super::MASK), read only into zeroizing buffers.
    pub(super) secret: bool,
    pub(super) shape: Shape,
    /// The only `provider` of the type it belongs to (Email's `smtp_host`
    /// is SMTP's); `None`: every provider's.
    pub(super) provider: Option<&'static str>,
}

impl Field {
    /// It belongs to a config of `provider`.
    pub(super) fn is_for(&self, provider: &str) -> bool {
        self.provider.is_none_or(|p| p == provider)
    }
}

/// The flags of a [`field`], joined with `|`: `REQUIRED | SECRET`.
type Flags = u8;
/// A config may leave the field out.
const OPTIONAL: Flags = 0;
/// A config without the field is refused.
const REQUIRED: Flags = 1;
/// The field's value is secret: masked in every view, never copied out of
/// a zeroizing buffer.
const SECRET: Flags = 2;

const fn field(name: &'static str, flags: Flags, shape: Shape) -> Field {
    Field {
        name,
        required: flags & REQUIRED != 0,
        secret: flags & SECRET != 0,
        shape,
        provider: None,
    }
}

/// `field`, for configs of `provider` only (required only in those).
const fn only(provider: &'static str, field: Field) -> Field {
    Field {
        provider: Some(provider),
        ..field
    }
}

use Shape::{Id, OneOf, Port, Text, TextList};

const SLACK: &[Field] = &[
    field("bot_token", REQUIRED | SECRET, Text),
    field("team_id", REQUIRED, Text),
    field("authed_user_id", REQUIRED, Text),
    field("team_name", OPTIONAL, Text),
    field("bot_user_id", OPTIONAL, Text),
];
/// `webhook_secret` is what Telegram echoes on our webhook; `owner` is
/// `platform` for the platform's shared bot.
const TELEGRAM: &[Field] = &[
    field("bot_token", REQUIRED | SECRET, Text),
    field("bot_user_id", REQUIRED, Id),
    field("bot_username", REQUIRED, Text),
    field("owner_chat_id", OPTIONAL, Id),
    field("webhook_secret", OPTIONAL | SECRET, Text),
    field("owner", OPTIONAL, Text),
];
/// `access_token` and `expires_at` (unix seconds) are the cached grant a
/// sidecar refreshes and writes back.
const GMAIL: &[Field] = &[
    field("email", REQUIRED, Text),
    field("refresh_token", REQUIRED | SECRET, Text),
    field("scopes", OPTIONAL, TextList),
    field("access_token", OPTIONAL | SECRET, Text),
    field("expires_at", OPTIONAL, Id),
];
const TELLER: &[Field] = &[
    field("enrollment_id", REQUIRED, Text),
    field("access_token", REQUIRED | SECRET, Text),
    field("institution_name", REQUIRED, Text),
    field("institution_id", OPTIONAL, Text),
];
/// Sent through Resend (`api_key`; the default `provider`) or through the
/// user's own SMTP server (`smtp_*`; the port defaults by `smtp_security`).
const EMAIL: &[Field] = &[
    field("provider", OPTIONAL, OneOf(EMAIL_PROVIDERS)),
    only("resend", field("api_key", REQUIRED | SECRET, Text)),
    only("smtp", field("smtp_host", REQUIRED, Text)),
    only("smtp", field("smtp_port", OPTIONAL, Port)),
    only(
        "smtp",
        field("smtp_security", OPTIONAL, OneOf(SMTP_SECURITY)),
    ),
    only("smtp", field("smtp_username", REQUIRED, Text)),
    only("smtp", field("smtp_password", REQUIRED | SECRET, Text)),
    field("from_address", REQUIRED, Text),
    field("to_address", REQUIRED, Text),
];

/// The values of an Email config's `provider`, the default first.
pub const EMAIL_PROVIDERS: &[&str] = &["resend", "smtp"];

/// The values of an SMTP config's `smtp_security`, the default first:
/// STARTTLS on the submission port (587), or TLS from the first byte (465).
pub const SMTP_SECURITY: &[&str] = &["starttls", "tls"];
/// A webhook URL often carries a capability token in its path, so it is
/// secret; its host becomes the label. `signature` is how deliveries are
/// signed: [`WEBHOOK_SIGNATURES`], Standard Webhooks when absent.
const WEBHOOK: &[Field] = &[
    field("url", REQUIRED | SECRET, Text),
    field("secret", OPTIONAL | SECRET, Text),
    field("signature", OPTIONAL, OneOf(WEBHOOK_SIGNATURES)),
];

/// The values of a webhook config's `signature`: `standard-webhooks` (the
/// default) or `vonzio`, the body and `X-Signature-256` header of the
/// product these documents describe.
pub const WEBHOOK_SIGNATURES: &[&str] = &["standard-webhooks", "vonzio"];

/// The names of the fields a `kind` config may have.
pub fn field_names(kind: IntegrationType) -> impl Iterator<Item = &'static str> {
    fields(kind).iter().map(|f| f.name)
}

/// The field table of a `kind` config.
pub(super) fn fields(kind: IntegrationType) -> &'static [Field] {
    match kind {
        IntegrationType::Slack => SLACK,
        IntegrationType::Telegram => TELEGRAM,
        IntegrationType::Gmail => GMAIL,
        IntegrationType::Teller => TELLER,
        IntegrationType::Email => EMAIL,
        IntegrationType::Webhook => WEBHOOK,
    }
}

/// The `provider` a `kind` config's `provider` field names, or the type's
/// default; `None` for a type without providers.
pub(super) fn provider_of(kind: IntegrationType, named: Option<&str>) -> Option<&'static str> {
    let providers = match kind {
        IntegrationType::Email => EMAIL_PROVIDERS,
        _ => return None,
    };
    let named = named.unwrap_or(providers[0]);
    providers.iter().copied().find(|p| *p == named)
}

/// The names of the `kind` fields `which` picks, for a sentence.
pub(super) fn names(kind: IntegrationType, which: impl Fn(&Field) -> bool) -> String {
    fields(kind)
        .iter()
        .filter(|f| which(f))
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}
