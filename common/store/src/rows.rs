//! Rows as the store reads them, and their conversion into the model.

use model::{Integration, Profile, SealedConfig, StatusNote};

use super::StoreError;

/// The columns of `user_integrations`, in [`IntegrationRow`] order.
macro_rules! select_integrations {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, type, external_id, label, encrypted_config, enabled, is_default, \
             scope, profile_ids, bound_profile_id, status, created_at, updated_at, \
             status_reason, status_detail, status_since \
             FROM user_integrations ",
            $rest
        )
    };
}
pub(crate) use select_integrations;

/// The columns of `profiles`, in [`ProfileRow`] order.
macro_rules! select_profiles {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, slug, name, is_default, created_at FROM profiles ",
            $rest
        )
    };
}
pub(crate) use select_profiles;

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct IntegrationRow {
    id: String,
    user_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    kind: String,
    external_id: Option<String>,
    label: String,
    encrypted_config: String,
    enabled: bool,
    is_default: bool,
    scope: String,
    /// A JSON array: text from a column, already parsed from a snapshot.
    #[serde(deserialize_with = "json_text")]
    profile_ids: String,
    bound_profile_id: Option<String>,
    status: String,
    created_at: String,
    updated_at: String,
    status_reason: Option<String>,
    status_detail: Option<String>,
    status_since: Option<String>,
}

impl TryFrom<IntegrationRow> for Integration {
    type Error = StoreError;

    fn try_from(row: IntegrationRow) -> Result<Self, StoreError> {
        let corrupt = |column: &str| {
            StoreError::Invalid(format!(
                "integration {} has an unreadable {column} column",
                row.id
            ))
        };
        Ok(Integration {
            kind: row.kind.parse().map_err(|_| corrupt("type"))?,
            scope: row.scope.parse().map_err(|_| corrupt("scope"))?,
            status: row.status.parse().map_err(|_| corrupt("status"))?,
            status_note: match row.status_reason {
                Some(reason) => Some(StatusNote {
                    reason: reason.parse().map_err(|_| corrupt("status_reason"))?,
                    detail: row.status_detail.unwrap_or_default(),
                    since: row.status_since.unwrap_or_default(),
                }),
                None => None,
            },
            profile_ids: serde_json::from_str(&row.profile_ids)
                .map_err(|_| corrupt("profile_ids"))?,
            id: row.id,
            user_id: row.user_id,
            external_id: row.external_id,
            label: row.label,
            sealed: SealedConfig::from_stored(row.encrypted_config),
            enabled: row.enabled,
            is_default: row.is_default,
            bound_profile_id: row.bound_profile_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl IntegrationRow {
    /// A row of [`select_integrations!`] as a sidecar's own SQLite
    /// connection reads it.
    pub(crate) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            user_id: row.get(1)?,
            kind: row.get(2)?,
            external_id: row.get(3)?,
            label: row.get(4)?,
            encrypted_config: row.get(5)?,
            enabled: row.get(6)?,
            is_default: row.get(7)?,
            scope: row.get(8)?,
            profile_ids: row.get(9)?,
            bound_profile_id: row.get(10)?,
            status: row.get(11)?,
            created_at: row.get(12)?,
            updated_at: row.get(13)?,
            status_reason: row.get(14)?,
            status_detail: row.get(15)?,
            status_since: row.get(16)?,
        })
    }
}

pub(crate) fn integrations(rows: Vec<IntegrationRow>) -> Result<Vec<Integration>, StoreError> {
    rows.into_iter().map(Integration::try_from).collect()
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ProfileRow {
    id: String,
    user_id: String,
    slug: String,
    name: String,
    is_default: bool,
    created_at: String,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Profile {
            id: row.id,
            user_id: row.user_id,
            slug: row.slug,
            name: row.name,
            is_default: row.is_default,
            created_at: row.created_at,
        }
    }
}

impl ProfileRow {
    /// A row of [`select_profiles!`] as a sidecar's own SQLite connection
    /// reads it.
    pub(crate) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            user_id: row.get(1)?,
            slug: row.get(2)?,
            name: row.get(3)?,
            is_default: row.get(4)?,
            created_at: row.get(5)?,
        })
    }
}

pub(crate) fn profiles(rows: Vec<ProfileRow>) -> Vec<Profile> {
    rows.into_iter().map(Profile::from).collect()
}

/// `profile_ids` as stored: a JSON array of strings.
pub(crate) fn profile_ids_json(ids: &[String]) -> String {
    serde_json::to_string(ids).expect("a list of strings serializes")
}

/// Reads an embedded JSON value back as the text a column would hold.
fn json_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value: serde_json::Value = serde::Deserialize::deserialize(d)?;
    Ok(value.to_string())
}
