//! How every tool call is audited: the tool fills in a per-call [`Note`],
//! and [`audit`] writes the call's one `audit_log` row from the note and
//! the result, whatever the tool was and however it ended.

use std::cell::RefCell;
use std::future::Future;
use std::time::Instant;

use rmcp::ErrorData;
use rmcp::model::CallToolResponse;

use super::{AuditEntry, Decision, Identity, SidecarStore};

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
