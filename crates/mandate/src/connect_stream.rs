//! The Streamable HTTP `GET` stream of `mandate connect`: server-initiated messages of an HTTP
//! upstream (notifications, requests) relayed to the stdio client.
//!
//! Opened once an `initialize` succeeded and the gateway answered an `Mcp-Session-Id` (without a
//! session there is no stream: the stateless revision has none). Each `GET` carries the session,
//! the agent's mandate and a fresh DPoP proof (`htm` GET). Every event's JSON-RPC message is
//! written to stdout through the one writer (lines never interleave with answers). When the stream
//! ends it is opened again after a backoff (0.5 s doubling to 30 s, back to 0.5 s after a stream
//! that delivered something), with a fresh proof and the mandate `held` keeps fresh (renewed once
//! on a `401`), and `Last-Event-ID` set when events had ids. A `405` means the upstream (or the
//! gateway, for a stdio upstream) offers no stream: it is not asked again. A `404` means the
//! session ended; the stream stops until the client initializes again. A newer session replaces
//! the stream.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cmd_connect::{Relay, MAX_LINE};

/// First wait before opening the stream again.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before opening the stream again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long to wait for the gateway's answer to a `GET` (the stream itself has no time limit).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Reads `text/event-stream` bytes incrementally into events, each bounded by [`MAX_LINE`].
#[derive(Default)]
pub(crate) struct SseBuffer {
    buf: String,
}

impl SseBuffer {
    /// Takes `chunk`; returns the events it completed, or `Err` once an event grows past the
    /// bound.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
    ) -> Result<Vec<mandate_gateway::sse::Event>, String> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        if self.buf.contains('\r') {
            self.buf = self.buf.replace("\r\n", "\n");
        }
        let mut out = vec![];
        while let Some(end) = self.buf.find("\n\n") {
            let event: String = self.buf.drain(..end + 2).collect();
            out.extend(mandate_gateway::sse::parse(&event));
        }
        if self.buf.len() > MAX_LINE {
            return Err(format!("an event longer than {MAX_LINE} bytes"));
        }
        Ok(out)
    }
}

/// How one opening of the stream ended.
enum Ended {
    /// Open it again (after the backoff); `delivered`: it carried at least one event.
    Again { delivered: bool },
    /// Do not open it again.
    Stop,
}

/// Keeps the `GET` stream of `session` open until the session changes or ends, or the gateway
/// says there is none; messages go to `out` (the one stdout writer).
pub(crate) async fn follow(relay: Arc<Relay>, session: String, out: mpsc::Sender<String>) {
    let mut last_event_id: Option<String> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut renew = false;
    loop {
        if relay.session().as_deref() != Some(session.as_str()) {
            tracing::debug!("the MCP session changed; its GET stream is not reopened");
            return;
        }
        match open_once(&relay, &session, &out, &mut last_event_id, &mut renew).await {
            Ended::Stop => return,
            Ended::Again { delivered } => {
                if delivered {
                    backoff = FIRST_BACKOFF;
                }
            }
        }
        if out.is_closed() {
            return;
        }
        if !renew {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// One `GET`: relays its events until it ends.
async fn open_once(
    relay: &Relay,
    session: &str,
    out: &mpsc::Sender<String>,
    last_event_id: &mut Option<String>,
    renew: &mut bool,
) -> Ended {
    let renewing = std::mem::take(renew);
    let token = match relay.mandate.get(renewing).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no mandate for the upstream's GET stream; will retry");
            return Ended::Again { delivered: false };
        }
    };
    let proof = relay.proof("GET", &token);
    let mut req = relay
        .http
        .get(&relay.url)
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", session);
    if let Some(p) = relay.protocol() {
        req = req.header("MCP-Protocol-Version", p);
    }
    if let Some(id) = last_event_id.as_deref() {
        req = req.header("Last-Event-ID", id);
    }
    let resp = match tokio::time::timeout(ANSWER_WITHIN, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e.without_url(), "the GET stream could not be opened; will retry");
            return Ended::Again { delivered: false };
        }
        Err(_) => {
            tracing::debug!("no answer to the GET stream's request; will retry");
            return Ended::Again { delivered: false };
        }
    };
    let status = resp.status().as_u16();
    match status {
        200 => {}
        405 => {
            tracing::debug!("the upstream offers no GET stream (405): server-initiated messages come only with answers");
            return Ended::Stop;
        }
        404 => {
            tracing::debug!(
                "the MCP session ended (404): no GET stream until the client initializes again"
            );
            return Ended::Stop;
        }
        401 if !renewing => {
            *renew = true;
            return Ended::Again { delivered: false };
        }
        _ => {
            tracing::warn!(status, "the gateway refused the GET stream; will retry");
            return Ended::Again { delivered: false };
        }
    }
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        tracing::warn!("the GET stream's answer is not text/event-stream; will retry");
        return Ended::Again { delivered: false };
    }
    let mut delivered = false;
    let mut sse = SseBuffer::default();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        let events = match sse.push(&chunk) {
            Ok(e) => e,
            Err(why) => {
                tracing::warn!("the GET stream sent {why}; reopening it");
                break;
            }
        };
        for e in events {
            delivered = true;
            if let Some(id) = e.id.filter(|id| !id.is_empty()) {
                *last_event_id = Some(id);
            }
            // A priming event (an id, no data or empty data) only moves the resumption point.
            let Some(data) = e.data.filter(|d| !d.is_empty()) else {
                continue;
            };
            // One line each: the message is written back in its compact form.
            match serde_json::from_str::<Value>(&data) {
                Ok(v) if v.get("jsonrpc").is_some() => {
                    if out.send(v.to_string()).await.is_err() {
                        return Ended::Stop;
                    }
                }
                _ => {
                    tracing::debug!("an event of the GET stream is not a JSON-RPC message; skipped")
                }
            }
        }
    }
    tracing::debug!("the GET stream ended; reopening it");
    Ended::Again { delivered }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf_lines_come_out_whole() {
        let mut b = SseBuffer::default();
        assert!(b.push(b"id: 7\r\ndata: {\"jsonrpc\":").unwrap().is_empty());
        let events = b.push(b"\"2.0\"}\r\n\r\n: keep-alive\n\n").unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].data.as_deref(), Some("{\"jsonrpc\":\"2.0\"}"));
    }

    #[test]
    fn an_event_past_the_bound_is_refused() {
        let mut b = SseBuffer::default();
        let big = vec![b'x'; MAX_LINE + 1];
        assert!(b.push(&big).is_err());
    }
}
