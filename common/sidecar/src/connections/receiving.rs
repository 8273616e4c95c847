//! A request body while it arrives: once its reader has asked for more than
//! the client had sent, its connection waits on the client, so it may be
//! closed to make room for a newcomer (a body trickled a byte at a time
//! holds no place that a whole request needs); and the bytes read for it
//! may not run far past its data.
//!
//! A request whose body is all there, or that waits on the server (for its
//! turn, before its body is read), does not wait on its client; once the
//! body has ended, failed or been dropped (a handler that does not read it
//! drops it before it runs), the connection is answering: nothing a handler
//! does is cut short by an eviction.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::http::Request;
use hyper::body::{Body, Bytes, Frame, SizeHint};

use super::{FRAMING_ALLOWANCE, Requests};

/// The bytes a chunk may take on the wire beyond its data (its size line,
/// extensions and line ends).
pub const FRAMING_PER_CHUNK: u64 = 64;

/// A request body whose connection waits on its client until it has come.
pub struct Receiving<B> {
    inner: B,
    /// Until the body has ended.
    arrival: Option<Arrival>,
}

impl<B: Body> Receiving<B> {
    /// `request`, its body watched unless it has none.
    pub(super) fn watch(request: Request<B>, requests: &Requests) -> Request<Self> {
        let arrival = (!request.body().is_end_stream()).then(|| Arrival::new(requests));
        request.map(|inner| Self { inner, arrival })
    }
}

/// A body under way on its connection: it may read up to what it has
/// allowed, and, once its reader waited on the client, the connection
/// waits under `key`.
struct Arrival {
    requests: Requests,
    /// Its key among the waiting connections, once it waited on the client.
    key: Option<u64>,
}

impl Arrival {
    fn new(requests: &Requests) -> Self {
        let place = &requests.place;
        let read = place.read.load(Ordering::Relaxed);
        place
            .read_limit
            .store(read.saturating_add(FRAMING_ALLOWANCE), Ordering::Relaxed);
        Self {
            requests: requests.clone(),
            key: None,
        }
    }

    /// Its reader asked for more than the client had sent: the connection
    /// waits on its client from now (once).
    fn waited(&mut self) {
        if self.key.is_none() {
            let requests = &self.requests;
            self.key = Some(requests.connections.wait(&requests.place));
        }
    }

    /// `data` bytes of the body have come: as many more may be read, and a
    /// chunk's framing.
    fn allow(&self, data: usize) {
        let more = (data as u64).saturating_add(FRAMING_PER_CHUNK);
        self.requests
            .place
            .read_limit
            .fetch_add(more, Ordering::Relaxed);
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        let place = &self.requests.place;
        place.read_limit.store(u64::MAX, Ordering::Relaxed);
        if let Some(key) = self.key {
            self.requests.connections.wake_from(place, key);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Receiving<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {
                if let Some(arrival) = &mut self.arrival {
                    arrival.waited();
                }
            }
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                if let (Some(arrival), Some(data)) = (&self.arrival, frame.data_ref()) {
                    arrival.allow(data.len());
                }
                if self.inner.is_end_stream() {
                    self.arrival = None;
                }
            }
            Poll::Ready(_) => self.arrival = None,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
