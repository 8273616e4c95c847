//! The scope rules: what a scope change may hold, and what a grant is.
//!
//! Pure functions, so the rules read as one table; the store calls
//! [`normalize`] inside every write that touches a scope, and every reader of
//! a secret calls [`is_granted`].

use std::fmt;

use crate::{Integration, Profile, Scope};

/// Why a scope change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// `agents` with no profile at all.
    NoProfiles,
    /// A listed id is not a profile of the integration's user.
    ProfileNotFound(String),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProfiles => f.write_str(
                "scope 'agents' needs at least one profile id (use scope 'all' to grant every profile)",
            ),
            Self::ProfileNotFound(id) => write!(
                f,
                "profile '{}' is not one of this user's profiles",
                id.escape_debug()
            ),
        }
    }
}

impl std::error::Error for ScopeError {}

/// The `profile_ids` to store for a scope change: `all` clears them; `agents`
/// needs a non-empty list of the user's own profiles, kept in order with
/// duplicates removed.
pub fn normalize(
    scope: Scope,
    requested: &[String],
    user_profiles: &[Profile],
) -> Result<Vec<String>, ScopeError> {
    if scope == Scope::All {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = Vec::with_capacity(requested.len());
    for id in requested {
        if !user_profiles.iter().any(|p| &p.id == id) {
            return Err(ScopeError::ProfileNotFound(id.clone()));
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if ids.is_empty() {
        return Err(ScopeError::NoProfiles);
    }
    Ok(ids)
}

/// The scope a partial change asks for, to [`normalize`] next; `None` when
/// it changes neither. A missing half is the row's current value, except
/// that a list given alone means `agents` (on an `all` row too).
pub fn merge<'a>(
    current: (Scope, &'a [String]),
    scope: Option<Scope>,
    profile_ids: Option<&'a [String]>,
) -> Option<(Scope, &'a [String])> {
    match (scope, profile_ids) {
        (None, None) => None,
        (Some(scope), ids) => Some((scope, ids.unwrap_or(current.1))),
        (None, Some(ids)) => Some((Scope::Agents, ids)),
    }
}

/// Whether a row of `scope` and `profile_ids` reaches `profile_id`. Only half
/// of a grant: the callers also check that the profile is alive and of the
/// row's user.
pub fn reaches(scope: Scope, profile_ids: &[String], profile_id: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Agents => profile_ids.iter().any(|p| p == profile_id),
    }
}

/// Whether `integration` may be used by the running `profile`: the profile
/// exists (`None` is a deleted or unknown profile, which grants nothing),
/// belongs to the integration's user, the integration is enabled, and the
/// scope is `all` or lists the profile.
pub fn is_granted(integration: &Integration, profile: Option<&Profile>) -> bool {
    let Some(profile) = profile else {
        return false;
    };
    profile.user_id == integration.user_id
        && integration.enabled
        && reaches(integration.scope, &integration.profile_ids, &profile.id)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{IntegrationType, SealedConfig, Status};

    pub(crate) fn profile(id: &str, user: &str) -> Profile {
        Profile {
            id: id.into(),
            user_id: user.into(),
            slug: id.trim_start_matches("prof_").into(),
            name: id.into(),
            is_default: false,
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    pub(crate) fn integration(
        id: &str,
        kind: IntegrationType,
        scope: Scope,
        ids: &[&str],
    ) -> Integration {
        Integration {
            id: id.into(),
            user_id: "u1".into(),
            kind,
            external_id: None,
            label: id.into(),
            sealed: SealedConfig(String::new()),
            enabled: true,
            is_default: false,
            scope,
            profile_ids: ids.iter().map(|s| s.to_string()).collect(),
            bound_profile_id: None,
            status: Status::Active,
            status_note: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalize_follows_every_rule() {
        let mine = [profile("prof_a", "u1"), profile("prof_b", "u1")];
        type Case<'a> = (Scope, &'a [&'a str], Result<&'a [&'a str], ScopeError>);
        let cases: &[Case] = &[
            (Scope::All, &[], Ok(&[])),
            (Scope::All, &["prof_a", "prof_zzz"], Ok(&[])),
            (Scope::Agents, &["prof_a"], Ok(&["prof_a"])),
            (
                Scope::Agents,
                &["prof_b", "prof_a", "prof_b"],
                Ok(&["prof_b", "prof_a"]),
            ),
            (Scope::Agents, &[], Err(ScopeError::NoProfiles)),
            (
                Scope::Agents,
                &["prof_a", "prof_other_user"],
                Err(ScopeError::ProfileNotFound("prof_other_user".into())),
            ),
        ];
        for (scope, requested, expected) in cases {
            let got = normalize(*scope, &strings(requested), &mine);
            let expected = expected.clone().map(strings);
            assert_eq!(got, expected, "{scope:?} {requested:?}");
        }
    }

    #[test]
    fn a_partial_scope_change_merges_with_the_current_value() {
        let current_ids = strings(&["prof_a"]);
        let asked = strings(&["prof_b"]);
        type Case<'a> = (
            (Scope, &'a [String]),
            Option<Scope>,
            Option<&'a [String]>,
            Option<(Scope, &'a [String])>,
        );
        let cases: &[Case] = &[
            ((Scope::Agents, &current_ids), None, None, None),
            (
                (Scope::Agents, &current_ids),
                Some(Scope::All),
                None,
                Some((Scope::All, &current_ids)),
            ),
            (
                (Scope::All, &[]),
                Some(Scope::Agents),
                None,
                Some((Scope::Agents, &[])),
            ),
            (
                (Scope::All, &[]),
                None,
                Some(&asked),
                Some((Scope::Agents, &asked)),
            ),
            (
                (Scope::Agents, &current_ids),
                None,
                Some(&asked),
                Some((Scope::Agents, &asked)),
            ),
            (
                (Scope::Agents, &current_ids),
                Some(Scope::All),
                Some(&asked),
                Some((Scope::All, &asked)),
            ),
        ];
        for (current, scope, ids, expected) in cases {
            assert_eq!(
                merge(*current, *scope, *ids),
                *expected,
                "{current:?} {scope:?} {ids:?}"
            );
        }
        // `all` clears whatever ids came with it.
        let all = merge((Scope::Agents, &current_ids), Some(Scope::All), None).unwrap();
        assert_eq!(normalize(all.0, all.1, &[]), Ok(vec![]));
    }

    #[test]
    fn grant_needs_enabled_scope_and_a_living_profile_of_the_same_user() {
        let a = profile("prof_a", "u1");
        let b = profile("prof_b", "u1");
        let stranger = profile("prof_a", "u2");
        let all = integration("int_all", IntegrationType::Slack, Scope::All, &[]);
        let only_a = integration("int_a", IntegrationType::Teller, Scope::Agents, &["prof_a"]);
        let mut disabled = all.clone();
        disabled.enabled = false;
        let emptied = integration("int_e", IntegrationType::Teller, Scope::Agents, &[]);

        let cases: &[(&Integration, Option<&Profile>, bool)] = &[
            (&all, Some(&a), true),
            (&all, Some(&b), true),
            (&all, None, false),
            (&all, Some(&stranger), false),
            (&only_a, Some(&a), true),
            (&only_a, Some(&b), false),
            (&only_a, None, false),
            (&only_a, Some(&stranger), false),
            (&disabled, Some(&a), false),
            (&emptied, Some(&a), false),
        ];
        for (integration, profile, expected) in cases {
            assert_eq!(
                is_granted(integration, *profile),
                *expected,
                "{} for {:?}",
                integration.id,
                profile.map(|p| (&p.id, &p.user_id))
            );
        }
    }
}
