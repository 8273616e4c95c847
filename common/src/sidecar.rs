//! What every sidecar shares: its identity from the spawn environment, the
//! one grant check that precedes every read of a secret, the audit row of
//! every tool call, and a stdio transport that answers malformed lines.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::DecryptedConfig;
use crate::crypto::{Keyring, OpenError};
use crate::model::{Integration, IntegrationType, Status};
use crate::scope::is_granted;
use crate::store::{Store, StoreError, with_pool};

/// The running agent, fixed at spawn. Never taken from tool arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub profile_id: String,
    pub session_id: Option<String>,
}

impl Identity {
    /// From `INTEGRATIONS_USER_ID`, `INTEGRATIONS_PROFILE_ID` and
    /// `INTEGRATIONS_SESSION_ID`; `user`/`profile` (command-line flags) win.
    pub fn from_env(user: Option<String>, profile: Option<String>) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (user.or_else(|| var("INTEGRATIONS_USER_ID")), profile.or_else(|| var("INTEGRATIONS_PROFILE_ID"))) {
            (Some(user_id), Some(profile_id)) => Ok(Self { user_id, profile_id, session_id: var("INTEGRATIONS_SESSION_ID") }),
            _ => Err("no identity: set INTEGRATIONS_USER_ID and INTEGRATIONS_PROFILE_ID (or pass --user and --profile)".into()),
        }
    }
}

/// Why a granted integration could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// How a tool call ended, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

impl Decision {
    /// The value stored in `audit_log.decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// One `audit_log` row. `detail` is the sentence the agent saw, never a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub identity: &'a Identity,
    pub server: &'a str,
    pub tool: &'a str,
    pub integration_id: Option<&'a str>,
    pub decision: Decision,
    pub detail: Option<&'a str>,
    pub duration: Duration,
}

impl Store {
    /// The integrations of `kind` granted to the running profile, re-read now
    /// (one indexed read). A deleted profile is granted nothing.
    pub async fn granted(
        &self,
        who: &Identity,
        kind: IntegrationType,
    ) -> Result<Vec<Integration>, StoreError> {
        let snapshot = self.snapshot(&who.user_id, Some(kind)).await?;
        let profile = snapshot.profile(&who.profile_id);
        Ok(snapshot
            .integrations
            .iter()
            .filter(|i| is_granted(i, profile))
            .cloned()
            .collect())
    }

    /// The one grant check before a secret is read: the integration of `kind`
    /// granted to `who` that `matches`, with its config opened. `None` when
    /// there is none: an out-of-scope row and a missing one look the same.
    pub async fn open_granted(
        &self,
        keyring: &Keyring,
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

    /// Records a provider's verdict on an integration's grant.
    pub async fn set_status(&self, id: &str, status: Status) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE user_integrations SET status = $1, updated_at = $2 WHERE id = $3 AND status <> $1")
                .bind(status.as_str())
                .bind(crate::store::now())
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Writes one `audit_log` row.
    pub async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let detail = entry
            .detail
            .map(|d| d.chars().take(500).collect::<String>());
        let micros = i64::try_from(entry.duration.as_micros()).unwrap_or(i64::MAX);
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO audit_log (at, user_id, profile_id, session_id, server, tool, integration_id, decision, detail, duration_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(crate::store::now())
            .bind(&entry.identity.user_id)
            .bind(&entry.identity.profile_id)
            .bind(&entry.identity.session_id)
            .bind(entry.server)
            .bind(entry.tool)
            .bind(entry.integration_id)
            .bind(entry.decision.as_str())
            .bind(&detail)
            .bind(micros)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// Stdio for an MCP server that answers a line that is not JSON with a
/// JSON-RPC parse error (id `null`) and keeps serving; every other line is
/// passed through. Returns the reader and writer to hand to the MCP server.
pub fn guarded_stdio() -> (impl tokio::io::AsyncRead + Unpin, impl AsyncWrite + Unpin) {
    guard(tokio::io::stdin(), tokio::io::stdout())
}

/// [`guarded_stdio`] over any pair of streams.
pub fn guard<R, W>(
    input: R,
    output: W,
) -> (impl tokio::io::AsyncRead + Unpin, impl AsyncWrite + Unpin)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    const PARSE_ERROR: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error: the line is not JSON\"}}\n";
    let (server_in, mut to_server) = tokio::io::duplex(64 * 1024);
    let (from_server, server_out) = tokio::io::duplex(64 * 1024);
    let (errors, mut error_lines) = tokio::sync::mpsc::channel::<()>(16);
    tokio::spawn(async move {
        let mut lines = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let body = line.trim_ascii();
            if body.is_empty() {
                continue;
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                if to_server.write_all(&line).await.is_err() {
                    break;
                }
            } else if errors.send(()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut output = output;
        let mut replies = BufReader::new(from_server);
        let mut line = Vec::new();
        loop {
            line.clear();
            let wrote = tokio::select! {
                read = replies.read_until(b'\n', &mut line) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => output.write_all(&line).await,
                },
                Some(()) = error_lines.recv() => output.write_all(PARSE_ERROR).await,
            };
            if wrote.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    (server_in, server_out)
}
