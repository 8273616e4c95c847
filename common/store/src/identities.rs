//! External identities: a Slack user, a Telegram bot, a Gmail address, a
//! Teller enrollment ([`model::config::identity_types`]) belongs to one row,
//! so to one user. The store keeps a row's identity in `external_id`, under
//! a unique index per type: a second row of the same identity is refused by
//! the database, whoever writes it. Only a provider's flow sets it (its
//! fields are server-managed); inbound messages find the one row that holds
//! it. Rows from before identities were kept for every type get theirs at
//! `serve`'s start ([`Store::claim_identities`]).

use std::collections::HashMap;

use model::config::{identity_noun, identity_types};
use model::sealing::Sealer;
use model::{IntegrationType, ReauthReason, Status};

use super::rows::{IntegrationRow, integrations, select_integrations};
use super::{Store, StoreError, now, with_pool};

/// Why a row was not written: its identity is another row's. Names no user
/// and no row.
pub(crate) fn identity_taken(kind: IntegrationType) -> String {
    format!(
        "this {} is already connected, and it can be connected only once: the integration that holds it must be removed first",
        identity_noun(kind)
    )
}

/// What [`Store::claim_identities`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IdentityClaims {
    /// Rows that took their identity.
    pub claimed: u64,
    /// Rows whose identity another row holds (or another row also claimed):
    /// left without one and set `needs_reauth`, until their user connects
    /// the account again.
    pub refused: u64,
}

impl Store {
    /// Gives every row of a type with an identity that has none yet (a row
    /// written before identities were kept for its type) the identity its
    /// config names. An identity that one such row alone names, and no row
    /// holds, is that row's. One that several rows name, or that a row
    /// holds already, is nobody's by age: those rows get none and are set
    /// `needs_reauth`, so that they route nothing and send no Slack message
    /// until a provider's flow proves whose it is. The server runs it at
    /// start, when its keyring is new; a row whose config does not open is
    /// left as it was (and tried again at the next start).
    pub async fn claim_identities(
        &self,
        keyring: &dyn Sealer,
    ) -> Result<IdentityClaims, StoreError> {
        // Our own type names: nothing from outside goes into the statement.
        let kinds: Vec<String> = identity_types()
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        let select = format!(
            "{}WHERE external_id IS NULL AND status = $1 AND type IN ({}) AND id > $2 ORDER BY id LIMIT 256",
            select_integrations!(""),
            kinds.join(", ")
        );
        let mut named: HashMap<(IntegrationType, String), Vec<String>> = HashMap::new();
        let mut after = String::new();
        loop {
            let page = with_pool!(self, |pool| {
                let rows: Vec<IntegrationRow> = sqlx::query_as(&select)
                    .bind(Status::Active.as_str())
                    .bind(&after)
                    .fetch_all(pool)
                    .await?;
                integrations(rows)?
            });
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for row in page {
                match keyring.open_config(&row) {
                    Ok(config) => {
                        if let Some(identity) = config.identity(row.kind) {
                            named.entry((row.kind, identity)).or_default().push(row.id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(integration = %row.id, error = %e, "a row's identity was not read")
                    }
                }
            }
        }
        let mut claims = IdentityClaims::default();
        for ((_, identity), ids) in named {
            let claimed = match ids.as_slice() {
                [id] => self.claim_identity(id, &identity).await?,
                _ => false,
            };
            if claimed {
                claims.claimed += 1;
                continue;
            }
            for id in &ids {
                claims.refused += self.refuse_identity(id).await?;
            }
        }
        Ok(claims)
    }

    /// Writes `identity` into the row `id` if it still has none and is
    /// active; `false` when another row holds it (or the row changed).
    async fn claim_identity(&self, id: &str, identity: &str) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE user_integrations SET external_id = $1 WHERE id = $2 AND external_id IS NULL AND status = $3",
            )
            .bind(identity)
            .bind(id)
            .bind(Status::Active.as_str())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        });
        match done {
            Ok(changed) => Ok(changed == 1),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the row `id`, still without an identity, `needs_reauth`: 1 when
    /// it was.
    async fn refuse_identity(&self, id: &str) -> Result<u64, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE user_integrations SET status = $1, updated_at = $2, status_since = $2, status_reason = $3, \
                 status_detail = $4 WHERE id = $5 AND external_id IS NULL AND status <> $1",
            )
            .bind(Status::NeedsReauth.as_str())
            .bind(now())
            .bind(ReauthReason::IdentityTaken.as_str())
            .bind("Another connection holds the same account: connect it again.")
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
