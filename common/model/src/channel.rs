//! Notification channels: parsing the `channel` argument and choosing the
//! integration it names among those granted to the running profile.

use std::fmt;

use crate::scope::is_granted;
use crate::{Integration, IntegrationType, Profile};

const VALID_FORMS: &str = "use slack, telegram, email or webhook, or <type>:<integration_id> \
     such as telegram:int_..., or omit it for the default channel";

/// What a `channel` value asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRequest {
    /// Omitted: the user's default channel among the granted ones.
    Default,
    /// A bare type: the default integration of that type.
    Type(IntegrationType),
    /// `<type>:<integration_id>`: that very integration.
    Integration(IntegrationType, String),
}

/// Why a channel could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The value is not one of the valid forms.
    Invalid(String),
    /// The profile is granted no notification channel at all.
    NoneGranted,
    /// Nothing granted matches; an out-of-scope id reads exactly like an unknown one.
    NotAvailable(String),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(value) => {
                write!(
                    f,
                    "invalid channel '{}': {VALID_FORMS}",
                    value.escape_debug()
                )
            }
            Self::NoneGranted => f.write_str(
                "no notification channel is connected for this agent: connect Slack, Telegram, \
                 Email or a Webhook in Settings → Integrations and grant it to this agent",
            ),
            Self::NotAvailable(value) => write!(
                f,
                "channel '{}' is not available to this agent: use one of its granted channels \
                 or grant it in Settings → Integrations",
                value.escape_debug()
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

impl fmt::Display for ChannelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Type(kind) => f.write_str(kind.as_str()),
            Self::Integration(kind, id) => write!(f, "{kind}:{id}"),
        }
    }
}

/// Parses a `channel` value; `None` or a blank value asks for the default.
pub fn parse(value: Option<&str>) -> Result<ChannelRequest, ChannelError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(ChannelRequest::Default);
    };
    let invalid = || ChannelError::Invalid(value.to_string());
    let (kind, id) = match value.split_once(':') {
        Some((kind, id)) => (kind, Some(id)),
        None => (value, None),
    };
    let kind: IntegrationType = kind.parse().map_err(|_| invalid())?;
    if !kind.is_channel() {
        return Err(invalid());
    }
    match id {
        None => Ok(ChannelRequest::Type(kind)),
        Some(id) if is_integration_id(id) => Ok(ChannelRequest::Integration(kind, id.to_string())),
        Some(_) => Err(invalid()),
    }
}

fn is_integration_id(id: &str) -> bool {
    id.strip_prefix("int_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// The channel string that names `integration`: `telegram:<id>` for a bot
/// (a user may have several), the bare type otherwise.
pub fn channel_string(integration: &Integration) -> String {
    match integration.kind {
        IntegrationType::Telegram => format!("telegram:{}", integration.id),
        kind => kind.as_str().to_string(),
    }
}

/// Chooses the integration for `request` among `candidates` (the user's
/// integrations, oldest first), considering only those granted to `profile`.
///
/// A Telegram bot bound to another profile speaks for that profile: it is
/// never chosen by default or by a bare `telegram`, only when named.
///
/// - Default: the user's default channel, else the first granted one.
/// - A bare type: the default of that type, else the oldest; for Telegram the
///   bot bound to the running profile first, then unbound bots.
/// - `<type>:<id>`: that integration, if it is of that type and granted.
pub fn select<'a>(
    request: &ChannelRequest,
    candidates: &'a [Integration],
    profile: Option<&Profile>,
) -> Result<&'a Integration, ChannelError> {
    let granted: Vec<&Integration> = candidates
        .iter()
        .filter(|i| i.kind.is_channel() && is_granted(i, profile))
        .collect();
    if granted.is_empty() {
        return Err(ChannelError::NoneGranted);
    }
    let running = profile.map(|p| p.id.as_str());
    let bound_here =
        |i: &Integration| i.bound_profile_id.is_some() && i.bound_profile_id.as_deref() == running;
    let speaks_for_us = |i: &&Integration| i.bound_profile_id.is_none() || bound_here(i);
    let default_first = |of: Vec<&'a Integration>| -> Option<&'a Integration> {
        of.iter().find(|i| i.is_default).or(of.first()).copied()
    };
    let found = match request {
        ChannelRequest::Default => {
            default_first(granted.into_iter().filter(speaks_for_us).collect())
        }
        ChannelRequest::Integration(kind, id) => {
            granted.into_iter().find(|i| i.kind == *kind && &i.id == id)
        }
        ChannelRequest::Type(kind) => {
            let (here, others): (Vec<_>, Vec<_>) = granted
                .into_iter()
                .filter(|i| i.kind == *kind)
                .filter(speaks_for_us)
                .partition(|i| bound_here(i));
            default_first(here).or_else(|| default_first(others))
        }
    };
    found.ok_or_else(|| ChannelError::NotAvailable(request.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;
    use crate::scope::tests::{integration, profile};
    use IntegrationType::*;

    #[test]
    fn parse_accepts_the_documented_forms_and_nothing_else() {
        let ok: &[(Option<&str>, ChannelRequest)] = &[
            (None, ChannelRequest::Default),
            (Some(""), ChannelRequest::Default),
            (Some("  "), ChannelRequest::Default),
            (Some("slack"), ChannelRequest::Type(Slack)),
            (Some("telegram"), ChannelRequest::Type(Telegram)),
            (Some("email"), ChannelRequest::Type(Email)),
            (Some("webhook"), ChannelRequest::Type(Webhook)),
            (
                Some("telegram:int_abc-DEF_123"),
                ChannelRequest::Integration(Telegram, "int_abc-DEF_123".into()),
            ),
            (
                Some("slack:int_x"),
                ChannelRequest::Integration(Slack, "int_x".into()),
            ),
        ];
        for (input, expected) in ok {
            assert_eq!(parse(*input).as_ref(), Ok(expected), "{input:?}");
        }
        for bad in [
            "sms",
            "gmail",
            "teller",
            "teller:int_x",
            "Slack",
            "telegram:",
            "telegram:123",
            "telegram:int_",
            "telegram:int_a b",
            "telegram:int_x:y",
            ":int_x",
        ] {
            let err = parse(Some(bad)).unwrap_err();
            assert_eq!(err, ChannelError::Invalid(bad.into()));
            let text = err.to_string();
            assert!(text.contains("slack, telegram, email or webhook"), "{text}");
            assert!(text.contains("telegram:int_"), "{text}");
        }
    }

    fn bot(id: &str, bound: Option<&str>, scope: Scope, ids: &[&str]) -> Integration {
        let mut i = integration(id, Telegram, scope, ids);
        i.bound_profile_id = bound.map(Into::into);
        i
    }

    #[test]
    fn select_picks_per_the_rules_among_granted_only() {
        let fin = profile("prof_vzfin", "u1");
        let coding = profile("prof_coding", "u1");
        let slack = integration("int_slack", Slack, Scope::All, &[]);
        let shared_bot = bot("int_shared", None, Scope::All, &[]);
        let fin_bot = bot(
            "int_finbot",
            Some("prof_vzfin"),
            Scope::Agents,
            &["prof_vzfin"],
        );
        let mut email = integration("int_email", Email, Scope::All, &[]);
        email.is_default = true;
        let mut webhook_off = integration("int_hook", Webhook, Scope::All, &[]);
        webhook_off.enabled = false;
        let teller = integration("int_teller", Teller, Scope::All, &[]);
        let all = vec![teller, slack, shared_bot, fin_bot, email, webhook_off];

        let cases: &[(&str, &Profile, Result<&str, ChannelError>)] = &[
            ("", &fin, Ok("int_email")),
            ("", &coding, Ok("int_email")),
            ("slack", &coding, Ok("int_slack")),
            ("telegram", &fin, Ok("int_finbot")),
            ("telegram", &coding, Ok("int_shared")),
            ("telegram:int_finbot", &fin, Ok("int_finbot")),
            (
                "telegram:int_finbot",
                &coding,
                Err(ChannelError::NotAvailable("telegram:int_finbot".into())),
            ),
            (
                "telegram:int_nonexistent",
                &coding,
                Err(ChannelError::NotAvailable(
                    "telegram:int_nonexistent".into(),
                )),
            ),
            (
                "slack:int_email",
                &coding,
                Err(ChannelError::NotAvailable("slack:int_email".into())),
            ),
            (
                "webhook",
                &fin,
                Err(ChannelError::NotAvailable("webhook".into())),
            ),
        ];
        for (input, who, expected) in cases {
            let request = parse(Some(input)).unwrap();
            let got = select(&request, &all, Some(who)).map(|i| i.id.as_str());
            assert_eq!(got, expected.clone(), "{input} for {}", who.id);
        }
    }

    #[test]
    fn default_falls_back_to_the_first_granted_channel_never_a_data_source() {
        let p = profile("prof_a", "u1");
        let all = vec![
            integration("int_teller", Teller, Scope::All, &[]),
            integration("int_gmail", Gmail, Scope::All, &[]),
            integration("int_hook", Webhook, Scope::All, &[]),
            integration("int_slack", Slack, Scope::All, &[]),
        ];
        let got = select(&ChannelRequest::Default, &all, Some(&p)).unwrap();
        assert_eq!(got.id, "int_hook");
    }

    #[test]
    fn the_default_must_be_granted_and_a_bare_type_prefers_its_default() {
        let coding = profile("prof_coding", "u1");
        let mut fin_slack = integration("int_fin_slack", Slack, Scope::Agents, &["prof_vzfin"]);
        fin_slack.is_default = true;
        let hook = integration("int_hook", Webhook, Scope::All, &[]);
        let bot_elsewhere = bot("int_finbot", Some("prof_vzfin"), Scope::All, &[]);
        let old_email = integration("int_email_old", Email, Scope::All, &[]);
        let mut new_email = integration("int_email_new", Email, Scope::All, &[]);
        new_email.is_default = true;
        let mut all = vec![bot_elsewhere, fin_slack, hook, old_email];
        // The user's default is not granted to coding; a bot bound to the finance
        // profile is granted but speaks for it; so the first granted channel wins.
        assert_eq!(
            select(&ChannelRequest::Default, &all, Some(&coding))
                .unwrap()
                .id,
            "int_hook"
        );
        assert_eq!(
            select(&ChannelRequest::Type(Email), &all, Some(&coding))
                .unwrap()
                .id,
            "int_email_old"
        );
        all.push(new_email);
        assert_eq!(
            select(&ChannelRequest::Type(Email), &all, Some(&coding))
                .unwrap()
                .id,
            "int_email_new"
        );
        assert_eq!(
            select(&ChannelRequest::Default, &all, Some(&coding))
                .unwrap()
                .id,
            "int_email_new"
        );
    }

    #[test]
    fn a_bot_bound_elsewhere_is_never_the_bare_telegram_choice() {
        let coding = profile("prof_coding", "u1");
        let all = vec![bot("int_finbot", Some("prof_vzfin"), Scope::All, &[])];
        let err = select(&ChannelRequest::Type(Telegram), &all, Some(&coding)).unwrap_err();
        assert_eq!(err, ChannelError::NotAvailable("telegram".into()));
        // Named explicitly and granted, it may still be used.
        let named = ChannelRequest::Integration(Telegram, "int_finbot".into());
        assert!(select(&named, &all, Some(&coding)).is_ok());
    }

    #[test]
    fn nothing_granted_or_a_deleted_profile_says_to_connect_a_channel() {
        let p = profile("prof_a", "u1");
        let only_other = vec![integration("int_s", Slack, Scope::Agents, &["prof_b"])];
        for (candidates, who) in [(&only_other, Some(&p)), (&vec![], Some(&p))] {
            let err = select(&ChannelRequest::Default, candidates, who).unwrap_err();
            assert_eq!(err, ChannelError::NoneGranted);
            assert!(err.to_string().contains("Settings → Integrations"));
        }
        let all = vec![integration("int_s", Slack, Scope::All, &[])];
        assert_eq!(
            select(&ChannelRequest::Default, &all, None).unwrap_err(),
            ChannelError::NoneGranted
        );
    }

    #[test]
    fn channel_strings_name_bots_by_id() {
        let b = bot("int_b", None, Scope::All, &[]);
        let s = integration("int_s", Slack, Scope::All, &[]);
        assert_eq!(channel_string(&b), "telegram:int_b");
        assert_eq!(channel_string(&s), "slack");
    }
}
