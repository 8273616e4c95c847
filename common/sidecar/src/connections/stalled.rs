//! A connection's stream whose writes fail once they have made no progress
//! for a while: a client that stops reading its answers (say, after
//! pipelining many requests) holds no place for ever. While a write has
//! waited on the client less than [`READ_GRACE`], its [`Place`] says so:
//! the connection is not closed to make room for a newcomer; past that, it
//! waits on its client like one that sends nothing, and may be. Its reads
//! are counted, and fail past the limit a body under way sets
//! ([`super::receiving`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::Requests;

/// How long a write may wait on its client before the connection counts as
/// waiting on it (and may be closed for a newcomer).
pub const READ_GRACE: Duration = Duration::from_secs(2);

/// A TCP stream whose writes and flushes fail with `TimedOut` after
/// `patience` without progress.
pub struct Stalled {
    io: TcpStream,
    patience: Duration,
    /// Armed while a write waits on the client.
    waiting: Option<Pin<Box<Sleep>>>,
    /// Armed while a write waits on the client: [`READ_GRACE`].
    grace: Option<Pin<Box<Sleep>>>,
    requests: Requests,
    /// The key it waits under since a write outlasted the grace.
    key: Option<u64>,
}

impl Stalled {
    pub(super) fn new(io: TcpStream, patience: Duration, requests: Requests) -> Self {
        Self {
            io,
            patience,
            waiting: None,
            grace: None,
            requests,
            key: None,
        }
    }

    /// `polled` as is, or `TimedOut` once writing has waited too long.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Requests { connections, place } = &self.requests;
        if polled.is_ready() {
            place.writing.store(false, Ordering::Relaxed);
            (self.waiting, self.grace) = (None, None);
            // Answering again (unless it was idle anyway).
            if let Some(key) = self.key.take()
                && place.busy.load(Ordering::Relaxed)
            {
                connections.wake_from(place, key);
            }
            return polled;
        }
        let grace = self
            .grace
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(READ_GRACE)));
        let graced = grace.as_mut().poll(cx).is_ready();
        place.writing.store(!graced, Ordering::Relaxed);
        if graced && self.key.is_none() {
            self.key = Some(connections.wait(place));
        }
        let patience = self.patience;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(patience)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stalled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        let read = self.requests.place.read.fetch_add(n, Ordering::Relaxed) + n;
        if read > self.requests.place.read_limit.load(Ordering::Relaxed) {
            // A chunk-size line of endless zeros, say: hyper would read on.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a request body took far more bytes than its data",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stalled {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}
