//! Inbound routing: which profile a Slack or Telegram message goes to.

use model::scope::is_granted;
use model::{Integration, IntegrationType, Profile};
use serde::Serialize;
use store::{Store, StoreError};

/// Where a message goes, and its text without the `@slug` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub profile_id: String,
    pub text: String,
}

/// Why a message cannot be routed; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("integration '{0}' does not exist")]
    IntegrationNotFound(String),
    #[error(
        "integration '{id}' is a {kind} integration; only slack and telegram messages are routed"
    )]
    NotInbound { id: String, kind: IntegrationType },
    #[error("{label} is disabled: enable it to receive messages")]
    Disabled { label: String },
    #[error("no profile is named @{slug}; this user's profiles are {known}")]
    UnknownSlug { slug: String, known: String },
    #[error(
        "{label} is bound to profile '{profile_id}', which no longer exists: bind it to another profile"
    )]
    BoundProfileGone { label: String, profile_id: String },
    #[error("this user has no profile to route to")]
    NoProfile,
    #[error(
        "{label} is not granted to profile @{slug}: grant it in Settings → Integrations, or address a profile that has it"
    )]
    NotGranted { label: String, slug: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Routes `text` arriving on `integration_id`: a leading `@slug` (optionally
/// followed by `:`) names a profile; else a Telegram bot's bound profile;
/// else the user's default profile (else the oldest). The chosen profile must
/// be granted the integration.
pub async fn route(store: &Store, integration_id: &str, text: &str) -> Result<Route, RouteError> {
    let integration = store
        .integration(integration_id)
        .await?
        .ok_or_else(|| RouteError::IntegrationNotFound(integration_id.into()))?;
    let profiles = store.profiles(&integration.user_id).await?;
    decide(&integration, &profiles, text)
}

fn decide(
    integration: &Integration,
    profiles: &[Profile],
    text: &str,
) -> Result<Route, RouteError> {
    if !matches!(
        integration.kind,
        IntegrationType::Slack | IntegrationType::Telegram
    ) {
        return Err(RouteError::NotInbound {
            id: integration.id.clone(),
            kind: integration.kind,
        });
    }
    let label = || integration.label.clone();
    if !integration.enabled {
        return Err(RouteError::Disabled { label: label() });
    }
    let (profile, text) = match split_mention(text) {
        Some((slug, rest)) => {
            let profile = profiles.iter().find(|p| p.slug == slug).ok_or_else(|| {
                RouteError::UnknownSlug {
                    slug: slug.into(),
                    known: profiles
                        .iter()
                        .map(|p| format!("@{}", p.slug))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            (profile, rest)
        }
        None => (unprefixed(integration, profiles)?, text),
    };
    if !is_granted(integration, Some(profile)) {
        return Err(RouteError::NotGranted {
            label: label(),
            slug: profile.slug.clone(),
        });
    }
    Ok(Route {
        profile_id: profile.id.clone(),
        text: text.into(),
    })
}

/// The profile a message without `@slug` on `integration` goes to: a
/// Telegram bot's bound profile, else the user's default profile (else the
/// oldest). The plan's `inbound` says the same ([`crate::Routing`]).
pub(crate) fn unprefixed<'a>(
    integration: &Integration,
    profiles: &'a [Profile],
) -> Result<&'a Profile, RouteError> {
    match &integration.bound_profile_id {
        Some(bound) => {
            profiles
                .iter()
                .find(|p| &p.id == bound)
                .ok_or_else(|| RouteError::BoundProfileGone {
                    label: integration.label.clone(),
                    profile_id: bound.clone(),
                })
        }
        None => profiles
            .iter()
            .find(|p| p.is_default)
            .or(profiles.first())
            .ok_or(RouteError::NoProfile),
    }
}

/// `@slug rest`, `@slug: rest` → `(slug, rest)`; anything else → `None`.
fn split_mention(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim_start().strip_prefix('@')?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ':')
        .unwrap_or(rest.len());
    let (slug, after) = rest.split_at(end);
    if slug.is_empty() {
        return None;
    }
    let after = after.strip_prefix(':').unwrap_or(after);
    Some((slug, after.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Scope, SealedConfig, Status};

    fn profile(id: &str, slug: &str, is_default: bool) -> Profile {
        Profile {
            id: id.into(),
            user_id: "u1".into(),
            slug: slug.into(),
            name: slug.into(),
            is_default,
            created_at: format!("2026-01-01T00:00:0{}.000Z", slug.len()),
        }
    }

    fn surface(
        kind: IntegrationType,
        scope: Scope,
        ids: &[&str],
        bound: Option<&str>,
    ) -> Integration {
        Integration {
            id: "int_x".into(),
            user_id: "u1".into(),
            kind,
            external_id: None,
            label: "@VZFinance_bot".into(),
            sealed: SealedConfig::default(),
            enabled: true,
            is_default: false,
            scope,
            profile_ids: ids.iter().map(|s| s.to_string()).collect(),
            bound_profile_id: bound.map(Into::into),
            status: Status::Active,
            status_note: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn mentions_are_split_from_the_text() {
        for (text, expected) in [
            (
                "@vzfin what did I spend",
                Some(("vzfin", "what did I spend")),
            ),
            (
                "@vzfin: what did I spend",
                Some(("vzfin", "what did I spend")),
            ),
            ("  @coding:fix it", Some(("coding", "fix it"))),
            ("@coding", Some(("coding", ""))),
            ("hello @vzfin", None),
            ("@ hello", None),
            ("plain", None),
        ] {
            assert_eq!(split_mention(text), expected, "{text:?}");
        }
    }

    #[test]
    fn routing_follows_mention_then_binding_then_default_and_needs_a_grant() {
        use IntegrationType::*;
        let profiles = [
            profile("prof_vzfin", "vzfin", false),
            profile("prof_coding", "coding", true),
        ];
        let fin_bot = surface(Telegram, Scope::Agents, &["prof_vzfin"], Some("prof_vzfin"));
        let shared_bot = surface(Telegram, Scope::All, &[], None);
        let slack = surface(Slack, Scope::All, &[], None);
        let mut off = slack.clone();
        off.enabled = false;
        let gone = surface(Telegram, Scope::All, &[], Some("prof_deleted"));
        let gmail = surface(Gmail, Scope::All, &[], None);

        type Case<'a> = (
            &'a Integration,
            &'a str,
            Result<(&'a str, &'a str), &'a str>,
        );
        let cases: &[Case] = &[
            (&fin_bot, "balance?", Ok(("prof_vzfin", "balance?"))),
            (&fin_bot, "@vzfin: balance?", Ok(("prof_vzfin", "balance?"))),
            (
                &fin_bot,
                "@coding fix the build",
                Err("not granted to profile @coding"),
            ),
            (&shared_bot, "hi", Ok(("prof_coding", "hi"))),
            (&shared_bot, "@vzfin hi", Ok(("prof_vzfin", "hi"))),
            (
                &slack,
                "@nope hi",
                Err("no profile is named @nope; this user's profiles are @vzfin, @coding"),
            ),
            (&off, "hi", Err("disabled")),
            (&gone, "hi", Err("no longer exists")),
            (&gmail, "hi", Err("only slack and telegram")),
        ];
        for (integration, text, expected) in cases {
            let got = decide(integration, &profiles, text);
            match (got, expected) {
                (Ok(r), Ok((p, t))) => {
                    assert_eq!((r.profile_id.as_str(), r.text.as_str()), (*p, *t), "{text}")
                }
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{text}: {e}"),
                (got, _) => panic!("{text}: unexpected {got:?}"),
            }
        }
        // Without a default profile, the oldest one is the default.
        let no_default = [
            profile("prof_a", "aa", false),
            profile("prof_b", "bbb", false),
        ];
        assert_eq!(
            decide(&shared_bot, &no_default, "x").unwrap().profile_id,
            "prof_a"
        );
        assert!(matches!(
            decide(&shared_bot, &[], "x"),
            Err(RouteError::NoProfile)
        ));
    }
}
