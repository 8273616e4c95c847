//! Capability tokens: what an agent sends to the sidecars' HTTP endpoints
//! instead of holding the keyring. One token is minted for one running agent
//! (user, profile, session, the servers its plan grants, an expiry); only its
//! SHA-256 is stored, and every request re-reads its row, so that a
//! revocation takes effect on the next request, on every replica.

use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use model::ids::{random_secret, validate_ident};

use super::snapshot::postgres_snapshot;
use super::tokens::sha256_hex;
use super::{
    Backend, Snapshot, Store, StoreError, begin_for_user, conflict_on_unique, now, with_pool,
};
use crate::audit::INSERT_AUDIT;

/// What every capability token starts with, so that a leaked one is recognizable.
const PREFIX: &str = "mct_";
/// Random characters after the prefix (192 bits).
const RANDOM_LEN: usize = 32;
/// The longest lifetime a token may be given.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The lifetime of a token when none is asked for.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);

/// Reads the row of a token's SHA-256 (`$1`); columns in [`Capability`] order.
pub(crate) const SELECT_CAPABILITY: &str = "SELECT user_id, profile_id, session_id, servers, expires_at, revoked_at \
     FROM capability_tokens WHERE token_sha256 = $1";

/// Counts a tool call in minute `$1` (seconds since the epoch / 60) of the
/// token whose SHA-256 is `$2`, and returns its calls in that minute, only
/// while the token is live at `$now` (an RFC 3339 time, as `expires_at` is
/// stored): not revoked, not expired. The call is re-checked where it is
/// counted, when it runs: a token revoked while its request waited counts
/// nothing and returns no row. A minute earlier than the counted one (a
/// replica whose clock lags) counts in the later one: replicas never reset
/// each other's count. (`$1` comes first: SQLite numbers parameters by their
/// first appearance.) `$from` joins a one-row relation, for what must run in
/// the same statement.
macro_rules! count_call {
    ($from:literal, $now:literal) => {
        concat!(
            "UPDATE capability_tokens SET \
             calls_in_minute = CASE WHEN calls_minute >= $1 THEN calls_in_minute + 1 ELSE 1 END, \
             calls_minute = CASE WHEN calls_minute > $1 THEN calls_minute ELSE $1 END ",
            $from,
            " WHERE token_sha256 = $2 AND revoked_at IS NULL AND expires_at > ",
            $now,
            " RETURNING calls_in_minute"
        )
    };
}

/// [`count_call!`] on SQLite (`$3`: now), where a commit in WAL mode with
/// `synchronous = NORMAL` waits for no flush anyway.
pub(crate) const COUNT_CALL: &str = count_call!("", "$3");

/// On PostgreSQL, [`count_call!`] (`$5`: now) and the user's [`Snapshot`]
/// (`$3`: the user; `$4`: a type or NULL) in one statement, one round trip:
/// the call's count, then the profiles and integrations of its grant check
/// (NULL and two empty lists when the token is unknown, revoked or expired).
///
/// It commits without waiting for the WAL flush (`synchronous_commit` off for
/// this statement's transaction alone, which holds no other write; through
/// PgBouncer too). What a crash of PostgreSQL can lose is the last few hundred
/// milliseconds of counts (`wal_writer_delay`, three times at most), never a
/// row that was not a count: the calls it lets through after such a crash are
/// at most those counted in that instant, within the minute the limit is
/// about, and each of them still had its token and grant re-checked and its
/// audit row committed with the default synchronous commit. This saves one
/// WAL flush a call, which is most of what a call costs here.
const COUNT_CALL_WITH_SNAPSHOT: &str = concat!(
    "WITH counted AS (",
    count_call!(
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed",
        "$5"
    ),
    ") SELECT (SELECT calls_in_minute FROM counted), snapshot.* FROM (",
    postgres_snapshot!("$3", "$4"),
    ") AS snapshot"
);

/// The agent a capability token was minted for, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub user_id: String,
    pub profile_id: String,
    pub session_id: String,
    /// The MCP servers the token may call, e.g. `["notify", "teller"]`.
    pub servers: Vec<String>,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

/// Why a presented capability token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a token we minted (or altered): HTTP 401.
    Unknown,
    Expired,
    Revoked,
    /// A valid token at a server its plan did not grant: HTTP 403.
    NotGranted,
}

impl TokenRefusal {
    /// Why, in a few words for a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown token",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::NotGranted => "server not in the token's plan",
        }
    }
}

impl Capability {
    /// From the columns of [`SELECT_CAPABILITY`].
    pub(crate) fn from_columns(
        (user_id, profile_id, session_id, servers, expires_at, revoked_at): CapabilityColumns,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            user_id,
            profile_id,
            session_id,
            servers: parse_servers(&servers)?,
            expires_at,
            revoked_at,
        })
    }

    /// Whether this token may call `server` now.
    pub fn admits(&self, server: &str) -> Result<(), TokenRefusal> {
        if self.revoked_at.is_some() {
            Err(TokenRefusal::Revoked)
        } else if self.expires_at <= now() {
            Err(TokenRefusal::Expired)
        } else if !self.servers.iter().any(|s| s == server) {
            Err(TokenRefusal::NotGranted)
        } else {
            Ok(())
        }
    }
}

/// A row's `servers` column: a JSON array of server names.
fn parse_servers(servers: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(servers).map_err(|_| {
        StoreError::Invalid("a capability token row has a corrupt servers column".into())
    })
}

/// The columns of one `capability_tokens` row, in [`SELECT_CAPABILITY`] order.
pub(crate) type CapabilityColumns = (String, String, String, String, String, Option<String>);

/// The SHA-256 a presented token is looked up by; `None` when it cannot be
/// one of ours (so that no query runs for it).
pub fn capability_hash(token: &str) -> Option<String> {
    (token.starts_with(PREFIX) && token.len() == PREFIX.len() + RANDOM_LEN)
        .then(|| sha256_hex(token))
}

/// A token minted for one running agent; prints without the token.
pub struct MintedToken {
    /// The token text: shown once, never stored.
    pub token: Zeroizing<String>,
    /// RFC 3339.
    pub expires_at: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Who mints a capability token; stored in its `minted_by` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minter<'a> {
    /// `POST /v1/sessions` with the API token of id `id`: revoking that API
    /// token revokes what it minted. At most `per_minute` mints a minute
    /// (none: no limit), counted in the store.
    ApiToken {
        id: &'a str,
        per_minute: Option<i64>,
    },
    /// `resolver plan --transport http|relay`, run by whoever holds the store.
    Cli,
}

impl Minter<'_> {
    /// Its `minted_by` value: the API token's id, or [`CLI_MINTER`].
    fn stored(&self) -> &str {
        match self {
            Self::ApiToken { id, .. } => id,
            Self::Cli => CLI_MINTER,
        }
    }
}

/// The `minted_by` of a token minted by `resolver plan`.
pub const CLI_MINTER: &str = "cli";

/// How long an expired or revoked token's row is kept (so that a refusal
/// still says why) before a mint purges it.
const PURGE_AFTER: Duration = Duration::from_secs(3600);
/// The most rows of each kind one mint purges.
const PURGE_BATCH: i64 = 100;
/// The most live sessions [`Store::live_sessions`] lists.
pub const MAX_LISTED: i64 = 1000;

/// Counts a mint of API token `$2` in minute `$1` (as [`count_call!`] counts
/// a tool call) and returns its mints in that minute; no row when the API
/// token is gone. Its row stays locked until the mint commits, so that a
/// revocation of the API token waits for the mint, then revokes it too.
const COUNT_MINT: &str = "UPDATE api_tokens SET \
     mints_in_minute = CASE WHEN mints_minute >= $1 THEN mints_in_minute + 1 ELSE 1 END, \
     mints_minute = CASE WHEN mints_minute > $1 THEN mints_minute ELSE $1 END \
     WHERE id = $2 RETURNING mints_in_minute";

/// Claims session `$1` for user `$2` until `$3` (`$4`: now) in one
/// statement: a new session, one of this user's (its expiry extended), or
/// one whose tokens have all expired; returns no row when the session is
/// another user's. The primary key decides a race between two users.
const CLAIM_SESSION: &str = "INSERT INTO capability_sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (session_id) DO UPDATE SET \
     expires_at = CASE WHEN capability_sessions.user_id = excluded.user_id \
     AND capability_sessions.expires_at > excluded.expires_at \
     THEN capability_sessions.expires_at ELSE excluded.expires_at END, \
     user_id = excluded.user_id \
     WHERE capability_sessions.user_id = excluded.user_id OR capability_sessions.expires_at <= $4 \
     RETURNING user_id";

/// The answer to a session id that cannot be minted into: malformed, or
/// another user's. One sentence for both, so that it never says whether a
/// session id is taken, nor by whom.
fn session_refused(session_id: &str) -> StoreError {
    StoreError::Invalid(format!(
        "session id '{}' cannot be used: a session id is 1 to 128 characters of letters, digits and _ - . : @, and names one running agent; choose another",
        session_id
            .chars()
            .take(64)
            .collect::<String>()
            .escape_debug()
    ))
}

/// A live capability token as its user lists it: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct LiveSession {
    pub session_id: String,
    pub profile_id: String,
    /// The MCP servers the token may call.
    pub servers: Vec<String>,
    /// The id of the API token that minted it, `cli` for `resolver plan`, or
    /// `unrecorded` for a token minted before this was recorded.
    pub minted_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The start of the minute of its latest counted tool call (RFC 3339);
    /// null before its first (calls are counted while
    /// `MCP_MAX_CALLS_PER_MINUTE` is set).
    pub last_used_at: Option<String>,
}

/// Why a mint was refused past its API token's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many sessions minted with this API token: at most {limit} a minute; try again in {retry_after} seconds"
)]
pub struct TooManyMints {
    pub limit: i64,
    /// Seconds to the next minute.
    pub retry_after: u64,
}

impl Store {
    /// Mints a capability token for `servers` of the running agent
    /// (`user_id`, `profile_id`, `session_id`), valid for `ttl` (at most
    /// [`MAX_TTL`]), recording who mints it, with its audit row (server
    /// `sessions`, tool `mint`), in one transaction. Only its SHA-256 is
    /// stored. A session is one user's: the first mint into a session id
    /// claims it until its tokens expire, and a session id of another user's
    /// is refused with the same answer as a malformed one. Each mint first
    /// purges a batch of expired and revoked rows.
    pub async fn mint_capability(
        &self,
        user_id: &str,
        profile_id: &str,
        session_id: &str,
        servers: &[&str],
        ttl: Duration,
        minter: Minter<'_>,
    ) -> Result<MintedToken, StoreError> {
        validate_ident("user id", user_id).map_err(StoreError::Invalid)?;
        validate_ident("profile id", profile_id).map_err(StoreError::Invalid)?;
        validate_ident("session id", session_id).map_err(|_| session_refused(session_id))?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(StoreError::Invalid(format!(
                "a token's lifetime must be between 1 second and {} days",
                MAX_TTL.as_secs() / 86_400
            )));
        }
        let started = Instant::now();
        if let Err(e) = self.purge_capabilities().await {
            // Bookkeeping only: the mint goes on.
            tracing::warn!(error = %e, "could not purge expired capability tokens");
        }
        let token = random_secret(PREFIX, RANDOM_LEN);
        let minted_at = SystemTime::now();
        let created_at = humantime::format_rfc3339_micros(minted_at).to_string();
        let expires_at = humantime::format_rfc3339_micros(minted_at + ttl).to_string();
        let servers_json = serde_json::to_string(servers)
            .map_err(|e| StoreError::Invalid(format!("the servers cannot be encoded: {e}")))?;
        let detail = format!(
            "minted by {} for {}; expires {expires_at}",
            minter.stored(),
            servers.join(", ")
        );
        with_pool!(self, |pool| {
            let mut tx = begin_for_user(pool, user_id).await?;
            if let Minter::ApiToken { id, per_minute } = minter {
                let second = model::clock::unix_now();
                let mints: Option<i64> = sqlx::query_scalar(COUNT_MINT)
                    .bind(second / 60)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mints) = mints else {
                    return Err(StoreError::NotFound {
                        what: "api token",
                        id: id.to_string(),
                    });
                };
                if let Some(limit) = per_minute.filter(|limit| mints > *limit) {
                    return Err(StoreError::TooManyMints(TooManyMints {
                        limit,
                        retry_after: (60 - second.rem_euclid(60)) as u64,
                    }));
                }
            }
            let claimed: Option<String> = sqlx::query_scalar(CLAIM_SESSION)
                .bind(session_id)
                .bind(user_id)
                .bind(&expires_at)
                .bind(&created_at)
                .fetch_optional(&mut *tx)
                .await?;
            if claimed.is_none() {
                // A refused claim still counts against its API token, so
                // probing whose session ids are taken costs mints too.
                tx.commit().await?;
                return Err(session_refused(session_id));
            }
            sqlx::query(
                "INSERT INTO capability_tokens (token_sha256, user_id, profile_id, session_id, servers, expires_at, created_at, minted_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(sha256_hex(&token))
            .bind(user_id)
            .bind(profile_id)
            .bind(session_id)
            .bind(&servers_json)
            .bind(&expires_at)
            .bind(&created_at)
            .bind(minter.stored())
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique(|| {
                "a token collided with an existing one; mint it again".into()
            }))?;
            sqlx::query(INSERT_AUDIT)
                .bind(&created_at)
                .bind(user_id)
                .bind(profile_id)
                .bind(session_id)
                .bind("sessions")
                .bind("mint")
                .bind(None::<&str>)
                .bind("allow")
                .bind(&detail)
                .bind(started.elapsed().as_micros() as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(MintedToken { token, expires_at })
    }

    /// Deletes a batch of rows expired or revoked more than [`PURGE_AFTER`]
    /// ago, and of session claims whose tokens all expired that long ago.
    async fn purge_capabilities(&self) -> Result<(), StoreError> {
        let before = humantime::format_rfc3339_micros(SystemTime::now() - PURGE_AFTER).to_string();
        with_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM capability_tokens WHERE token_sha256 IN \
                 (SELECT token_sha256 FROM capability_tokens WHERE expires_at < $1 LIMIT $2) \
                 OR token_sha256 IN \
                 (SELECT token_sha256 FROM capability_tokens WHERE revoked_at < $1 LIMIT $2)",
            )
            .bind(&before)
            .bind(PURGE_BATCH)
            .execute(pool)
            .await?;
            sqlx::query(
                "DELETE FROM capability_sessions WHERE session_id IN \
                 (SELECT session_id FROM capability_sessions WHERE expires_at < $1 LIMIT $2)",
            )
            .bind(&before)
            .bind(PURGE_BATCH)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Revokes every live token of session `session_id` (only `user_id`'s,
    /// when given); returns how many it revoked.
    pub async fn revoke_session(
        &self,
        user_id: Option<&str>,
        session_id: &str,
    ) -> Result<u64, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE capability_tokens SET revoked_at = $1 \
                 WHERE session_id = $2 AND ($3 IS NULL OR user_id = $3) AND revoked_at IS NULL",
            )
            .bind(now())
            .bind(session_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Revokes every live token of `user_id`, whatever minted it; returns
    /// how many it revoked.
    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
        let at = now();
        Ok(with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE capability_tokens SET revoked_at = $1 \
                 WHERE user_id = $2 AND expires_at > $1 AND revoked_at IS NULL",
            )
            .bind(&at)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// `user_id`'s live tokens (neither expired nor revoked), newest first,
    /// at most [`MAX_LISTED`].
    pub async fn live_sessions(&self, user_id: &str) -> Result<Vec<LiveSession>, StoreError> {
        type Row = (String, String, String, String, String, String, i64);
        let rows: Vec<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT session_id, profile_id, servers, minted_by, created_at, expires_at, calls_minute \
                 FROM capability_tokens WHERE user_id = $1 AND expires_at > $2 AND revoked_at IS NULL \
                 ORDER BY created_at DESC LIMIT $3",
            )
            .bind(user_id)
            .bind(now())
            .bind(MAX_LISTED)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(session_id, profile_id, servers, minted_by, created_at, expires_at, minute)| {
                    let last_used_at = (minute > 0).then(|| {
                        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(minute as u64 * 60);
                        humantime::format_rfc3339_micros(at).to_string()
                    });
                    Ok(LiveSession {
                        session_id,
                        profile_id,
                        servers: parse_servers(&servers)?,
                        minted_by,
                        created_at,
                        expires_at,
                        last_used_at,
                    })
                },
            )
            .collect()
    }

    /// The stored row of a presented token, `None` when it is not one we
    /// minted. Looked up by SHA-256: no comparison runs on the secret.
    pub async fn capability(&self, token: &str) -> Result<Option<Capability>, StoreError> {
        let Some(hash) = capability_hash(token) else {
            return Ok(None);
        };
        let row: Option<CapabilityColumns> = with_pool!(self, |pool| {
            sqlx::query_as(SELECT_CAPABILITY)
                .bind(&hash)
                .fetch_optional(pool)
                .await?
        });
        row.map(Capability::from_columns).transpose()
    }

    /// Counts a tool call of a presented token in `minute` (seconds since
    /// the epoch / 60) and reads `user_id`'s [`Snapshot`] (all types) in the
    /// same statement ([`COUNT_CALL_WITH_SNAPSHOT`]); the token's calls in that
    /// minute and the snapshot, `None` when it is not one we minted or is no
    /// longer live (revoked, expired).
    /// PostgreSQL only: a sidecar counts on SQLite through its own connection.
    pub(crate) async fn count_call_with_snapshot(
        &self,
        token: &str,
        minute: i64,
        user_id: &str,
    ) -> Result<Option<(i64, Snapshot)>, StoreError> {
        let Backend::Postgres(pool) = &*self.backend else {
            return Err(StoreError::Invalid(
                "a call is counted with its snapshot on PostgreSQL only".into(),
            ));
        };
        let Some(hash) = capability_hash(token) else {
            return Ok(None);
        };
        let (calls, profiles, integrations): (Option<i64>, String, String) =
            sqlx::query_as(COUNT_CALL_WITH_SNAPSHOT)
                .bind(minute)
                .bind(&hash)
                .bind(user_id)
                .bind(None::<&str>)
                .bind(now())
                .fetch_one(pool)
                .await?;
        calls
            .map(|calls| {
                Ok((
                    calls,
                    Snapshot::from_json(user_id, &profiles, &integrations)?,
                ))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability(expires_in: i64, revoked: bool) -> Capability {
        let at = if expires_in >= 0 {
            SystemTime::now() + Duration::from_secs(expires_in as u64)
        } else {
            SystemTime::now() - Duration::from_secs((-expires_in) as u64)
        };
        Capability {
            user_id: "u".into(),
            profile_id: "p".into(),
            session_id: "s".into(),
            servers: vec!["notify".into(), "teller".into()],
            expires_at: humantime::format_rfc3339_micros(at).to_string(),
            revoked_at: revoked.then(now),
        }
    }

    #[test]
    fn a_token_admits_only_its_servers_until_it_expires_or_is_revoked() {
        assert_eq!(capability(60, false).admits("teller"), Ok(()));
        assert_eq!(
            capability(60, false).admits("gmail"),
            Err(TokenRefusal::NotGranted)
        );
        assert_eq!(
            capability(-1, false).admits("teller"),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            capability(60, true).admits("teller"),
            Err(TokenRefusal::Revoked)
        );
    }

    #[test]
    fn only_our_token_shape_is_looked_up() {
        assert!(capability_hash("mct_").is_none());
        assert!(capability_hash(&format!("itk_{}", "a".repeat(32))).is_none());
        assert!(capability_hash(&format!("mct_{}", "a".repeat(32))).is_some());
    }
}
