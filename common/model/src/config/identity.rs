//! Each type's external identity (the fields that name the account a row
//! stands for), and the fields only the server's own flows write.

use crate::IntegrationType;

/// Each type's external identity: the fields that name the account a row
/// stands for (a Slack team and the user who connected the app, a Telegram
/// bot, a Gmail address, a Teller enrollment), why only its provider's flow
/// writes them, and whether case is folded. The store keeps the identity in
/// `external_id`, unique per type across users; no change may name an
/// identity field. A type that gains an identity is a line here.
const IDENTITIES: &[Identity] = &[
    Identity {
        kind: IntegrationType::Slack,
        noun: "Slack user",
        fields: &["team_id", "authed_user_id"],
        fold_case: false,
        why: "names the Slack user this integration is, and changes only by connecting Slack again (Add to Slack)",
    },
    Identity {
        kind: IntegrationType::Telegram,
        noun: "Telegram bot",
        fields: &["bot_user_id"],
        fold_case: false,
        why: "is the bot's own id, checked with Telegram: connect another bot as a new integration",
    },
    Identity {
        kind: IntegrationType::Gmail,
        noun: "Gmail address",
        fields: &["email"],
        fold_case: true,
        why: "names the mailbox this integration is, and changes only by connecting Gmail again",
    },
    Identity {
        kind: IntegrationType::Teller,
        noun: "Teller enrollment",
        fields: &["enrollment_id"],
        fold_case: false,
        why: "changes only by connecting the bank again through Teller Connect",
    },
    Identity {
        kind: IntegrationType::Email,
        noun: "SMTP login",
        fields: &["smtp_host", "smtp_username"],
        fold_case: true,
        why: "names the SMTP login this integration is: remove it and add the new login",
    },
];

/// One entry of [`IDENTITIES`].
pub(super) struct Identity {
    kind: IntegrationType,
    /// What the identity is, in a sentence.
    noun: &'static str,
    /// Their values, joined by `:` ([`identity_value`]), make the identity.
    pub(super) fields: &'static [&'static str],
    /// Compared case-insensitively (an email address).
    fold_case: bool,
    /// Why a change may not name them.
    why: &'static str,
}

pub(super) fn identity_of(kind: IntegrationType) -> Option<&'static Identity> {
    IDENTITIES.iter().find(|i| i.kind == kind)
}

/// The types whose rows have an external identity.
pub fn identity_types() -> impl Iterator<Item = IntegrationType> {
    IDENTITIES.iter().map(|i| i.kind)
}

/// What a `kind` identity is, for a sentence ("Slack user"); the type's
/// name for a type without one.
pub fn identity_noun(kind: IntegrationType) -> &'static str {
    identity_of(kind).map_or(kind.as_str(), |i| i.noun)
}

/// The identity of a `kind` row whose identity fields hold `values`, in
/// their order in [`IDENTITIES`] (a Slack team and user); `None` for a type
/// without one. Of several fields, each has its `%` and `:` escaped before
/// they are joined by `:`, so that two different pairs never join alike.
pub fn identity_value(kind: IntegrationType, values: &[&str]) -> Option<String> {
    let identity = identity_of(kind)?;
    let joined = match values {
        [one] => (*one).to_string(),
        many => many
            .iter()
            .map(|v| v.replace('%', "%25").replace(':', "%3A"))
            .collect::<Vec<_>>()
            .join(":"),
    };
    Some(if identity.fold_case {
        joined.to_lowercase()
    } else {
        joined
    })
}

/// Fields only the server's own flows write besides the identity, and
/// which flow: a pairing's chat, a bot's webhook secret, the platform bot's
/// mark; a Teller token, which only Teller Connect proves belongs to its
/// enrollment.
const SERVER_MANAGED: &[(IntegrationType, &str, &str)] = &[
    (
        IntegrationType::Telegram,
        "owner_chat_id",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Telegram,
        "webhook_secret",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Telegram,
        "owner",
        "is set by the server (pairing, webhook), not by a change",
    ),
    (
        IntegrationType::Teller,
        "access_token",
        "changes only by connecting the bank again through Teller Connect",
    ),
];

/// Why a change may not name the field `name` of a `kind` config, when only
/// the server's flows write it (its identity, [`SERVER_MANAGED`]). An
/// Email row's identity (its SMTP login) is written by the request that
/// creates it: see [`create_only`].
pub(super) fn server_managed(kind: IntegrationType, name: &str) -> Option<&'static str> {
    identity_of(kind)
        .filter(|i| i.fields.contains(&name))
        .map(|i| i.why)
        .or_else(|| {
            SERVER_MANAGED
                .iter()
                .find(|(k, field, _)| *k == kind && *field == name)
                .map(|(_, _, why)| *why)
        })
}

/// Whether a request that creates a `kind` row may set its field `name`
/// though no change may: the identity of a type created by a request (an
/// Email row's SMTP login), not by a provider's flow.
pub(super) fn create_only(kind: IntegrationType, name: &str) -> bool {
    kind == IntegrationType::Email && identity_of(kind).is_some_and(|i| i.fields.contains(&name))
}
