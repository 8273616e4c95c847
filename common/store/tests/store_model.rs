//! A random-model test of the store: random profiles, integrations, scopes,
//! enabled flags, defaults, bindings and deletions for two users, with grant
//! queries and channel choices in between. After every step the store's
//! answers (what it refused, the snapshots the resolver and the sidecars
//! read, the sidecars' grant check, the channel chosen) equal those of a
//! reference model written here from the rules of docs/rules.md ("Rows",
//! "Scope and grants", "Channels"), not from the code.
//!
//! Runs on a fresh SQLite file, and on a fresh PostgreSQL database when
//! `INTEGRATIONS_TEST_POSTGRES` is set. Each case works in ids of its own
//! (`c<n>u0`, `c<n>p3`) in the one database of its backend.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use model::Identity;
use model::channel::{self, ChannelError};
use model::config::{DecryptedConfig, ValidConfig};
use model::scope::ScopeError;
use model::{Integration, IntegrationType, Profile, Scope};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use store::SidecarStore;
use store::{IntegrationUpdate, NewIntegration, NewProfile, Snapshot, Store, StoreError};
use vault::Keyring;
use zeroize::Zeroizing;

mod support;

/// Cases per backend, each up to [`MAX_STEPS`] steps.
const CASES: u32 = 64;
const MAX_STEPS: usize = 50;
/// Profile ids `p0`..`p5` and slugs `s0`..`s2`: few, so that ids of the
/// other user, deleted ids and slug clashes come up often.
const PROFILE_IDS: u8 = 6;
const SLUGS: u8 = 3;
/// A well-formed integration id that never exists.
const MISSING: &str = "int_000000000000000000000";

use IntegrationType::{Email, Gmail, Slack, Telegram, Teller, Webhook};

// ---- the rules, from docs/rules.md -------------------------------------------

/// "a bare type (`slack`, `telegram`, `email`, `webhook`)": the channels.
fn is_channel(kind: IntegrationType) -> bool {
    matches!(kind, Slack | Telegram | Email | Webhook)
}

/// "Only `telegram` and `teller` may have several rows per user".
fn many_per_user(kind: IntegrationType) -> bool {
    matches!(kind, Telegram | Teller)
}

fn name(kind: IntegrationType) -> &'static str {
    match kind {
        Slack => "slack",
        Telegram => "telegram",
        Gmail => "gmail",
        Teller => "teller",
        Email => "email",
        Webhook => "webhook",
    }
}

/// How a change was refused, as the model tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChangeRefusal {
    Invalid,
    Conflict,
    NotFound,
    NoProfiles,
    ProfileNotFound(String),
}

fn refusal(e: StoreError) -> ChangeRefusal {
    match e {
        StoreError::Invalid(_) => ChangeRefusal::Invalid,
        StoreError::Conflict(_) => ChangeRefusal::Conflict,
        StoreError::NotFound { .. } => ChangeRefusal::NotFound,
        StoreError::Scope(ScopeError::NoProfiles) => ChangeRefusal::NoProfiles,
        StoreError::Scope(ScopeError::ProfileNotFound(id)) => ChangeRefusal::ProfileNotFound(id),
        other => panic!("the store failed: {other}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MProfile {
    id: String,
    user: String,
    slug: String,
    is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MIntegration {
    id: String,
    user: String,
    kind: IntegrationType,
    enabled: bool,
    is_default: bool,
    scope: Scope,
    profile_ids: Vec<String>,
    bound: Option<String>,
}

/// A change of one integration; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
struct Change {
    enabled: Option<bool>,
    scope: Option<Scope>,
    profile_ids: Option<Vec<String>>,
    is_default: Option<bool>,
    bound: Option<Option<String>>,
}

/// The store as docs/rules.md describes it: both lists in creation order.
#[derive(Debug, Default)]
struct Model {
    profiles: Vec<MProfile>,
    integrations: Vec<MIntegration>,
}

impl Model {
    fn owns(&self, user: &str, profile: &str) -> bool {
        self.profiles
            .iter()
            .any(|p| p.user == user && p.id == profile)
    }

    /// "`scope=all` clears `profile_ids`. `scope=agents` needs a non-empty
    /// list; ids are de-duplicated; every id must be a profile of the same
    /// user".
    fn scope_ids(
        &self,
        user: &str,
        scope: Scope,
        asked: &[String],
    ) -> Result<Vec<String>, ChangeRefusal> {
        if scope == Scope::All {
            return Ok(vec![]);
        }
        let mut ids: Vec<String> = vec![];
        for id in asked {
            if !self.owns(user, id) {
                return Err(ChangeRefusal::ProfileNotFound(id.clone()));
            }
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        if ids.is_empty() {
            return Err(ChangeRefusal::NoProfiles);
        }
        Ok(ids)
    }

    /// A bot speaks for its bound profile, so an `agents` scope must list it
    /// while that profile exists.
    fn check_binding(
        &self,
        user: &str,
        bound: &str,
        scope: Scope,
        ids: &[String],
    ) -> Result<(), ChangeRefusal> {
        if self.owns(user, bound) && scope == Scope::Agents && !ids.iter().any(|p| p == bound) {
            return Err(ChangeRefusal::Invalid);
        }
        Ok(())
    }

    fn clear_defaults(&mut self, user: &str) {
        for i in self.integrations.iter_mut().filter(|i| i.user == user) {
            i.is_default = false;
        }
    }

    /// Profile ids are unique; slugs unique per user; one default per user.
    fn add_profile(&mut self, p: MProfile) -> Result<(), ChangeRefusal> {
        if self
            .profiles
            .iter()
            .any(|q| q.id == p.id || (q.user == p.user && q.slug == p.slug))
        {
            return Err(ChangeRefusal::Conflict);
        }
        if p.is_default {
            for q in self.profiles.iter_mut().filter(|q| q.user == p.user) {
                q.is_default = false;
            }
        }
        self.profiles.push(p);
        Ok(())
    }

    /// A deleted profile leaves every `profile_ids` of its user.
    fn remove_profile(&mut self, user: &str, id: &str) -> Result<(), ChangeRefusal> {
        let at = self
            .profiles
            .iter()
            .position(|p| p.user == user && p.id == id)
            .ok_or(ChangeRefusal::NotFound)?;
        self.profiles.remove(at);
        for i in self.integrations.iter_mut().filter(|i| i.user == user) {
            i.profile_ids.retain(|p| p != id);
        }
        Ok(())
    }

    /// The row to insert, or why not: the request itself, then the scope,
    /// then the binding, then one-per-user.
    fn add_integration(&self, new: &NewIntegration) -> Result<MIntegration, ChangeRefusal> {
        let user = new.user_id.as_str();
        if new.bound_profile_id.is_some() && new.kind != Telegram {
            return Err(ChangeRefusal::Invalid);
        }
        if new.is_default && !is_channel(new.kind) {
            return Err(ChangeRefusal::Invalid);
        }
        let ids = self.scope_ids(user, new.scope, &new.profile_ids)?;
        if let Some(bound) = &new.bound_profile_id {
            if !self.owns(user, bound) {
                return Err(ChangeRefusal::ProfileNotFound(bound.clone()));
            }
            self.check_binding(user, bound, new.scope, &ids)?;
        }
        if !many_per_user(new.kind)
            && self
                .integrations
                .iter()
                .any(|i| i.user == user && i.kind == new.kind)
        {
            return Err(ChangeRefusal::Conflict);
        }
        Ok(MIntegration {
            id: String::new(),
            user: user.into(),
            kind: new.kind,
            enabled: true,
            is_default: new.is_default,
            scope: new.scope,
            profile_ids: ids,
            bound: new.bound_profile_id.clone(),
        })
    }

    fn insert(&mut self, row: MIntegration) {
        if row.is_default {
            self.clear_defaults(&row.user);
        }
        self.integrations.push(row);
    }

    fn owner(&self, id: &str) -> Option<String> {
        self.integrations
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.user.clone())
    }

    /// A change of the row `id` of `user`: another user's row is missing.
    /// A scope or a list given alone keeps the other half, except that a list
    /// alone means `agents`.
    fn change(&mut self, user: &str, id: &str, change: &Change) -> Result<(), ChangeRefusal> {
        let current = self
            .integrations
            .iter()
            .find(|i| i.id == id && i.user == user)
            .ok_or(ChangeRefusal::NotFound)?
            .clone();
        if change.is_default == Some(true) && !is_channel(current.kind) {
            return Err(ChangeRefusal::Invalid);
        }
        let mut bound = current.bound.clone();
        if let Some(asked) = &change.bound {
            if let Some(profile) = asked {
                if current.kind != Telegram {
                    return Err(ChangeRefusal::Invalid);
                }
                if !self.owns(user, profile) {
                    return Err(ChangeRefusal::ProfileNotFound(profile.clone()));
                }
            }
            bound = asked.clone();
        }
        let (scope, ids) = match (change.scope, &change.profile_ids) {
            (None, None) => (current.scope, current.profile_ids.clone()),
            (Some(scope), ids) => {
                let ids = ids.as_ref().unwrap_or(&current.profile_ids);
                (scope, self.scope_ids(user, scope, ids)?)
            }
            (None, Some(ids)) => (Scope::Agents, self.scope_ids(user, Scope::Agents, ids)?),
        };
        let touches_profiles = change.scope.is_some()
            || change.profile_ids.is_some()
            || matches!(change.bound, Some(Some(_)));
        if let Some(bound) = &bound
            && touches_profiles
        {
            self.check_binding(user, bound, scope, &ids)?;
        }
        if change.is_default == Some(true) {
            self.clear_defaults(user);
        }
        let row = self
            .integrations
            .iter_mut()
            .find(|i| i.id == id)
            .expect("found above");
        row.scope = scope;
        row.profile_ids = ids;
        row.bound = bound;
        row.enabled = change.enabled.unwrap_or(row.enabled);
        row.is_default = change.is_default.unwrap_or(row.is_default);
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<(), ChangeRefusal> {
        let at = self
            .integrations
            .iter()
            .position(|i| i.id == id)
            .ok_or(ChangeRefusal::NotFound)?;
        self.integrations.remove(at);
        Ok(())
    }

    /// "Granted to profile P means: `enabled` and (`scope=all` or P in
    /// `profile_ids`). A profile that was deleted grants nothing", nor does
    /// another user's.
    fn granted<'a>(
        &'a self,
        user: &'a str,
        profile: &'a str,
    ) -> impl Iterator<Item = &'a MIntegration> {
        let alive = self.owns(user, profile);
        self.integrations.iter().filter(move |i| {
            alive
                && i.user == user
                && i.enabled
                && (i.scope == Scope::All || i.profile_ids.iter().any(|p| p == profile))
        })
    }

    /// "Channels": only granted integrations are eligible. Omitted: the
    /// user's default among them, else the first; a bare type: its default,
    /// else the oldest, and for `telegram` the bot bound to the running
    /// profile before unbound bots; `<type>:<id>`: that one. A bot bound to
    /// another profile speaks for that one: it is chosen only when named.
    fn channel(&self, user: &str, profile: &str, asked: &Asked) -> Result<String, ChannelError> {
        let request = match asked {
            Asked::Invalid(value) => return Err(ChannelError::Invalid(value.clone())),
            Asked::Request(request) => request,
        };
        let granted: Vec<&MIntegration> = self
            .granted(user, profile)
            .filter(|i| is_channel(i.kind))
            .collect();
        if granted.is_empty() {
            return Err(ChannelError::NoneGranted);
        }
        let ours = |i: &&MIntegration| i.bound.is_none() || i.bound.as_deref() == Some(profile);
        let pick = |of: Vec<&MIntegration>| {
            of.iter()
                .find(|i| i.is_default)
                .or(of.first())
                .map(|i| i.id.clone())
        };
        let (found, shown) = match request {
            Request::Default => (
                pick(granted.into_iter().filter(ours).collect()),
                "default".to_string(),
            ),
            Request::Type(kind) => {
                let of_kind = || {
                    granted
                        .iter()
                        .copied()
                        .filter(|i| i.kind == *kind)
                        .filter(ours)
                };
                let here = of_kind()
                    .filter(|i| i.bound.as_deref() == Some(profile))
                    .collect();
                let unbound = of_kind().filter(|i| i.bound.is_none()).collect();
                (
                    pick(here).or_else(|| pick(unbound)),
                    name(*kind).to_string(),
                )
            }
            Request::Named(kind, id) => (
                granted
                    .iter()
                    .find(|i| i.kind == *kind && i.id == *id)
                    .map(|i| i.id.clone()),
                format!("{}:{id}", name(*kind)),
            ),
        };
        found.ok_or(ChannelError::NotAvailable(shown))
    }
}

/// What a generated channel value asks for, known from how it was made.
#[derive(Debug, Clone)]
enum Asked {
    Invalid(String),
    Request(Request),
}

#[derive(Debug, Clone)]
enum Request {
    Default,
    Type(IntegrationType),
    Named(IntegrationType, String),
}

// ---- the steps ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct ScopeChoice {
    all: bool,
    ids: Vec<u8>,
}

#[derive(Debug, Clone)]
enum ChannelChoice {
    Omitted,
    Blank,
    Bare(IntegrationType),
    Named(IntegrationType, Index),
    Garbage(&'static str),
}

#[derive(Debug, Clone)]
enum Step {
    AddProfile {
        user: u8,
        profile: u8,
        slug: u8,
        is_default: bool,
    },
    RemoveProfile {
        user: u8,
        profile: u8,
    },
    AddIntegration {
        user: u8,
        kind: IntegrationType,
        scope: ScopeChoice,
        is_default: bool,
        bound: Option<u8>,
    },
    /// A PATCH as the owner, or as the other user (`as_other`).
    Update {
        target: Index,
        as_other: bool,
        enabled: Option<bool>,
        scope: Option<bool>,
        profile_ids: Option<Vec<u8>>,
        is_default: Option<bool>,
        bound: Option<Option<u8>>,
    },
    SetScope {
        target: Index,
        scope: ScopeChoice,
    },
    SetDefault {
        target: Index,
    },
    SetEnabled {
        target: Index,
        enabled: bool,
    },
    Delete {
        target: Index,
    },
    /// The sidecars' grant check for every profile id and type, and the
    /// snapshots of each type, of the user.
    Granted {
        user: u8,
    },
    Channel {
        user: u8,
        profile: u8,
        choice: ChannelChoice,
    },
}

fn kind() -> impl Strategy<Value = IntegrationType> {
    proptest::sample::select(IntegrationType::ALL.to_vec())
}

fn ids() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0..PROFILE_IDS, 0..4)
}

fn scope_choice() -> impl Strategy<Value = ScopeChoice> {
    (any::<bool>(), ids()).prop_map(|(all, ids)| ScopeChoice { all, ids })
}

fn channel_choice() -> impl Strategy<Value = ChannelChoice> {
    prop_oneof![
        2 => Just(ChannelChoice::Omitted),
        1 => Just(ChannelChoice::Blank),
        4 => kind().prop_map(ChannelChoice::Bare),
        3 => (kind(), any::<Index>()).prop_map(|(k, i)| ChannelChoice::Named(k, i)),
        1 => proptest::sample::select(vec!["Slack", "sms", "telegram:", "telegram:int_", "telegram:int_a b", "teller:int_x", "telegram:123"])
            .prop_map(ChannelChoice::Garbage),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..2u8;
    let profile = 0..PROFILE_IDS;
    prop_oneof![
        6 => (user.clone(), profile.clone(), 0..SLUGS, proptest::bool::weighted(0.3))
            .prop_map(|(user, profile, slug, is_default)| Step::AddProfile { user, profile, slug, is_default }),
        1 => (user.clone(), profile.clone()).prop_map(|(user, profile)| Step::RemoveProfile { user, profile }),
        6 => (user.clone(), kind(), scope_choice(), proptest::bool::weighted(0.3), proptest::option::weighted(0.3, profile.clone()))
            .prop_map(|(user, kind, scope, is_default, bound)| Step::AddIntegration { user, kind, scope, is_default, bound }),
        3 => (
            any::<Index>(),
            proptest::bool::weighted(0.15),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(ids()),
            proptest::option::of(any::<bool>()),
            proptest::option::weighted(0.3, proptest::option::of(profile.clone())),
        )
            .prop_map(|(target, as_other, enabled, scope, profile_ids, is_default, bound)| Step::Update {
                target, as_other, enabled, scope, profile_ids, is_default, bound,
            }),
        2 => (any::<Index>(), scope_choice()).prop_map(|(target, scope)| Step::SetScope { target, scope }),
        1 => any::<Index>().prop_map(|target| Step::SetDefault { target }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(target, enabled)| Step::SetEnabled { target, enabled }),
        1 => any::<Index>().prop_map(|target| Step::Delete { target }),
        2 => user.clone().prop_map(|user| Step::Granted { user }),
        4 => (user, profile, channel_choice()).prop_map(|(user, profile, choice)| Step::Channel { user, profile, choice }),
    ]
}

// ---- running a case ----------------------------------------------------------

/// Makes every external identity (Slack user, Telegram bot, Gmail address,
/// Teller enrollment) unique in the database.
static EXTERNAL: AtomicU64 = AtomicU64::new(1);

/// What the cases reached, so that a test that never grants or chooses
/// anything does not pass unnoticed: rows written, refusals, non-empty
/// grants, channels chosen.
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static GRANTED: AtomicU64 = AtomicU64::new(0);
static CHOSEN: AtomicU64 = AtomicU64::new(0);

/// Counts a write's outcome.
fn tally<T>(outcome: &Result<T, ChangeRefusal>) {
    let counter = if outcome.is_ok() { &WRITTEN } else { &REFUSED };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn config(kind: IntegrationType) -> ValidConfig {
    let n = EXTERNAL.fetch_add(1, Ordering::Relaxed);
    let json = match kind {
        Slack => {
            format!(r#"{{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U{n}"}}"#)
        }
        Telegram => {
            format!(r#"{{"bot_token":"{n}:AA","bot_user_id":{n},"bot_username":"Bot{n}"}}"#)
        }
        Gmail => format!(r#"{{"email":"a{n}@gmail.com","refresh_token":"1//rt"}}"#),
        Teller => {
            format!(r#"{{"enrollment_id":"enr_{n}","access_token":"t","institution_name":"PNC"}}"#)
        }
        Email => r#"{"api_key":"re_1","from_address":"a@x.io","to_address":"b@x.io"}"#.to_string(),
        Webhook => r#"{"url":"https://hooks.example.com/x"}"#.to_string(),
    };
    DecryptedConfig::validate(kind, Zeroizing::new(json.into_bytes())).unwrap()
}

/// One case: its own ids, the model, and every integration id it created
/// (deleted ones too, for steps that name them).
struct Case<'a> {
    store: &'a Store,
    sidecar: &'a SidecarStore,
    keyring: &'a Keyring,
    ns: String,
    model: Model,
    created: Vec<String>,
}

fn profile_view(p: &Profile) -> MProfile {
    MProfile {
        id: p.id.clone(),
        user: p.user_id.clone(),
        slug: p.slug.clone(),
        is_default: p.is_default,
    }
}

fn integration_view(i: &Integration) -> MIntegration {
    MIntegration {
        id: i.id.clone(),
        user: i.user_id.clone(),
        kind: i.kind,
        enabled: i.enabled,
        is_default: i.is_default,
        scope: i.scope,
        profile_ids: i.profile_ids.clone(),
        bound: i.bound_profile_id.clone(),
    }
}

impl Case<'_> {
    fn user(&self, n: u8) -> String {
        format!("{}u{n}", self.ns)
    }

    fn profile(&self, n: u8) -> String {
        format!("{}p{n}", self.ns)
    }

    fn profiles(&self, ids: &[u8]) -> Vec<String> {
        ids.iter().map(|n| self.profile(*n)).collect()
    }

    /// An integration this case created (maybe deleted since), or one that
    /// never existed.
    fn target(&self, index: &Index) -> String {
        let at = index.index(self.created.len() + 1);
        self.created
            .get(at)
            .cloned()
            .unwrap_or_else(|| MISSING.into())
    }

    /// Runs one step on the store and on the model; what each answers must agree.
    async fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::AddProfile {
                user,
                profile,
                slug,
                is_default,
            } => {
                let new = NewProfile {
                    id: self.profile(*profile),
                    user_id: self.user(*user),
                    slug: format!("s{slug}"),
                    name: None,
                    is_default: *is_default,
                };
                let got = self
                    .store
                    .add_profile(&new)
                    .await
                    .map(|_| ())
                    .map_err(refusal);
                let expected = self.model.add_profile(MProfile {
                    id: new.id,
                    user: new.user_id,
                    slug: new.slug,
                    is_default: new.is_default,
                });
                tally(&got);
                prop_assert_eq!(got, expected);
            }
            Step::RemoveProfile { user, profile } => {
                let (user, profile) = (self.user(*user), self.profile(*profile));
                let got = self
                    .store
                    .remove_profile(&user, &profile)
                    .await
                    .map(|_| ())
                    .map_err(refusal);
                tally(&got);
                prop_assert_eq!(got, self.model.remove_profile(&user, &profile));
            }
            Step::AddIntegration {
                user,
                kind,
                scope,
                is_default,
                bound,
            } => {
                let new = NewIntegration {
                    user_id: self.user(*user),
                    kind: *kind,
                    label: None,
                    is_default: *is_default,
                    scope: if scope.all { Scope::All } else { Scope::Agents },
                    profile_ids: self.profiles(&scope.ids),
                    bound_profile_id: bound.map(|n| self.profile(n)),
                };
                let expected = self.model.add_integration(&new);
                let got = self
                    .store
                    .add_integration(self.keyring, &new, &config(*kind))
                    .await;
                match (got, expected) {
                    (Ok(row), Ok(mut modelled)) => {
                        WRITTEN.fetch_add(1, Ordering::Relaxed);
                        modelled.id = row.id.clone();
                        prop_assert_eq!(integration_view(&row), modelled.clone());
                        self.created.push(row.id);
                        self.model.insert(modelled);
                    }
                    (got, expected) => {
                        prop_assert_eq!(got.map(|r| r.id).map_err(refusal), expected.map(|r| r.id))
                    }
                }
            }
            Step::Update {
                target,
                as_other,
                enabled,
                scope,
                profile_ids,
                is_default,
                bound,
            } => {
                let id = self.target(target);
                let owner = self.model.owner(&id).unwrap_or_else(|| self.user(0));
                let user = if *as_other {
                    if owner == self.user(0) {
                        self.user(1)
                    } else {
                        self.user(0)
                    }
                } else {
                    owner
                };
                let change = Change {
                    enabled: *enabled,
                    scope: scope.map(|all| if all { Scope::All } else { Scope::Agents }),
                    profile_ids: profile_ids.as_deref().map(|ids| self.profiles(ids)),
                    is_default: *is_default,
                    bound: bound.map(|b| b.map(|n| self.profile(n))),
                };
                let update = IntegrationUpdate {
                    enabled: change.enabled,
                    scope: change.scope,
                    profile_ids: change.profile_ids.clone(),
                    is_default: change.is_default,
                    bound_profile_id: change.bound.clone(),
                    ..IntegrationUpdate::default()
                };
                let got = self
                    .store
                    .update_integration(self.keyring, &user, &id, &update)
                    .await
                    .map(|_| ())
                    .map_err(refusal);
                tally(&got);
                prop_assert_eq!(got, self.model.change(&user, &id, &change));
            }
            Step::SetScope { target, scope } => {
                let id = self.target(target);
                let (scope, ids) = (
                    if scope.all { Scope::All } else { Scope::Agents },
                    self.profiles(&scope.ids),
                );
                let got = self
                    .store
                    .set_scope(&id, scope, &ids)
                    .await
                    .map(|_| ())
                    .map_err(refusal);
                let change = Change {
                    scope: Some(scope),
                    profile_ids: Some(ids),
                    ..Change::default()
                };
                tally(&got);
                prop_assert_eq!(got, self.by_owner(&id, &change));
            }
            Step::SetDefault { target } => {
                let id = self.target(target);
                let got = self
                    .store
                    .set_default(&id)
                    .await
                    .map(|_| ())
                    .map_err(refusal);
                let change = Change {
                    is_default: Some(true),
                    ..Change::default()
                };
                tally(&got);
                prop_assert_eq!(got, self.by_owner(&id, &change));
            }
            Step::SetEnabled { target, enabled } => {
                let id = self.target(target);
                let got = self.store.set_enabled(&id, *enabled).await.map_err(refusal);
                let change = Change {
                    enabled: Some(*enabled),
                    ..Change::default()
                };
                tally(&got);
                prop_assert_eq!(got, self.by_owner(&id, &change));
            }
            Step::Delete { target } => {
                let id = self.target(target);
                let got = self.store.delete_integration(&id).await.map_err(refusal);
                tally(&got);
                prop_assert_eq!(got, self.model.delete(&id));
            }
            Step::Granted { user } => {
                for (profile, kind) in
                    (0..PROFILE_IDS).flat_map(|p| IntegrationType::ALL.map(|k| (p, k)))
                {
                    let who = Identity {
                        user_id: self.user(*user),
                        profile_id: self.profile(profile),
                        session_id: None,
                    };
                    let got: Vec<String> = self
                        .sidecar
                        .granted(&who, kind)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|i| i.id)
                        .collect();
                    let expected: Vec<String> = self
                        .model
                        .granted(&who.user_id, &who.profile_id)
                        .filter(|i| i.kind == kind)
                        .map(|i| i.id.clone())
                        .collect();
                    if !got.is_empty() {
                        GRANTED.fetch_add(1, Ordering::Relaxed);
                    }
                    prop_assert_eq!(got, expected, "granted {} to {}", kind, who.profile_id);
                }
                let user = self.user(*user);
                for kind in IntegrationType::ALL {
                    let of_kind = self.store.snapshot(&user, Some(kind)).await.unwrap();
                    let expected: Vec<MIntegration> = self
                        .model
                        .integrations
                        .iter()
                        .filter(|i| i.user == user && i.kind == kind)
                        .cloned()
                        .collect();
                    prop_assert_eq!(
                        of_kind
                            .integrations
                            .iter()
                            .map(integration_view)
                            .collect::<Vec<_>>(),
                        expected
                    );
                }
            }
            Step::Channel {
                user,
                profile,
                choice,
            } => {
                let (user, profile) = (self.user(*user), self.profile(*profile));
                let snapshot = self.store.snapshot(&user, None).await.unwrap();
                let (value, asked) = self.channel_value(choice);
                self.check_channel(&snapshot, &user, &profile, value, &asked)?;
            }
        }
        Ok(())
    }

    /// The channel `value` chosen from `snapshot` of `user` for `profile`
    /// equals the model's choice for what it asks.
    fn check_channel(
        &self,
        snapshot: &Snapshot,
        user: &str,
        profile: &str,
        value: Option<String>,
        asked: &Asked,
    ) -> Result<(), TestCaseError> {
        let got = channel::parse(value.as_deref()).and_then(|request| {
            channel::select(&request, &snapshot.integrations, snapshot.profile(profile))
                .map(|i| i.id.clone())
        });
        if got.is_ok() {
            CHOSEN.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert_eq!(
            got,
            self.model.channel(user, profile, asked),
            "channel {:?} for {}",
            value,
            profile
        );
        Ok(())
    }

    /// Every profile id's channel for the omitted value, each bare type, and
    /// each integration this case created named as `telegram:` and `slack:`.
    fn check_channels(&self, snapshot: &Snapshot, user: &str) -> Result<(), TestCaseError> {
        let mut choices = vec![ChannelChoice::Omitted];
        choices.extend([Slack, Telegram, Email, Webhook].map(ChannelChoice::Bare));
        for profile in 0..PROFILE_IDS {
            let profile = self.profile(profile);
            for choice in &choices {
                let (value, asked) = self.channel_value(choice);
                self.check_channel(snapshot, user, &profile, value, &asked)?;
            }
            for id in &self.created {
                for kind in [Telegram, Slack] {
                    let value = format!("{}:{id}", name(kind));
                    let asked = Asked::Request(Request::Named(kind, id.clone()));
                    self.check_channel(snapshot, user, &profile, Some(value), &asked)?;
                }
            }
        }
        Ok(())
    }

    /// The operator commands act as the row's owner; a missing row is NotFound.
    fn by_owner(&mut self, id: &str, change: &Change) -> Result<(), ChangeRefusal> {
        let owner = self.model.owner(id).ok_or(ChangeRefusal::NotFound)?;
        self.model.change(&owner, id, change)
    }

    /// The `channel` value of a choice, and what it asks for.
    fn channel_value(&self, choice: &ChannelChoice) -> (Option<String>, Asked) {
        match choice {
            ChannelChoice::Omitted => (None, Asked::Request(Request::Default)),
            ChannelChoice::Blank => (Some("  ".into()), Asked::Request(Request::Default)),
            ChannelChoice::Bare(kind) if is_channel(*kind) => (
                Some(format!(" {} ", name(*kind))),
                Asked::Request(Request::Type(*kind)),
            ),
            ChannelChoice::Bare(kind) => {
                (Some(name(*kind).into()), Asked::Invalid(name(*kind).into()))
            }
            ChannelChoice::Named(kind, target) => {
                let value = format!("{}:{}", name(*kind), self.target(target));
                let asked = if is_channel(*kind) {
                    Asked::Request(Request::Named(*kind, self.target(target)))
                } else {
                    Asked::Invalid(value.clone())
                };
                (Some(value), asked)
            }
            ChannelChoice::Garbage(text) => {
                (Some(text.to_string()), Asked::Invalid(text.to_string()))
            }
        }
    }

    /// Both users' snapshots, as the resolver (`Store`) and a sidecar
    /// (`SidecarStore`) read them, equal the model.
    async fn check_snapshots(&self) -> Result<(), TestCaseError> {
        for n in 0..2 {
            let user = self.user(n);
            let profiles: Vec<MProfile> = self
                .model
                .profiles
                .iter()
                .filter(|p| p.user == user)
                .cloned()
                .collect();
            let integrations: Vec<MIntegration> = self
                .model
                .integrations
                .iter()
                .filter(|i| i.user == user)
                .cloned()
                .collect();
            for (reader, snapshot) in [
                ("store", self.store.snapshot(&user, None).await.unwrap()),
                ("sidecar", self.sidecar.snapshot(&user, None).await.unwrap()),
            ] {
                if reader == "store" {
                    self.check_channels(&snapshot, &user)?;
                }
                prop_assert_eq!(
                    snapshot
                        .profiles
                        .iter()
                        .map(profile_view)
                        .collect::<Vec<_>>(),
                    profiles.clone(),
                    "{} profiles of {}",
                    reader,
                    user
                );
                prop_assert_eq!(
                    snapshot
                        .integrations
                        .iter()
                        .map(integration_view)
                        .collect::<Vec<_>>(),
                    integrations.clone(),
                    "{} integrations of {}",
                    reader,
                    user
                );
            }
        }
        Ok(())
    }
}

async fn run_case(
    store: &Store,
    sidecar: &SidecarStore,
    keyring: &Keyring,
    ns: String,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let mut case = Case {
        store,
        sidecar,
        keyring,
        ns,
        model: Model::default(),
        created: vec![],
    };
    for (n, step) in steps.iter().enumerate() {
        case.step(step)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {n} {step:?}: {e}")))?;
        case.check_snapshots()
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {n} {step:?}: {e}")))?;
    }
    Ok(())
}

#[test]
fn the_store_answers_like_the_model_of_the_design() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backends = runtime.block_on(support::backends());
    let keyring = Keyring::parse(&Keyring::generate_entry()).unwrap();
    let mut failures = vec![];
    for b in &backends {
        let sidecar = {
            let _runtime = runtime.enter();
            SidecarStore::open(&b.url, 1).unwrap()
        };
        let cases = Cell::new(0u32);
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let steps = proptest::collection::vec(step(), 1..MAX_STEPS);
        let result = runner.run(&steps, |steps| {
            cases.set(cases.get() + 1);
            let ns = format!("c{}", cases.get());
            runtime.block_on(run_case(&b.store, &sidecar, &keyring, ns, &steps))
        });
        if let Err(e) = result {
            failures.push(format!("{}: {e}", b.name));
        }
    }
    runtime.block_on(support::cleanup(backends));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let reached = [&WRITTEN, &REFUSED, &GRANTED, &CHOSEN].map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "written {}, refused {}, non-empty grants {}, channels chosen {}",
        reached[0], reached[1], reached[2], reached[3]
    );
    assert!(
        reached.iter().all(|n| *n >= u64::from(CASES) / 4),
        "the cases reached too little: {reached:?}"
    );
}
