//! One total deadline on every request body, whatever route reads it: the
//! body must have arrived whole within it, however its bytes are spaced
//! (a per-chunk idle timeout lets one byte every few seconds through for
//! ever). A body still arriving at the deadline ends in an error for its
//! reader, and the request is answered 408 and its connection closed.
//!
//! Small frames are joined into chunks of [`CHUNK`] on the way: a body
//! trickled a byte at a time reaches its reader as a few chunks, not as
//! thousands of one-byte frames, each with its own bookkeeping.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::Sleep;
use tower::ServiceExt;

/// Frames smaller than this are joined before a reader sees them.
pub const CHUNK: usize = 16 * 1024;

/// Serves `request` with `app`, its body due whole within `deadline` of
/// now; 408 (connection closed) when it was still arriving then.
///
/// The handler runs in a task of its own: a client that leaves (or a
/// connection closed for a newcomer) does not cut short what its request
/// began (a notification half sent and never logged); a handler still
/// reading the body sees it end, and stops.
pub async fn serve<B>(app: Router, request: Request<B>, deadline: Duration) -> Response
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| Deadlined::new(body, deadline, Arc::clone(&expired)));
    let handled = tokio::spawn(app.oneshot(request)).await;
    if expired.load(Ordering::Relaxed) {
        return timed_out(deadline);
    }
    match handled {
        Ok(Ok(response)) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request's handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The answer to a body that did not arrive in time: the error shape both
/// the REST API and the MCP endpoints use.
fn timed_out(deadline: Duration) -> Response {
    let message = format!(
        "the request body did not arrive within {} seconds",
        deadline.as_secs()
    );
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({
            "error": {"code": "REQUEST_TIMEOUT", "message": message}
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a reader gets from a body past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline")]
pub struct BodyTimedOut;

/// A request body with a total deadline, its small frames joined.
pub struct Deadlined<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
    /// Data read but not yet handed on: less than [`CHUNK`].
    joined: BytesMut,
    /// A trailers frame that came while data was held.
    trailers: Option<Frame<Bytes>>,
    /// The inner body has ended.
    ended: bool,
}

impl<B> Deadlined<B> {
    fn new(inner: B, deadline: Duration, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(deadline)),
            expired,
            joined: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    fn take_joined(&mut self) -> Option<Frame<Bytes>> {
        (!self.joined.is_empty()).then(|| Frame::data(self.joined.split().freeze()))
    }
}

impl<B> Body for Deadlined<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(this.take_joined().or_else(|| this.trailers.take()).map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if this.joined.is_empty() && data.len() >= CHUNK => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => {
                        this.joined.extend_from_slice(&data);
                        if this.joined.len() >= CHUNK {
                            return Poll::Ready(this.take_joined().map(Ok));
                        }
                    }
                    Err(trailers) => {
                        this.ended = true;
                        this.trailers = Some(trailers);
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {
                    ready!(this.deadline.as_mut().poll(cx));
                    this.expired.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyTimedOut.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.joined.is_empty()
            && self.trailers.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.joined.len() as u64;
        let inner = if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        };
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint.set_lower(inner.lower().saturating_add(held));
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A body that has its bytes at once but hands them out one by one.
    struct Bytewise(Vec<u8>);

    impl Body for Bytewise {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.0.is_empty() {
                return Poll::Ready(None);
            }
            let byte = self.0.remove(0);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte])))))
        }
    }

    /// Every frame of `body`, in order.
    async fn frames<B: Body<Data = Bytes> + Unpin>(mut body: B) -> Result<Vec<Bytes>, B::Error> {
        let mut frames = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            frames.extend(frame?.into_data().ok());
        }
        Ok(frames)
    }

    #[tokio::test]
    async fn one_byte_frames_reach_the_reader_joined_and_whole() {
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let expired = Arc::new(AtomicBool::new(false));
        let body = Deadlined::new(
            Bytewise(sent.clone()),
            Duration::from_secs(30),
            Arc::clone(&expired),
        );
        let frames = frames(body).await.unwrap();
        assert_eq!(frames.len(), sent.len().div_ceil(CHUNK));
        assert_eq!(frames.concat(), sent);
        assert!(!expired.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_body_still_arriving_at_its_deadline_ends_in_an_error() {
        let expired = Arc::new(AtomicBool::new(false));
        let never = axum::body::Body::from_stream(futures_util::stream::pending::<
            Result<Bytes, Infallible>,
        >());
        let body = Deadlined::new(never, Duration::from_millis(100), Arc::clone(&expired));
        let error = frames(body).await.unwrap_err();
        assert!(error.is::<BodyTimedOut>(), "{error}");
        assert!(expired.load(Ordering::Relaxed));
    }
}
