//! The connections of a service process (`integrations serve`,
//! `mcp-<name> serve`): HTTP/1 over hyper, so that a stranger who opens
//! connections and sends nothing, or sends slowly, holds a bounded share of
//! the process for a bounded time.
//!
//! - At most [`Limits::max_connections`] at once; one past it is refused at
//!   accept (a best-effort 503 written without reading anything, then
//!   closed) and counted in [`Connections`].
//! - Each connection buffers at most [`MAX_BUFFER`] of what it reads: a
//!   request head larger than that is 431.
//! - Each request's head must arrive within [`HEAD_DEADLINE`] (also an idle
//!   keep-alive connection's next one), and its body whole within
//!   [`Limits::body_deadline`] (408, [`deadline`]); an answer the client
//!   does not read on for as long ends its connection.
//! - Small answers go out at once (`TCP_NODELAY`); SIGTERM lets the requests
//!   in flight finish, for [`DRAIN`] at most.
//!
//! So the memory connections hold is at most about `max_connections` times
//! the cost of one (docs/http-mode.md, "Limits").

pub mod deadline;
mod stalled;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;

/// The connections a process holds at once unless `HTTP_MAX_CONNECTIONS`
/// says otherwise: room for a thousand slow clients and the rest, at about
/// 30 KiB each while a head arrives.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// How long a request's body may take to arrive whole unless
/// `HTTP_BODY_TIMEOUT_MS` says otherwise.
pub const DEFAULT_BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The most a connection buffers of what it reads (hyper's read buffer, the
/// smallest it allows being 8 KiB): a request head must fit in it.
pub const MAX_BUFFER: usize = 16 * 1024;

/// How long a connection may take to send a request's head (and an idle
/// keep-alive connection to start its next one).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(15);

/// How long requests in flight may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(30);

/// How often a refused connection is logged, at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a connection refused at accept is sent: nothing of it was read.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
    retry-after: 1\r\ncontent-length: 0\r\n\r\n";

/// The connection limits of a service process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// How long a request's body may take to arrive whole, and an answer
    /// may wait for its client to read on (`HTTP_BODY_TIMEOUT_MS`).
    pub body_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_deadline: DEFAULT_BODY_DEADLINE,
        }
    }
}

impl Limits {
    /// From `HTTP_MAX_CONNECTIONS` (at least 1) and `HTTP_BODY_TIMEOUT_MS`
    /// (at least 1), the defaults where unset.
    pub fn from_env() -> anyhow::Result<Self> {
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => anyhow::bail!("{name} must be a whole number, at least 1"),
                },
                _ => Ok(None),
            }
        };
        let defaults = Self::default();
        Ok(Self {
            max_connections: number("HTTP_MAX_CONNECTIONS")?
                .map_or(defaults.max_connections, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            body_deadline: number("HTTP_BODY_TIMEOUT_MS")?
                .map_or(defaults.body_deadline, Duration::from_millis),
        })
    }
}

/// The connections a process holds and those it refused: the one place
/// these counts are kept.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    open: AtomicUsize,
    refused: AtomicU64,
}

impl Connections {
    /// No connection yet, at most `max` at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for one more connection, held until the [`Slot`] is dropped;
    /// `None` (and counted) when all are taken.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(Arc::clone(self)))
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One connection's place among [`Connections`].
#[derive(Debug)]
pub struct Slot(Arc<Connections>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` within `limits` until SIGTERM or Ctrl-C, then
/// lets the requests in flight finish, for [`DRAIN`] at most.
pub async fn serve_until_signal(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_BUFFER);
    let connections = Connections::new(limits.max_connections);
    let mut refusal_logged: Option<Instant> = None;
    let graceful = GracefulShutdown::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a little, keep serving.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = connections.admit() else {
            // Never blocks: a fresh socket's send buffer is empty. The peer
            // may see a reset instead, if its request was already here.
            let _ = stream.try_write(REFUSAL);
            if refusal_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                refusal_logged = Some(Instant::now());
                tracing::warn!(
                    open = connections.open(),
                    refused = connections.refused(),
                    "refusing connections: HTTP_MAX_CONNECTIONS are open"
                );
            }
            continue;
        };
        // A small answer goes out at once, not after the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_deadline = limits.body_deadline;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    deadline::serve(app, request, body_deadline).await,
                )
            }
        });
        let stream = stalled::Stalled::new(stream, limits.body_deadline);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if connections.refused() > 0 {
        tracing::warn!(
            refused = connections.refused(),
            "connections refused past HTTP_MAX_CONNECTIONS"
        );
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", DRAIN.as_secs());
        }
    }
    Ok(())
}

/// Resolves at SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
}
