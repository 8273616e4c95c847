//! The store as a sidecar uses it: the grant check, provider verdicts and
//! the audit log, on SQLite in-process ([`LocalSqlite`]) or on PostgreSQL
//! through the shared [`Store`].

mod local;
pub mod notifications;

use model::config::DecryptedConfig;
use model::scope::is_granted;
use model::sealing::{OpenError, Sealer};
use model::{AuditEntry, Identity, Integration, IntegrationType, ReauthReason, SealedConfig};

use crate::audit::INSERT_AUDIT;
use crate::capabilities::capability_hash;
use crate::{Capability, Snapshot, Store, StoreError, with_pool};
use local::LocalSqlite;

/// Why a granted integration could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Sets an integration's status while it still holds the sealed config `$4`
/// (compare-and-swap), touching the row only when the status changes.
const MARK_NEEDS_REAUTH: &str = "UPDATE user_integrations SET status = 'needs_reauth', \
     updated_at = $1, status_since = $1, status_reason = $2, status_detail = $3 \
     WHERE id = $4 AND encrypted_config = $5 AND status <> 'needs_reauth'";

/// Sets a row its provider had refused active again, when a check finds
/// the same sealed config working (`$2`); a row whose identity another row
/// holds is not recovered so.
const MARK_RECOVERED: &str = "UPDATE user_integrations SET status = 'active', \
     updated_at = $1, status_since = NULL, status_reason = NULL, status_detail = NULL \
     WHERE id = $2 AND encrypted_config = $3 AND status = 'needs_reauth' \
     AND status_reason IN ('provider_refused', 'enrollment_disconnected')";

/// The longest `status_detail` kept, in characters.
const STATUS_DETAIL_CHARS: usize = 300;

/// `detail` cut to [`STATUS_DETAIL_CHARS`].
fn status_detail(detail: &str) -> String {
    detail.chars().take(STATUS_DETAIL_CHARS).collect()
}

/// The longest `audit_log.detail` kept, in characters.
const DETAIL_CHARS: usize = 500;

/// The store of one sidecar: opened once, re-read on every call, never
/// cached; clones share it.
#[derive(Clone)]
pub struct SidecarStore {
    pub(super) backend: Backend,
}

#[derive(Clone)]
pub(super) enum Backend {
    /// SQLite on the calling thread: no worker thread to wake per statement.
    Local(LocalSqlite),
    Postgres(Store),
}

impl std::fmt::Debug for SidecarStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Local(_) => "SidecarStore(sqlite)",
            Backend::Postgres(_) => "SidecarStore(postgres)",
        })
    }
}

impl SidecarStore {
    /// Opens the store at `url` the way a sidecar does: no migration; an
    /// existing SQLite file (never created here), or at most `connections`
    /// PostgreSQL connections (one for a stdio sidecar, one of thousands),
    /// opened at the first query and closed when idle.
    pub fn open(url: &str, connections: u32) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Local(LocalSqlite::open(url)?)
        } else {
            Backend::Postgres(Store::connect_sidecar(url, connections)?)
        };
        Ok(Self { backend })
    }

    /// The sidecars' view of `store`, open at `url`: on PostgreSQL the same
    /// pool; on SQLite a connection of its own.
    pub fn over(store: &Store, url: &str) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Local(LocalSqlite::open(url)?)
        } else {
            Backend::Postgres(store.clone())
        };
        Ok(Self { backend })
    }

    /// The integrations of `kind` granted to the running profile, re-read now
    /// (one indexed read). A deleted profile is granted nothing.
    pub async fn granted(
        &self,
        who: &Identity,
        kind: IntegrationType,
    ) -> Result<Vec<Integration>, StoreError> {
        let snapshot = self.snapshot(&who.user_id, Some(kind)).await?;
        Ok(granted_in(snapshot, &who.profile_id))
    }

    /// The user's profiles and integrations (only of `kind`, when given),
    /// re-read now in one consistent read, or read by this call's token check
    /// in the transaction that counted the call ([`crate::prefetch::prefetched`]).
    pub async fn snapshot(
        &self,
        user_id: &str,
        kind: Option<IntegrationType>,
    ) -> Result<Snapshot, StoreError> {
        if let Some(snapshot) = crate::prefetch::prefetched(user_id, kind) {
            return Ok(snapshot);
        }
        match &self.backend {
            Backend::Local(local) => local.snapshot(user_id, kind).await,
            Backend::Postgres(store) => store.snapshot(user_id, kind).await,
        }
    }

    /// The one grant check before a secret is read: the integration of `kind`
    /// granted to `who` that `matches`, with its config opened. `None` when
    /// there is none: an out-of-scope row and a missing one look the same.
    pub async fn open_granted(
        &self,
        keyring: &dyn Sealer,
        who: &Identity,
        kind: IntegrationType,
        matches: impl Fn(&Integration) -> bool,
    ) -> Result<Option<(Integration, DecryptedConfig)>, GrantError> {
        let Some(integration) = self
            .granted(who, kind)
            .await?
            .into_iter()
            .find(|i| matches(i))
        else {
            return Ok(None);
        };
        let config = keyring.open_config(&integration)?;
        Ok(Some((integration, config)))
    }

    /// The stored row of a presented capability token, re-read now; `None`
    /// when it is not one that was minted.
    pub async fn capability(&self, token: &str) -> Result<Option<Capability>, StoreError> {
        let Some(hash) = capability_hash(token) else {
            return Ok(None);
        };
        match &self.backend {
            Backend::Local(local) => local.capability(hash).await,
            Backend::Postgres(store) => store.capability(token).await,
        }
    }

    /// Counts a tool call of a presented token in `minute` and reads
    /// `user_id`'s [`Snapshot`] (all types), in one transaction (one
    /// statement on PostgreSQL): the token's calls in that minute and the
    /// rows of the call's grant check; `None` when it is not one we minted
    /// or is no longer live (revoked or expired since it was first read).
    pub async fn count_call_with_snapshot(
        &self,
        token: &str,
        minute: i64,
        user_id: &str,
    ) -> Result<Option<(i64, Snapshot)>, StoreError> {
        let Some(hash) = capability_hash(token) else {
            return Ok(None);
        };
        match &self.backend {
            Backend::Local(local) => local.count_call_with_snapshot(hash, minute, user_id).await,
            Backend::Postgres(store) => {
                store.count_call_with_snapshot(token, minute, user_id).await
            }
        }
    }

    /// Marks integration `id` `needs_reauth` for `reason` (with `detail`,
    /// the provider's words without a secret), a provider's verdict on the
    /// sealed config `judged`, only while the row still holds it: a grant
    /// the user connected again meanwhile keeps its status. `false` when
    /// nothing changed. (The store's trigger writes the
    /// `integration.needs_reauth` event in the same statement.)
    pub async fn mark_needs_reauth(
        &self,
        id: &str,
        judged: &SealedConfig,
        reason: ReauthReason,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let binds = [
            crate::now(),
            reason.as_str().to_string(),
            status_detail(detail),
            id.to_string(),
            judged.as_stored().to_string(),
        ];
        self.update_one(MARK_NEEDS_REAUTH, binds.into()).await
    }

    /// Sets integration `id` active again, its provider having taken the
    /// sealed config `judged` it had refused, only while the row still holds
    /// it; `false` when nothing changed. (The store's trigger writes the
    /// `integration.reconnected` event in the same statement.)
    pub async fn mark_recovered(
        &self,
        id: &str,
        judged: &SealedConfig,
    ) -> Result<bool, StoreError> {
        let binds = [crate::now(), id.to_string(), judged.as_stored().to_string()];
        self.update_one(MARK_RECOVERED, binds.into()).await
    }

    /// Runs the statement `sql`, which changes one row at most, with the
    /// text parameters `binds`: whether it changed one.
    async fn update_one(&self, sql: &'static str, binds: Vec<String>) -> Result<bool, StoreError> {
        let changed = match &self.backend {
            Backend::Local(local) => local.execute(sql, binds).await?,
            Backend::Postgres(store) => with_pool!(store, |pool| {
                let mut query = sqlx::query(sql);
                for bind in &binds {
                    query = query.bind(bind);
                }
                query.execute(pool).await?.rows_affected()
            }),
        };
        Ok(changed == 1)
    }

    /// Replaces the sealed config of integration `id` if it is still `old`;
    /// `false` when another writer changed or deleted the row first.
    pub async fn swap_config(
        &self,
        id: &str,
        old: &SealedConfig,
        new: &SealedConfig,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.swap_config(id, old, new).await,
            Backend::Postgres(store) => store.swap_sealed(id, old, new).await,
        }
    }

    /// Writes one `audit_log` row.
    pub async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let row = AuditRow::from(entry);
        match &self.backend {
            Backend::Local(local) => local.audit(row).await,
            Backend::Postgres(store) => {
                with_pool!(store, |pool| {
                    sqlx::query(INSERT_AUDIT)
                        .bind(row.at)
                        .bind(row.user_id)
                        .bind(row.profile_id)
                        .bind(row.session_id)
                        .bind(row.server)
                        .bind(row.tool)
                        .bind(row.integration_id)
                        .bind(row.decision)
                        .bind(row.detail)
                        .bind(row.duration_us)
                        .execute(pool)
                        .await?;
                });
                Ok(())
            }
        }
    }
}

/// An [`AuditEntry`] as its columns, owned and in [`INSERT_AUDIT`] order.
pub(super) struct AuditRow {
    pub at: String,
    pub user_id: String,
    pub profile_id: String,
    pub session_id: Option<String>,
    pub server: String,
    pub tool: String,
    pub integration_id: Option<String>,
    pub decision: &'static str,
    pub detail: Option<String>,
    pub duration_us: i64,
}

impl From<&AuditEntry<'_>> for AuditRow {
    fn from(entry: &AuditEntry<'_>) -> Self {
        Self {
            at: crate::now(),
            user_id: entry.identity.user_id.clone(),
            profile_id: entry.identity.profile_id.clone(),
            session_id: entry.identity.session_id.clone(),
            server: entry.server.to_string(),
            tool: entry.tool.to_string(),
            integration_id: entry.integration_id.map(str::to_string),
            decision: entry.decision.as_str(),
            detail: entry.detail.map(|d| d.chars().take(DETAIL_CHARS).collect()),
            duration_us: i64::try_from(entry.duration.as_micros()).unwrap_or(i64::MAX),
        }
    }
}

fn granted_in(snapshot: Snapshot, profile_id: &str) -> Vec<Integration> {
    let Snapshot {
        profiles,
        integrations,
    } = snapshot;
    let profile = profiles.iter().find(|p| p.id == profile_id);
    integrations
        .into_iter()
        .filter(|i| is_granted(i, profile))
        .collect()
}
