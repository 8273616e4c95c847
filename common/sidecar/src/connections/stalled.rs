//! A connection's stream whose writes fail once they have made no progress
//! for a while: a client that stops reading its answers (say, after
//! pipelining many requests) holds no place for ever. Its reads are
//! counted, and fail past the limit a body under way sets ([`super::receiving`]). While a write waits on
//! the client, its [`Place`] says so: such a connection is not idle, and
//! not closed to make room for a newcomer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::Place;

/// A TCP stream whose writes and flushes fail with `TimedOut` after
/// `patience` without progress.
pub struct Stalled {
    io: TcpStream,
    patience: Duration,
    /// Armed while a write waits on the client.
    waiting: Option<Pin<Box<Sleep>>>,
    place: Arc<Place>,
}

impl Stalled {
    pub fn new(io: TcpStream, patience: Duration, place: Arc<Place>) -> Self {
        Self {
            io,
            patience,
            waiting: None,
            place,
        }
    }

    /// `polled` as is, or `TimedOut` once writing has waited too long.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        self.place
            .writing
            .store(polled.is_pending(), Ordering::Relaxed);
        if polled.is_ready() {
            self.waiting = None;
            return polled;
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
        let read = self.place.read.fetch_add(n, Ordering::Relaxed) + n;
        if read > self.place.read_limit.load(Ordering::Relaxed) {
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
