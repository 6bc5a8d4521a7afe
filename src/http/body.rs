//! The response body that sends ready frames and holds a scrape's slot
//! under `--web.max-requests` until hyper has written it out.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

/// A response body of ready frames that keeps the scrape slot it was
/// given until hyper has written it out.
///
/// Several frames let a scrape send the parts of `/metrics` as they are
/// stored, shared with every other scrape, with no copy into one buffer.
///
/// hyper drops a body as soon as the body reports its end, which for a
/// plain `Full<Bytes>` is as soon as its one frame has been taken, before
/// any of it reaches the socket. While it holds a slot, this body reports
/// no end after its last frame; so hyper, once its write buffer holds more
/// than [`MAX_BUFFER_BYTES`](super::server), flushes it to the socket before it looks at
/// the body again, finds the response complete, and drops the body and slot.
pub struct ResponseBody {
    /// Frames not yet taken, in order; none is empty.
    frames: VecDeque<Bytes>,
    /// Bytes in `frames`.
    remaining: u64,
    slot: Option<OwnedSemaphorePermit>,
}

impl ResponseBody {
    pub(super) fn new(data: Bytes) -> Self {
        Self::frames(vec![data], None)
    }

    pub(super) fn empty() -> Self {
        Self::frames(Vec::new(), None)
    }

    pub(super) fn frames(frames: Vec<Bytes>, slot: Option<OwnedSemaphorePermit>) -> Self {
        let frames: VecDeque<Bytes> = frames.into_iter().filter(|f| !f.is_empty()).collect();
        let remaining = frames.iter().map(|frame| frame.len() as u64).sum();
        Self {
            frames,
            remaining,
            slot,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(frame) => {
                this.remaining -= frame.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            None => {
                this.slot = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.slot.is_none() && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl ResponseBody {
    /// The bytes not yet sent: the whole body before the first frame is taken.
    pub(super) fn remaining(&self) -> u64 {
        self.remaining
    }
}
