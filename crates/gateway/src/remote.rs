//! The hooks of a gateway run apart from the authority (`mandate gateway --authority URL`):
//!
//! - [`RemoteAuth`] authenticates callers with a [`Verifier`] that follows the authority's JWKS
//!   and revocation feed (one view for every audience the gateway serves); DPoP proofs are spent
//!   in this process's bounded memory ([`REPLAY_CAPACITY`], refusing when full), since a proof
//!   names this gateway's URL and no other endpoint accepts it.
//! - [`RemoteAudit`] appends events to the authority's log (`POST /audit/v1/events`) with the
//!   gateway's own `mandate:audit` mandate and a fresh DPoP proof per request, concurrent appends
//!   batched into one request; an append not durable within [`AUDIT_TIMEOUT`], or failed, is
//!   [`AuditUnavailable`], so the call is refused (fail closed).
//!   Its HMAC key is the installation's, read once from `GET /audit/v1/key`, so that redacted
//!   values match `mandate audit hash` on the authority.
//! - [`approvals::RemoteApprovals`] holds calls at the authority's approval desk
//!   (`POST /approvals/v1/holds`, `/releases`) with the same mandate: the one desk every
//!   approver votes at, whichever gateway holds the call.
//!
//! What the revocation feed does not carry: `mandate agent disable` is not a feed entry (it is
//! the reversible "no new mandates" switch; only `revoke` is on the feed). A gateway on its own
//! therefore cannot refuse a disabled holder's mandates that are still valid, as the authority's
//! own gateway does: they are accepted until they expire (the agent's `max_ttl` at most), and
//! `mandate revoke agent NAME` cuts them off here within a second. Closing that gap needs a feed
//! entry for disable and enable, which older followers would not understand, so it waits for a
//! versioned feed. Likewise a bearer mandate is accepted if the authority issued it (it issues
//! them only to principals registered with bearer allowed); a later change of that setting is
//! not seen here.

use std::sync::Arc;
use std::time::Duration;

use mandate_audit::event::Event;
use mandate_audit::sink::{AuditSink, AuditUnavailable, BoxFuture as SinkFuture};
use mandate_core::MandateClaims;
use mandate_verify::{Presentation, Refusal, Verifier};

use crate::gateway::{Authenticate, BoxFuture, Presented};

/// Most DPoP proofs a gateway remembers at once: a proof is kept for its 60 s window (plus
/// skew), so this holds about 7,000 calls a second; over it, calls are refused
/// (`replay_cache_full`), never let through.
pub const REPLAY_CAPACITY: usize = 500_000;

/// How long one append to the authority may take before the call is refused.
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How old the revocation view may be before every caller is refused (`revocations_stale`):
/// the feed is long-polled (an answer at least every 5 s, and at once on a revocation), so a
/// healthy view is never this old; an authority unreachable for longer stops the gateway.
pub const MAX_STALENESS: Duration = Duration::from_secs(10);

/// Most bytes of an answer from the authority's audit endpoints that are read.
const MAX_ANSWER: usize = 64 * 1024;

/// Authenticates callers against the authority's keys and revocations, without its database.
pub struct RemoteAuth {
    verifier: Verifier,
}

impl RemoteAuth {
    /// The hook over `verifier` (made with a [`mandate_verify::MemoryReplay`] of
    /// [`REPLAY_CAPACITY`], its follower running).
    pub fn new(verifier: Verifier) -> Self {
        RemoteAuth { verifier }
    }

    /// The verifier (for readiness: `/healthz`).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl Authenticate for RemoteAuth {
    fn authenticate<'a>(
        &'a self,
        p: &'a Presented<'a>,
    ) -> BoxFuture<'a, Result<MandateClaims, Refusal>> {
        Box::pin(async move {
            let (authorization, dpop) = crate::presentation::authorization_and_proof(p.headers)?;
            let presentation = Presentation {
                authorization,
                dpop,
                method: p.method.as_str(),
                url: p.url,
            };
            let r = self.verifier.verify_for(&presentation, p.audience).await;
            match r {
                Ok(v) => Ok(v.mandate.into_claims()),
                Err(e) => {
                    // Strangers' refusals are counted (`/metrics`, outcome `unauthenticated`) and
                    // logged at debug, never one event each at the authority.
                    tracing::debug!(code = %e.code, peer = ?p.peer, "presentation refused");
                    Err(e)
                }
            }
        })
    }

    fn still_valid(&self, claims: &MandateClaims, now: i64) -> bool {
        self.verifier.still_valid(claims, now)
    }
}

/// The gateway's own standing at the authority: its `mandate:audit` mandate (kept and renewed by
/// the implementer) and DPoP proofs made with the key it is bound to. Neither is ever logged.
pub trait OwnMandate: Send + Sync {
    /// The mandate to present now; `renew` asks for a fresh one (after a `401`).
    fn mandate(&self, renew: bool) -> BoxFuture<'_, Result<String, String>>;

    /// A DPoP proof for `method` and `url`, bound to `token`.
    fn proof(&self, method: &str, url: &str, token: &str) -> String;
}

/// Why the authority's audit endpoints could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No mandate could be had.
    #[error("no mandate:audit mandate: {0}")]
    Mandate(String),
    /// The request did not complete.
    #[error("the authority at {url} could not be reached: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What failed.
        message: String,
    },
    /// The authority refused.
    #[error("{url} answered HTTP {status}: {description}")]
    Refused {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// The answer's `error_description`, if any.
        description: String,
    },
    /// The answer was not what the endpoint answers.
    #[error("{0}")]
    Malformed(String),
}

/// Appends to the authority's audit log over its authenticated endpoint. Appends made while
/// [`MAX_IN_FLIGHT`] requests are already out are queued and sent together, up to
/// [`MAX_BATCH`] events a request (the authority takes as many): under load a request carries
/// many calls' events, and alone an event goes at once.
pub struct RemoteAudit {
    link: Arc<Link>,
    queue: tokio::sync::mpsc::Sender<Pending>,
}

/// Where and how events are sent.
struct Link {
    events_url: String,
    health_url: String,
    http: reqwest::Client,
    own: Arc<dyn OwnMandate>,
    key: Vec<u8>,
    health: AppendHealth,
}

/// Whether the log can be written, as the appends found it: why the last one to finish failed,
/// until one succeeds or a probe of the authority's `GET /audit/v1/health` answers that the log
/// takes events (none made yet: healthy, the key was just read with the same mandate). Each
/// failure has a number, so that a probe sent before a later failure does not clear it.
#[derive(Default)]
struct AppendHealth(std::sync::Mutex<(u64, Option<String>)>);

impl AppendHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Option<String>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn succeeded(&self) {
        self.lock().1 = None;
    }

    fn failed(&self, why: String) {
        let mut h = self.lock();
        h.0 += 1;
        h.1 = Some(why);
    }

    fn failing(&self) -> Option<String> {
        self.lock().1.clone()
    }

    /// The current failure's number, while failing.
    fn failure(&self) -> Option<u64> {
        let h = self.lock();
        h.1.as_ref().map(|_| h.0)
    }

    /// A probe made during failure `n` found the log writable: cleared, unless another append
    /// has failed since.
    fn recovered(&self, n: u64) {
        let mut h = self.lock();
        if h.0 == n {
            h.1 = None;
        }
    }
}

/// An event waiting to be sent, and who waits for its seq.
struct Pending {
    event: Event,
    reply: tokio::sync::oneshot::Sender<Result<i64, AuditUnavailable>>,
}

/// Most events in one append (the authority's bound, `/audit/v1/events`).
pub const MAX_BATCH: usize = 64;
/// Most append requests out at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// How often the authority's `GET /audit/v1/health` is asked while the last append failed.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Most events waiting to be sent; an append finding the queue full waits (within its 5 s).
const MAX_QUEUED: usize = 4096;

impl RemoteAudit {
    /// Reads the installation's HMAC key from `authority` (the issuer URL) with `own`'s mandate;
    /// the sink then appends there (its sender runs on the current runtime until the sink is
    /// dropped).
    pub async fn connect(
        authority: &str,
        http: reqwest::Client,
        own: Arc<dyn OwnMandate>,
    ) -> Result<Self, RemoteError> {
        let base = authority.trim_end_matches('/');
        let key_url = format!("{base}/audit/v1/key");
        let answer = send(&http, &*own, reqwest::Method::GET, &key_url, None).await?;
        let key = answer
            .get("key")
            .and_then(serde_json::Value::as_str)
            .and_then(|k| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .ok()
            })
            .filter(|k| k.len() >= 16)
            .ok_or_else(|| RemoteError::Malformed(format!("{key_url} did not answer a key")))?;
        let link = Arc::new(Link {
            events_url: format!("{base}/audit/v1/events"),
            health_url: format!("{base}/audit/v1/health"),
            http,
            own,
            key,
            health: AppendHealth::default(),
        });
        let (queue, rx) = tokio::sync::mpsc::channel(MAX_QUEUED);
        tokio::spawn(sender(link.clone(), rx));
        tokio::spawn(probe(Arc::downgrade(&link)));
        Ok(RemoteAudit { link, queue })
    }

    /// Appends `events` in one request (each bounded first, as the authority bounds them) and
    /// returns their sequence numbers once the authority says they are durable.
    pub async fn append_all(&self, events: &[Event]) -> Result<Vec<i64>, RemoteError> {
        self.link.append_all(events).await
    }

    /// Why the log cannot be written, when the last append to finish failed (refused, the
    /// authority unreachable, or no answer within [`AUDIT_TIMEOUT`]) and none has succeeded
    /// since, or a probe found the log writable again ([`PROBE_EVERY`]): every call is refused
    /// meanwhile (`/healthz` says so).
    pub fn failing(&self) -> Option<String> {
        self.link.health.failing()
    }
}

impl Link {
    /// Whether the authority says its log takes events (`GET /audit/v1/health` answered 200 ok).
    async fn probe(&self) -> Result<(), RemoteError> {
        let answer = send(
            &self.http,
            &*self.own,
            reqwest::Method::GET,
            &self.health_url,
            None,
        )
        .await?;
        if answer.get("status").and_then(serde_json::Value::as_str) == Some("ok") {
            Ok(())
        } else {
            Err(RemoteError::Malformed(format!(
                "{} answered 200 without status ok",
                self.health_url
            )))
        }
    }

    async fn append_all(&self, events: &[Event]) -> Result<Vec<i64>, RemoteError> {
        let bounded: Vec<Event> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.bound(&self.key);
                e
            })
            .collect();
        let body =
            serde_json::to_value(&bounded).map_err(|e| RemoteError::Malformed(e.to_string()))?;
        let answer = send(
            &self.http,
            &*self.own,
            reqwest::Method::POST,
            &self.events_url,
            Some(&body),
        )
        .await?;
        let seqs: Vec<i64> = answer
            .get("seqs")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .filter(|s: &Vec<i64>| s.len() == events.len())
            .ok_or_else(|| {
                RemoteError::Malformed("the authority's answer has no seq for each event".into())
            })?;
        Ok(seqs)
    }
}

/// While the last append failed, asks the authority every [`PROBE_EVERY`] whether its log takes
/// events again (`GET /audit/v1/health`, which writes nothing), and clears the failure when it
/// answers `200 {"status": "ok"}`: a node out of its balancer gets no calls, so without this it
/// would never learn that the authority is back. Ends with the sink.
async fn probe(link: std::sync::Weak<Link>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(link) = link.upgrade() else { return };
        let Some(n) = link.health.failure() else {
            continue;
        };
        match link.probe().await {
            Ok(()) => {
                tracing::info!("the authority's audit log takes events again");
                link.health.recovered(n);
            }
            Err(e) => tracing::debug!(error = %e, "the authority's audit log is still unavailable"),
        }
    }
}

/// Takes what is queued (at most [`MAX_BATCH`]) once a request slot is free, and sends it as one
/// append; every waiter gets its seq, or `AuditUnavailable` if the append failed.
async fn sender(link: Arc<Link>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // A waiter that gave up (its 5 s passed) is not sent: its call was already refused.
        let pending: Vec<Pending> = std::mem::take(&mut batch)
            .into_iter()
            .filter(|p| !p.reply.is_closed())
            .collect();
        if pending.is_empty() {
            continue;
        }
        let link = link.clone();
        tokio::spawn(async move {
            let events: Vec<Event> = pending.iter().map(|p| p.event.clone()).collect();
            match link.append_all(&events).await {
                Ok(seqs) => {
                    link.health.succeeded();
                    for (p, seq) in pending.into_iter().zip(seqs) {
                        let _ = p.reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    tracing::error!(events = events.len(), first = %events[0].id, error = %e, "the authority's audit log could not be written; the calls are refused");
                    link.health.failed(e.to_string());
                    for p in pending {
                        let _ = p.reply.send(Err(AuditUnavailable));
                    }
                }
            }
            drop(slot);
        });
    }
}

impl AuditSink for RemoteAudit {
    fn append<'a>(&'a self, event: &'a Event) -> SinkFuture<'a, Result<i64, AuditUnavailable>> {
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let pending = Pending {
                event: event.clone(),
                reply,
            };
            // The whole wait (queue, request, answer) is bounded: past it the call is refused.
            let waited = tokio::time::timeout(AUDIT_TIMEOUT, async {
                self.queue
                    .send(pending)
                    .await
                    .map_err(|_| AuditUnavailable)?;
                answer.await.map_err(|_| AuditUnavailable)?
            })
            .await;
            match waited {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(event = %event.id, "no answer from the authority's audit log within {} s; the call is refused", AUDIT_TIMEOUT.as_secs());
                    self.link.health.failed(format!(
                        "no answer from the authority's audit log within {} s",
                        AUDIT_TIMEOUT.as_secs()
                    ));
                    Err(AuditUnavailable)
                }
            }
        })
    }

    fn hmac_key(&self) -> &[u8] {
        &self.link.key
    }
}

/// One authenticated exchange with the authority within [`AUDIT_TIMEOUT`]: a fresh proof per
/// attempt, and on a `401` one more attempt with a renewed mandate.
async fn send(
    http: &reqwest::Client,
    own: &dyn OwnMandate,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, RemoteError> {
    send_within(http, own, method, url, body, AUDIT_TIMEOUT).await
}

/// [`send`] within `limit` (a long poll's wait plus [`AUDIT_TIMEOUT`]).
pub(crate) async fn send_within(
    http: &reqwest::Client,
    own: &dyn OwnMandate,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
    limit: Duration,
) -> Result<serde_json::Value, RemoteError> {
    let exchange = async {
        let mut renew = false;
        loop {
            let token = own.mandate(renew).await.map_err(RemoteError::Mandate)?;
            let proof = own.proof(method.as_str(), url, &token);
            let mut req = http
                .request(method.clone(), url)
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| RemoteError::Unreachable {
                url: url.to_string(),
                message: without_url(e),
            })?;
            let status = resp.status().as_u16();
            if status == 401 && !renew {
                renew = true;
                continue;
            }
            let text = read_bounded(resp)
                .await
                .map_err(|message| RemoteError::Unreachable {
                    url: url.to_string(),
                    message,
                })?;
            let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            if status != 200 {
                let description = v
                    .as_ref()
                    .and_then(|v| v.get("error_description").or_else(|| v.get("reason")))
                    .and_then(serde_json::Value::as_str)
                    .map(|d| mandate_core::jws::scrub_tokens(d).into_owned())
                    .unwrap_or_default();
                return Err(RemoteError::Refused {
                    url: url.to_string(),
                    status,
                    description,
                });
            }
            return v.ok_or_else(|| RemoteError::Malformed(format!("{url} answered no JSON")));
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| RemoteError::Unreachable {
            url: url.to_string(),
            message: format!("no answer within {} s", limit.as_secs()),
        })?
}

/// What the HTTP client said, without the URL (said separately).
fn without_url(e: reqwest::Error) -> String {
    let connect = e.is_connect();
    let s = mandate_core::causes::with_causes(&e.without_url());
    if connect {
        format!("cannot connect ({s})")
    } else {
        s
    }
}

/// The answer's body, at most [`MAX_ANSWER`] bytes.
async fn read_bounded(resp: reqwest::Response) -> Result<String, String> {
    use futures_util::StreamExt;
    let mut buf = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.without_url().to_string())?;
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

pub mod approvals;

#[cfg(test)]
mod tests;
