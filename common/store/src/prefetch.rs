//! The rows of a call's grant check read ahead, handed from the HTTP token
//! check to the call it let through.

use std::cell::RefCell;
use std::future::Future;

use model::IntegrationType;

use crate::Snapshot;

tokio::task_local! {
    static PREFETCHED: RefCell<Option<Prefetched>>;
}

/// The rows of a call's grant check, read by the HTTP token check in the
/// transaction that counted the call ([`crate::SidecarStore::count_call_with_snapshot`]),
/// so that the call does not read them again: the first grant check of that
/// one call takes them; every later read, and every other call, reads the store.
#[derive(Debug, Clone)]
pub struct Prefetched {
    pub user_id: String,
    pub snapshot: Snapshot,
}

/// The running call's prefetched snapshot of `user_id`, taken (so used
/// once), its integrations only of `kind` when given; `None` outside a call,
/// when there is none, or when it is another user's.
pub(crate) fn prefetched(user_id: &str, kind: Option<IntegrationType>) -> Option<Snapshot> {
    let taken = PREFETCHED
        .try_with(|p| {
            let mut slot = p.borrow_mut();
            if slot.as_ref().is_some_and(|p| p.user_id == user_id) {
                slot.take()
            } else {
                None
            }
        })
        .ok()??;
    let mut snapshot = taken.snapshot;
    if let Some(kind) = kind {
        snapshot.integrations.retain(|i| i.kind == kind);
    }
    Some(snapshot)
}

impl Prefetched {
    /// Runs `call` with `prefetched` (or nothing) as its rows read ahead.
    pub async fn scope<F: Future>(prefetched: Option<Self>, call: F) -> F::Output {
        PREFETCHED.scope(RefCell::new(prefetched), call).await
    }
}
