//! One user's profiles and integrations in a single round trip: what the
//! resolver plans from, and what a sidecar re-checks on every call.

use model::{Integration, IntegrationType, Profile};

use super::rows::{IntegrationRow, ProfileRow, integrations, profiles};
use super::{Backend, Store, StoreError};

/// A user's profiles and integrations (of one type, when asked), oldest first,
/// read together so that the grant check sees one consistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub profiles: Vec<Profile>,
    pub integrations: Vec<Integration>,
}

impl Snapshot {
    /// The profile `id`, if it is one of this user's.
    pub fn profile(&self, id: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }
}

// Each backend aggregates both lists into JSON in one statement, so the whole
// snapshot crosses the connection as one row. The rows are put in order after
// decoding: a sort inside SQLite's aggregate costs more than the whole read.
const SQLITE: &str = "SELECT \
    (SELECT json_group_array(json_object('id', id, 'user_id', user_id, 'slug', slug, 'name', name, \
        'is_default', json(CASE WHEN is_default THEN 'true' ELSE 'false' END), 'created_at', created_at) \
       ) FROM profiles WHERE user_id = $1), \
    (SELECT json_group_array(json_object('id', id, 'user_id', user_id, 'type', type, 'external_id', external_id, \
        'label', label, 'encrypted_config', encrypted_config, \
        'enabled', json(CASE WHEN enabled THEN 'true' ELSE 'false' END), \
        'is_default', json(CASE WHEN is_default THEN 'true' ELSE 'false' END), \
        'scope', scope, 'profile_ids', json(profile_ids), 'bound_profile_id', bound_profile_id, \
        'status', status, 'created_at', created_at, 'updated_at', updated_at, \
        'status_reason', status_reason, 'status_detail', status_detail, 'status_since', status_since)) \
        FROM user_integrations WHERE user_id = $1 AND ($2 IS NULL OR type = $2))";

/// The PostgreSQL snapshot statement, its user and type parameters named
/// (so that it can follow other parameters in one statement).
macro_rules! postgres_snapshot {
    ($user:literal, $kind:literal) => {
        concat!(
            "SELECT \
            (SELECT coalesce(json_agg(json_build_object('id', id, 'user_id', user_id, 'slug', slug, 'name', name, \
                'is_default', is_default, 'created_at', created_at)), '[]')::text \
                FROM profiles WHERE user_id = ", $user, "), \
            (SELECT coalesce(json_agg(json_build_object('id', id, 'user_id', user_id, 'type', type, 'external_id', external_id, \
                'label', label, 'encrypted_config', encrypted_config, 'enabled', enabled, 'is_default', is_default, \
                'scope', scope, 'profile_ids', profile_ids::json, 'bound_profile_id', bound_profile_id, \
                'status', status, 'created_at', created_at, 'updated_at', updated_at, \
                'status_reason', status_reason, 'status_detail', status_detail, 'status_since', status_since)), '[]')::text \
                FROM user_integrations WHERE user_id = ", $user, " AND (", $kind, "::text IS NULL OR type = ", $kind, "))"
        )
    };
}
pub(crate) use postgres_snapshot;

const POSTGRES: &str = postgres_snapshot!("$1", "$2");

impl Store {
    /// The user's profiles and integrations (only of `kind`, when given), in
    /// one indexed read.
    pub async fn snapshot(
        &self,
        user_id: &str,
        kind: Option<IntegrationType>,
    ) -> Result<Snapshot, StoreError> {
        let kind = kind.map(IntegrationType::as_str);
        let (profiles_json, integrations_json): (String, String) = match &*self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as(SQLITE)
                    .bind(user_id)
                    .bind(kind)
                    .fetch_one(pool)
                    .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(POSTGRES)
                    .bind(user_id)
                    .bind(kind)
                    .fetch_one(pool)
                    .await?
            }
        };
        Snapshot::from_json(user_id, &profiles_json, &integrations_json)
    }
}

impl Snapshot {
    /// Decodes the two JSON arrays the snapshot statement returns.
    pub(crate) fn from_json(
        user_id: &str,
        profiles_json: &str,
        integrations_json: &str,
    ) -> Result<Self, StoreError> {
        let unreadable = |e: serde_json::Error| {
            StoreError::Invalid(format!("unreadable snapshot of user {user_id}: {e}"))
        };
        Self::from_rows(
            serde_json::from_str(profiles_json).map_err(unreadable)?,
            serde_json::from_str(integrations_json).map_err(unreadable)?,
        )
    }

    /// The snapshot of these rows, each list oldest first.
    pub(crate) fn from_rows(
        profile_rows: Vec<ProfileRow>,
        integration_rows: Vec<IntegrationRow>,
    ) -> Result<Self, StoreError> {
        let mut snapshot = Self {
            profiles: profiles(profile_rows),
            integrations: integrations(integration_rows)?,
        };
        snapshot
            .profiles
            .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        snapshot
            .integrations
            .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(snapshot)
    }
}
