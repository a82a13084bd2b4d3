//! Request bodies: one framing, and a deadline. A request with both `Content-Length` and
//! `Transfer-Encoding` is refused. The deadline: the whole body must have arrived within `body_timeout` of the
//! request's headers, however it trickles (a per-read timeout would let one byte every few
//! seconds hold a connection for hours). Past the deadline, reading the body fails, and the
//! handler refuses the request as it refuses any body it cannot read.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use http_body::{Frame, SizeHint};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}: send it at once")]
pub struct BodyTimedOut(Duration);

/// A body whose reading fails once its deadline has passed.
pub struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The layer: refuses a request framed two ways (`Content-Length` and `Transfer-Encoding`
/// together, which a proxy in front might read differently: request smuggling, RFC 9112 §6.3),
/// and gives every other request's body its deadline, counted from now.
pub async fn with_deadline(
    State(limit): State<Duration>,
    req: Request,
) -> Result<Request, crate::api_error::ApiError> {
    let h = req.headers();
    if h.contains_key(axum::http::header::CONTENT_LENGTH)
        && h.contains_key(axum::http::header::TRANSFER_ENCODING)
    {
        return Err(crate::api_error::ApiError::bad_request(
            "the request has both Content-Length and Transfer-Encoding: send one",
        ));
    }
    Ok(req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        })
    }))
}
