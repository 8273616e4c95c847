//! A connection that has not sent a byte yet, closed while the process is
//! crowded: sockets that connect and say nothing, from many addresses,
//! hold a place for [`FIRST_BYTE_DEADLINE`] then, not for the whole head
//! deadline.
//!
//! Until its first byte comes, each read of the stream also waits on a
//! check every [`FIRST_BYTE_DEADLINE`]: if more than three quarters of the
//! places are taken then ([`Connections::crowded`]), the read fails and
//! hyper closes the connection. Once a byte came, reads pass straight
//! through, and the head deadline alone applies (as it does, meanwhile, to
//! a silent connection in a process that is not crowded). So a crowded
//! process sheds its silent connections down to three quarters of its
//! places within about [`FIRST_BYTE_DEADLINE`], and the last quarter is
//! there for clients that speak.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Connections, FIRST_BYTE_DEADLINE};

/// A stream whose reads fail once it has been silent for
/// [`FIRST_BYTE_DEADLINE`] while the process is crowded.
pub struct Silent<S> {
    io: S,
    connections: Arc<Connections>,
    /// The next check, until the first byte came.
    check: Option<Pin<Box<Sleep>>>,
}

impl<S> Silent<S> {
    pub fn new(io: S, connections: Arc<Connections>) -> Self {
        Self {
            io,
            connections,
            check: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_DEADLINE))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Silent<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Self {
            io,
            connections,
            check,
        } = self.get_mut();
        let polled = Pin::new(io).poll_read(cx, buf);
        let Some(next) = check else {
            return polled;
        };
        if polled.is_ready() {
            // A byte, the end of the stream or an error: either way, no
            // longer silent.
            *check = None;
            return polled;
        }
        while next.as_mut().poll(cx).is_ready() {
            if connections.crowded() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request begun within the first-byte deadline while crowded",
                )));
            }
            next.as_mut().reset(Instant::now() + FIRST_BYTE_DEADLINE);
        }
        Poll::Pending
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Silent<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
