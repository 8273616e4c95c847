//! An answer's body that keeps something until it is sent or dropped: a
//! connection's request counted as busy, a gate's turns and reserved bytes.
//!
//! hyper takes a body's frames as fast as it can queue them (a few tens of
//! KiB per connection), not as fast as the client reads: a large frame is
//! handed out in slices of [`SLICE`], so that the body ends, and what it
//! keeps is given back, only once the client has read nearly all of it.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};

/// The most of an answer handed to hyper at once.
pub const SLICE: usize = 16 * 1024;

/// `body`, keeping `kept` alive until it is sent whole or dropped.
pub struct Kept<T> {
    body: Body,
    /// What is left of a frame larger than [`SLICE`].
    rest: Bytes,
    _kept: T,
}

impl<T> Kept<T> {
    pub fn new(body: Body, kept: T) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            _kept: kept,
        }
    }

    /// The next slice of `rest`.
    fn slice(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(SLICE);
        Frame::data(self.rest.split_to(n))
    }
}

impl<T: Unpin> hyper::body::Body for Kept<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.slice())));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.len() > SLICE => {
                    self.rest = data;
                    Poll::Ready(Some(Ok(self.slice())))
                }
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.len() as u64;
        let inner = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use hyper::body::Body as _;

    use super::*;

    #[tokio::test]
    async fn a_large_answer_is_handed_out_in_slices_and_keeps_until_the_last() {
        let answer: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let kept = std::sync::Arc::new(());
        let mut body = Kept::new(Body::from(answer.clone()), std::sync::Arc::clone(&kept));
        let mut frames = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= SLICE);
            frames.push(data);
            assert_eq!(std::sync::Arc::strong_count(&kept), 2, "kept while unsent");
        }
        assert_eq!(frames.len(), answer.len().div_ceil(SLICE));
        assert_eq!(frames.concat(), answer);
        assert!(hyper::body::Body::is_end_stream(&body));
        drop(body);
        assert_eq!(std::sync::Arc::strong_count(&kept), 1);
    }
}
