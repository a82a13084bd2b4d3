//! Where events go: the one interface through which the authority and the gateway append to the
//! installation's audit log. In one process it is the authority's durable writer; a gateway run on
//! its own appends through the authority's authenticated endpoint. Either way an append returns
//! only once the event is durable, and fails closed: a caller that cannot append does not act.

use std::future::Future;
use std::pin::Pin;

use crate::event::Event;

/// A boxed future, as [`AuditSink`] returns (object-safe without a macro crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The audit log could not be written, so the operation must not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit log could not be written")]
pub struct AuditUnavailable;

/// An audit log that takes events.
pub trait AuditSink: Send + Sync {
    /// Appends `event` (bounded to [`crate::event::MAX_EVENT_BYTES`] on the way), returning its
    /// sequence number once it is durable.
    fn append<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<i64, AuditUnavailable>>;

    /// The installation's key for redacted values (HMAC-SHA256), so that what is recorded can be
    /// matched with `mandate audit hash` and never read back.
    fn hmac_key(&self) -> &[u8];
}
