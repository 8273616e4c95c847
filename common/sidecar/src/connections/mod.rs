//! The connections of a service process (`integrations serve`,
//! `mcp-<name> serve`): HTTP/1 over hyper, so that a stranger who opens
//! connections and sends nothing, or sends slowly, holds a bounded share of
//! the process for a bounded time.
//!
//! - At most [`Limits::max_connections`] at once, and at most
//!   [`Limits::max_per_address`] from one address (an IPv6 /64); one past
//!   either is refused at accept (a best-effort 503 written without reading
//!   anything, then closed) and counted in [`Connections`]; but when some
//!   connection (of that address, when the address is at its limit) is
//!   waiting on its client (between requests, not yet through a head, or
//!   with a body still arriving), the one waiting longest is closed to make
//!   room ([`Connections::admit`]). One whose client has not read its
//!   answer for [`stalled::READ_GRACE`] waits on it too; one whose request
//!   is being answered, or waits on the server, does not. So connections that send
//!   a byte and wait, or trickle a body, from as many addresses as it
//!   takes, or from the address a client shares with them, cannot keep a
//!   client that sends a whole request out: to push it out they must open
//!   every place anew while its request is arriving.
//! - While more than three quarters of the places are taken, a connection
//!   that has sent nothing for [`FIRST_BYTE_DEADLINE`] is closed
//!   ([`silent`]): silent sockets from many addresses cannot keep the
//!   places taken for a whole [`HEAD_DEADLINE`] each.
//! - Each connection buffers at most [`MAX_BUFFER`] of what it reads: a
//!   request head larger than that is 431. While a body arrives, the bytes
//!   read for it may exceed its data by [`FRAMING_ALLOWANCE`] and a little
//!   per chunk, no more ([`receiving`]): a chunk-size line of endless
//!   zeros is cut off.
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
mod receiving;
mod silent;
mod stalled;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::kept::Kept;

/// The connections a process holds at once unless `HTTP_MAX_CONNECTIONS`
/// says otherwise: room for a thousand slow clients and the rest, at about
/// 30 KiB each while a head arrives.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// The connections one address holds at once unless
/// `HTTP_MAX_CONNECTIONS_PER_IP` says otherwise.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 256;

/// How long a request's body may take to arrive whole unless
/// `HTTP_BODY_TIMEOUT_MS` says otherwise.
pub const DEFAULT_BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The most a connection buffers of what it reads (hyper's read buffer, the
/// smallest it allows being 8 KiB): a request head must fit in it.
pub const MAX_BUFFER: usize = 16 * 1024;

/// How long a connection may take to send a request's head (and an idle
/// keep-alive connection to start its next one).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(15);

/// How long a connection may stay silent (not a byte of a request) while
/// the process is crowded: more than three quarters of its places taken.
pub const FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(2);

/// How many more bytes than its data a request body may take on the wire
/// (chunk-size lines, extensions, the head's tail) before its connection is
/// closed; each chunk adds [`receiving::FRAMING_PER_CHUNK`].
pub const FRAMING_ALLOWANCE: u64 = 64 * 1024;

/// How long requests in flight may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(30);

/// How often refused connections, and evicted ones, are logged, at most
/// (each kind on its own).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a connection refused at accept is sent: nothing of it was read.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
    retry-after: 1\r\ncontent-length: 0\r\n\r\n";

/// The connection limits of a service process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) holds at once
    /// (`HTTP_MAX_CONNECTIONS_PER_IP`); 0: no such limit.
    pub max_per_address: usize,
    /// How long a request's body may take to arrive whole, and an answer
    /// may wait for its client to read on (`HTTP_BODY_TIMEOUT_MS`).
    pub body_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
            body_deadline: DEFAULT_BODY_DEADLINE,
        }
    }
}

impl Limits {
    /// From `HTTP_MAX_CONNECTIONS` (at least 1), `HTTP_MAX_CONNECTIONS_PER_IP`
    /// (0: off) and `HTTP_BODY_TIMEOUT_MS` (at least 1), the defaults where
    /// unset.
    pub fn from_env() -> anyhow::Result<Self> {
        let number = |name: &str, least: u64| -> anyhow::Result<Option<u64>> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
                    Ok(n) if n >= least => Ok(Some(n)),
                    _ => anyhow::bail!("{name} must be a whole number, at least {least}"),
                },
                _ => Ok(None),
            }
        };
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let defaults = Self::default();
        Ok(Self {
            max_connections: number("HTTP_MAX_CONNECTIONS", 1)?
                .map_or(defaults.max_connections, count),
            max_per_address: number("HTTP_MAX_CONNECTIONS_PER_IP", 0)?
                .map_or(defaults.max_per_address, count),
            body_deadline: number("HTTP_BODY_TIMEOUT_MS", 1)?
                .map_or(defaults.body_deadline, Duration::from_millis),
        })
    }
}

/// Where a connection comes from, as the per-address limit counts it: an
/// IPv4 address (also one mapped into IPv6), or an IPv6 address's /64
/// prefix (one host, or one network, has a whole /64 to pick from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Peer {
    V4(Ipv4Addr),
    V6(u64),
}

impl From<IpAddr> for Peer {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `HTTP_MAX_CONNECTIONS` are open.
    Full,
    /// `HTTP_MAX_CONNECTIONS_PER_IP` are open from its address.
    AddressFull,
}

/// The connections a process holds, per address too, and those it refused:
/// the one place these counts are kept.
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    open: AtomicUsize,
    refused: AtomicU64,
    /// The connections held from each address that holds one (so at most
    /// `max_connections` entries); empty when there is no per-address limit.
    per_address: Mutex<HashMap<Peer, usize>>,
    /// The connections waiting on their client (for a request, or for the
    /// rest of its body), the one waiting longest first.
    waiting: Mutex<BTreeMap<u64, Arc<Place>>>,
    /// The key of the next connection to start waiting.
    next_key: AtomicU64,
    evicted: AtomicU64,
    /// Connections told to close that have not yet: still open, but no
    /// longer crowding the process.
    closing: AtomicUsize,
}

/// What [`Connections`] knows of one connection: whether it waits on its
/// client, what it has read, and how to close it.
#[derive(Debug)]
struct Place {
    /// Its address, when counted per address.
    peer: Option<Peer>,
    /// Its key among the waiting connections; 0 while it is not waiting.
    waiting_key: AtomicU64,
    /// Closed (its slot dropped): never waiting again.
    closed: AtomicBool,
    /// Told to close to make room for another.
    evicted: AtomicBool,
    /// A write of an answer waits on its client, for less than
    /// [`stalled::READ_GRACE`] ([`stalled`]).
    writing: AtomicBool,
    /// A request is being read or answered ([`Busy`]).
    busy: AtomicBool,
    /// Bytes read from the connection so far.
    read: AtomicU64,
    /// What `read` may reach while a body arrives ([`receiving`]);
    /// `u64::MAX` otherwise.
    read_limit: AtomicU64,
    /// Told when it is closed to make room for another.
    evict: Notify,
}

impl Place {
    fn new(peer: Option<Peer>) -> Self {
        Self {
            peer,
            waiting_key: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            writing: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            read: AtomicU64::new(0),
            read_limit: AtomicU64::new(u64::MAX),
            evict: Notify::new(),
        }
    }
}

impl Connections {
    /// No connection yet, within `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            per_address: Mutex::new(HashMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
            next_key: AtomicU64::new(1),
            evicted: AtomicU64::new(0),
            closing: AtomicUsize::new(0),
        })
    }

    /// A place for one more connection, from `peer`, held until the
    /// [`Slot`] is dropped, waiting until its first request's head has
    /// come. When its address holds all it may, the connection of that
    /// address waiting longest is told to close and this one takes its
    /// place; likewise, of all addresses, when all places are taken.
    /// Refused (and counted) when there is none to close.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let per_address = self.limits.max_per_address;
        let peer = (per_address > 0).then(|| Peer::from(peer));
        if let Some(peer) = peer {
            let full = self
                .counts()
                .get(&peer)
                .is_some_and(|held| *held >= per_address);
            if full {
                if !self.evict_longest_waiting(Some(peer)) {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::AddressFull);
                }
                // Counted twice until the evicted one's task drops its slot.
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            *self.counts().entry(peer).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        // Counted from here: dropped, it gives both counts back.
        let slot = Slot {
            connections: Arc::clone(self),
            place: Arc::new(Place::new(peer)),
        };
        if self.open() > self.limits.max_connections {
            if !self.evict_longest_waiting(None) {
                drop(slot);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::Full);
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        self.wait(&slot.place);
        Ok(slot)
    }

    /// Tells the connection waiting longest on its client (for a request
    /// or a body, not to read an answer), of `peer` when given, to close;
    /// `false` when none is.
    fn evict_longest_waiting(&self, peer: Option<Peer>) -> bool {
        let mut waiting = self.waiting();
        let longest = waiting
            .iter()
            .find(|(_, place)| {
                !place.writing.load(Ordering::Relaxed) && peer.is_none_or(|p| place.peer == Some(p))
            })
            .map(|(key, _)| *key);
        let Some(place) = longest.and_then(|key| waiting.remove(&key)) else {
            return false;
        };
        drop(waiting);
        place.waiting_key.store(0, Ordering::Relaxed);
        place.evicted.store(true, Ordering::Relaxed);
        self.closing.fetch_add(1, Ordering::AcqRel);
        place.evict.notify_one();
        true
    }

    /// `place` waits on its client from now (the newest to): its key.
    fn wait(&self, place: &Arc<Place>) -> u64 {
        let mut waiting = self.waiting();
        if place.closed.load(Ordering::Relaxed) {
            return 0;
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let before = place.waiting_key.swap(key, Ordering::Relaxed);
        if before != 0 {
            waiting.remove(&before);
        }
        waiting.insert(key, Arc::clone(place));
        key
    }

    /// `place` no longer waits on its client: a request is being answered,
    /// or it is closed.
    fn wake(&self, place: &Place) {
        let mut waiting = self.waiting();
        let key = place.waiting_key.swap(0, Ordering::Relaxed);
        if key != 0 {
            waiting.remove(&key);
        }
    }

    /// `place` no longer waits under `key` (a body it waited for has come);
    /// nothing if it has waited anew since.
    fn wake_from(&self, place: &Place, key: u64) {
        let mut waiting = self.waiting();
        let woken =
            place
                .waiting_key
                .compare_exchange(key, 0, Ordering::Relaxed, Ordering::Relaxed);
        if key != 0 && woken.is_ok() {
            waiting.remove(&key);
        }
    }

    /// The waiting connections (each change is one statement, as for
    /// [`Self::counts`]).
    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Place>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The per-address counts (a panic while they were held left them
    /// whole: each change is one statement).
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Peer, usize>> {
        self.per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// More than three quarters of the places are taken (not counting
    /// connections told to close, on their way out): a silent connection is
    /// closed after [`FIRST_BYTE_DEADLINE`].
    pub fn crowded(&self) -> bool {
        let staying = self
            .open()
            .saturating_sub(self.closing.load(Ordering::Acquire));
        staying.saturating_mul(4) > self.limits.max_connections.saturating_mul(3)
    }

    /// Addresses holding a connection now.
    pub fn addresses(&self) -> usize {
        self.counts().len()
    }

    /// Connections refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Waiting connections closed to make room for new ones since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// One connection's place among [`Connections`].
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    place: Arc<Place>,
}

impl Slot {
    /// What its requests tell when they come and go.
    fn requests(&self) -> Requests {
        Requests {
            connections: Arc::clone(&self.connections),
            place: Arc::clone(&self.place),
        }
    }

    /// Resolves when this connection is to close to make room for another.
    async fn evicted(&self) {
        self.place.evict.notified().await;
    }
}

/// The requests of one connection, as its waiting counts them.
#[derive(Clone)]
struct Requests {
    connections: Arc<Connections>,
    place: Arc<Place>,
}

impl Requests {
    /// A request's head has come: the connection does not wait on its
    /// client (but for the rest of the body, [`receiving`]) until the
    /// [`Busy`] is dropped, and is not evicted meanwhile.
    fn busy(&self) -> Busy {
        self.place.busy.store(true, Ordering::Relaxed);
        self.connections.wake(&self.place);
        Busy(self.clone())
    }
}

/// A request of a connection being read or answered; dropped (its answer's
/// body sent or dropped), the connection waits for the next one.
struct Busy(Requests);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.place.busy.store(false, Ordering::Relaxed);
        self.0.connections.wait(&self.0.place);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.place.closed.store(true, Ordering::Relaxed);
        self.connections.wake(&self.place);
        if let Some(peer) = self.place.peer {
            let mut counts = self.connections.counts();
            if let Some(held) = counts.get_mut(&peer) {
                *held -= 1;
                if *held == 0 {
                    counts.remove(&peer);
                }
            }
        }
        if self.place.evicted.load(Ordering::Relaxed) {
            self.connections.closing.fetch_sub(1, Ordering::AcqRel);
        }
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
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
    let connections = Connections::new(limits);
    // Each kind logged at most every REFUSAL_LOG_EVERY: an eviction does
    // not keep refusals out of the log.
    let (mut eviction_logged, mut refusal_logged): (Option<Instant>, Option<Instant>) =
        (None, None);
    let graceful = GracefulShutdown::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors, say: wait a little, keep serving.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let evicted = connections.evicted();
        let slot = match connections.admit(peer) {
            Ok(slot) => {
                if connections.evicted() > evicted
                    && eviction_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY)
                {
                    eviction_logged = Some(Instant::now());
                    tracing::warn!(
                        open = connections.open(),
                        evicted = connections.evicted(),
                        "connections are at their limit: closing those waiting longest to make room"
                    );
                }
                slot
            }
            Err(refused) => {
                // Never blocks: a fresh socket's send buffer is empty. The
                // peer may see a reset instead, if its request was already here.
                let _ = stream.try_write(REFUSAL);
                if refusal_logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                    refusal_logged = Some(Instant::now());
                    let why = match refused {
                        Refused::Full => "HTTP_MAX_CONNECTIONS are open",
                        Refused::AddressFull => {
                            "HTTP_MAX_CONNECTIONS_PER_IP are open from one address"
                        }
                    };
                    tracing::warn!(
                        open = connections.open(),
                        addresses = connections.addresses(),
                        refused = connections.refused(),
                        "refusing connections: {why}"
                    );
                }
                continue;
            }
        };
        // A small answer goes out at once, not after the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_deadline = limits.body_deadline;
        let requests = slot.requests();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let busy = requests.busy();
            let request = receiving::Receiving::watch(request, &requests);
            async move {
                let response = deadline::serve(app, request, body_deadline).await;
                // Busy until its answer is sent or dropped.
                Ok::<_, std::convert::Infallible>(response.map(|body| Kept::new(body, busy)))
            }
        });
        let stream = stalled::Stalled::new(stream, limits.body_deadline, slot.requests());
        let stream = silent::Silent::new(stream, Arc::clone(&connections));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "a connection ended with an error");
                },
                () = slot.evicted() => {
                    tracing::debug!("closed a waiting connection to make room for a new one");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if connections.refused() > 0 || connections.evicted() > 0 {
        tracing::warn!(
            refused = connections.refused(),
            evicted = connections.evicted(),
            "connections refused past HTTP_MAX_CONNECTIONS or HTTP_MAX_CONNECTIONS_PER_IP"
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    use axum::body::Body;
    use hyper::body::Body as _;

    fn told_to_close(slot: &Slot) -> bool {
        slot.evicted().now_or_never().is_some()
    }

    #[test]
    fn when_every_place_is_taken_the_connection_waiting_longest_makes_room() {
        let connections = Connections::new(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = connections.admit(ip).unwrap();
        let b = connections.admit(ip).unwrap();
        let a_busy = a.requests().busy();
        let c = connections.admit(ip).unwrap();
        assert!(told_to_close(&b), "b idle, a busy");
        assert!(!told_to_close(&a));
        drop(b);
        let d = connections.admit(ip).unwrap();
        assert!(told_to_close(&c));
        // a's answer is sent: idle again, but not as long as d.
        drop(a_busy);
        drop(c);
        let e = connections.admit(ip).unwrap();
        assert!(told_to_close(&d) && !told_to_close(&a));
        drop(d);
        let (a_busy, _e_busy) = (a.requests().busy(), e.requests().busy());
        assert_eq!(connections.admit(ip).err(), Some(Refused::Full));
        assert_eq!((connections.evicted(), connections.refused()), (3, 1));
        assert_eq!(connections.open(), 2);
        // A closed connection's answer sent late leaves nothing idle.
        drop(a);
        drop(a_busy);
        assert!(connections.waiting().is_empty());
    }

    #[test]
    fn a_connection_whose_client_is_not_reading_is_not_closed_for_a_newcomer() {
        let connections = Connections::new(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        let stuck = connections.admit(ip).unwrap();
        stuck.place.writing.store(true, Ordering::Relaxed);
        let waiting = connections.admit(ip).unwrap();
        let new = connections.admit(ip).unwrap();
        assert!(told_to_close(&waiting) && !told_to_close(&stuck));
        drop(waiting);
        let _busy = new.requests().busy();
        assert_eq!(connections.admit(ip).err(), Some(Refused::Full));
        assert!(!told_to_close(&stuck));
    }

    #[test]
    fn an_address_at_its_limit_makes_room_among_its_own_connections_only() {
        let connections = Connections::new(Limits {
            max_connections: 4,
            max_per_address: 2,
            ..Limits::default()
        });
        let (home, other) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]));
        let elsewhere = connections.admit(other).unwrap();
        let first = connections.admit(home).unwrap();
        let second = connections.admit(home).unwrap();
        let third = connections.admit(home).unwrap();
        assert!(told_to_close(&first), "the address's own, waiting longest");
        assert!(!told_to_close(&elsewhere) && !told_to_close(&second));
        drop(first);
        let _busy = (second.requests().busy(), third.requests().busy());
        let again = connections.admit(home);
        assert_eq!(
            again.err(),
            Some(Refused::AddressFull),
            "none of its own waits"
        );
        assert!(!told_to_close(&elsewhere));
        assert_eq!(connections.addresses(), 2);
    }

    #[test]
    fn connections_told_to_close_do_not_crowd_the_process() {
        let connections = Connections::new(Limits {
            max_connections: 8,
            max_per_address: 2,
            ..Limits::default()
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        // One address keeps opening: each newcomer past its two takes the
        // place of its oldest, which has not closed yet.
        let slots: Vec<Slot> = (0..8).map(|_| connections.admit(ip).unwrap()).collect();
        assert_eq!(connections.open(), 8);
        assert!(
            !connections.crowded(),
            "six are on their way out: two stay, not three quarters of eight"
        );
        assert_eq!(slots.iter().filter(|s| told_to_close(s)).count(), 6);
        drop(slots);
        assert_eq!(connections.closing.load(Ordering::Relaxed), 0);
        let held: Vec<Slot> = (0..7)
            .map(|n| connections.admit(IpAddr::from([127, 0, 0, n + 2])).unwrap())
            .collect();
        assert!(connections.crowded(), "seven of eight stay");
        drop(held);
    }

    #[tokio::test]
    async fn a_body_waits_on_its_client_until_it_has_come() {
        let connections = Connections::new(Limits {
            max_connections: 3,
            ..Limits::default()
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        let [trickling, whole, bodiless] = [(); 3].map(|()| connections.admit(ip).unwrap());
        let _busy = [&trickling, &whole, &bodiless].map(|slot| slot.requests().busy());
        let never =
            futures_util::stream::pending::<Result<bytes::Bytes, std::convert::Infallible>>();
        let mut arriving = receiving::Receiving::watch(
            Request::new(Body::from_stream(never)),
            &trickling.requests(),
        );
        let came = receiving::Receiving::watch(Request::new(Body::from("{}")), &whole.requests());
        let _none = receiving::Receiving::watch(Request::new(Body::empty()), &bodiless.requests());
        assert!(
            connections.waiting().is_empty(),
            "not waiting on the client before its body is asked for"
        );
        let asked =
            std::future::poll_fn(|cx| std::pin::Pin::new(arriving.body_mut()).poll_frame(cx))
                .now_or_never();
        assert!(asked.is_none(), "the client sent nothing");
        let read = axum::body::to_bytes(Body::new(came.into_body()), 64)
            .await
            .unwrap();
        assert_eq!(&read[..], b"{}");
        assert_eq!(
            connections.waiting().len(),
            1,
            "only the body whose reader waits on its client"
        );
        let newcomer = connections.admit(ip).unwrap();
        assert!(told_to_close(&trickling) && !told_to_close(&whole) && !told_to_close(&bodiless));
        drop((arriving, trickling));
        let _busy = newcomer.requests().busy();
        assert_eq!(connections.admit(ip).err(), Some(Refused::Full));
        assert!(connections.waiting().is_empty());
    }
}
