//! How every tool call is audited: the tool fills in a per-call [`Note`],
//! and [`audit`] writes the call's one `audit_log` row from the note and
//! the result, whatever the tool was and however it ended. A tool body
//! returns a [`ToolError`] for a failure; [`outcome`] turns it into the
//! agent's sentence and the note.

use std::cell::RefCell;
use std::future::Future;
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde::Serialize;

use model::{AuditEntry, Decision, Identity};
use store::{Prefetched, SidecarStore};

use super::IdentitySource;
pub use super::quoted;

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// What the running tool call learned, for its audit row.
#[derive(Debug, Default)]
pub struct Note {
    pub integration_id: Option<String>,
    /// How a failed call is filed; a failure without one is a denial.
    pub decision: Option<Decision>,
    /// More than the agent's sentence, for the audit row only (never a secret).
    pub detail: Option<String>,
}

/// Updates the running call's note; outside a call it does nothing.
pub fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

/// Runs one tool call with a fresh note, and returns both.
pub async fn noted<F: Future>(call: F) -> (F::Output, Note) {
    NOTE.scope(RefCell::new(Note::default()), async {
        let output = call.await;
        (output, NOTE.with(|n| std::mem::take(&mut *n.borrow_mut())))
    })
    .await
}

/// Where a sidecar's calls are audited: its store (none when it cannot be
/// opened: the tool then fails too), where its identity comes from, and its
/// server name.
pub struct Auditor<'a> {
    pub store: Option<&'a SidecarStore>,
    pub identity_source: &'a IdentitySource,
    pub server: &'a str,
}

/// One tool call of a sidecar, the way every sidecar runs it: the caller's
/// identity put where the tools read it (`Extension<Identity>`), the
/// arguments taken leniently ([`super::lenient`]), routed with a fresh
/// note, then its one audit row written.
pub async fn audited<S: Send + Sync + 'static>(
    handler: &S,
    router: &ToolRouter<S>,
    request: CallToolRequestParams,
    mut context: RequestContext<RoleServer>,
    auditor: Auditor<'_>,
) -> Result<CallToolResponse, ErrorData> {
    let started = Instant::now();
    let identity = auditor.identity_source.identity(&context)?;
    let prefetched = context
        .extensions
        .get_mut::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.remove::<Prefetched>());
    context.extensions.insert(identity.clone());
    let tool = request.name.to_string();
    let mut request = request;
    let ignored = super::lenient::normalize(
        router.get(&tool).map(|t| t.input_schema.as_ref()),
        &mut request,
    );
    let routed = noted(router.call(ToolCallContext::new(handler, request, context)));
    let (response, note) = Prefetched::scope(prefetched, routed).await;
    let response = super::lenient::mention(response, &ignored);
    if let Some(store) = auditor.store {
        audit(
            store,
            &identity,
            auditor.server,
            &tool,
            started,
            &response,
            note,
        )
        .await;
    }
    response
}

/// Writes the audit row of a call to `tool` of `server` that began at
/// `started` and ended with `response`; a failed write is logged, not fatal.
pub async fn audit(
    store: &SidecarStore,
    identity: &Identity,
    server: &str,
    tool: &str,
    started: Instant,
    response: &Result<CallToolResponse, ErrorData>,
    note: Note,
) {
    let (decision, detail) = match response {
        Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => (
            note.decision.unwrap_or(Decision::Deny),
            note.detail.or_else(|| {
                result
                    .content
                    .first()
                    .and_then(|c| c.as_text())
                    .map(|t| t.text.clone())
            }),
        ),
        Ok(_) => (Decision::Allow, None),
        Err(e) => (Decision::Deny, Some(e.message.to_string())),
    };
    let entry = AuditEntry {
        identity,
        server,
        tool,
        integration_id: note.integration_id.as_deref(),
        decision,
        detail: detail.as_deref(),
        duration: started.elapsed(),
    };
    if let Err(e) = store.audit(&entry).await {
        tracing::warn!(error = %e, tool, "could not write the audit row");
    }
}

/// A failed call: the sentence the agent reads, and how the audit log files it.
#[derive(Debug)]
pub struct ToolError {
    pub decision: Decision,
    pub message: String,
    /// More for the audit row only (never a secret).
    pub detail: Option<String>,
}

impl ToolError {
    /// The call was refused: out of scope, a bad argument, a missing grant.
    pub fn deny(message: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            message: message.into(),
            detail: None,
        }
    }

    /// The call was allowed but failed: the store, the keyring, the provider.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            decision: Decision::Error,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds audit-only detail.
    pub fn with_detail(mut self, detail: impl ToString) -> Self {
        self.detail = Some(detail.to_string());
        self
    }
}

/// A successful call: readable `text` and the same `data` as structured
/// content ([`super::schema::structured`]: no `null` members).
pub fn reply<T: Serialize>(text: String, data: &T) -> Result<CallToolResult, ToolError> {
    let value = super::schema::structured(data)
        .map_err(|e| ToolError::error("the result could not be encoded").with_detail(e))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    Ok(result)
}

/// Runs a tool body: a failure is noted for the audit row and becomes an
/// `isError` result with the agent's sentence.
pub async fn outcome(
    body: impl Future<Output = Result<CallToolResult, ToolError>>,
) -> CallToolResult {
    match body.await {
        Ok(result) => result,
        Err(e) => {
            note(|n| {
                n.decision = Some(e.decision);
                n.detail = Some(match &e.detail {
                    Some(d) => format!("{} [{d}]", e.message),
                    None => e.message.clone(),
                });
            });
            CallToolResult::error(vec![ContentBlock::text(e.message)])
        }
    }
}
