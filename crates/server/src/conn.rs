//! Accepting and serving connections, with the bounds that keep one client from holding the
//! server: at most `max_connections` open at once, at most `max_connections_per_source` from one
//! source and `max_connections_per_network` from one network (more are closed on accept,
//! logged). At the global bound a connection is closed to make room for the new one: of those
//! waiting for a request's headers or for the rest of its body, the one that has waited longest
//! (so connections that never finish their headers, or their bodies, cannot
//! hold every slot until their timeouts); when every connection has a request in progress with
//! its body read, new ones wait in the listen backlog (logged once per 10 s); a deadline for each request's headers (`header_timeout`,
//! from accept or from the previous response, so it is also the keep-alive idle time), a close
//! for connections that move no byte with no request in progress (`idle_timeout`), and a grace
//! period at shutdown. HTTP/1.1 only: HTTP/2 is left to a TLS-terminating proxy in front.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::limits::{Limits, Slots, Source};

/// How long open connections may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a connection asked to close may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Largest request head (request line and headers) read from a connection.
const MAX_HEAD: usize = 64 * 1024;
/// Least time between two "connection limit reached" log lines.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections finish
/// (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned: Option<Instant> = None;
    let mut warned_evict: Option<Instant> = None;
    let mut evicted_since_warn = 0u64;
    let mut warned_source: Option<Instant> = None;
    let mut accept_failed: Option<Instant> = None;
    // The global bound is the semaphore's; these count per source and per network.
    let per_source = Slots::new(usize::MAX, limits.max_connections_per_source.max(1));
    let per_network = Slots::new(usize::MAX, limits.max_connections_per_network.max(1));
    let open = Arc::new(Open::default());
    'accept: loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors (or another transient failure): say so, and do not
                    // spin on a listener that keeps failing.
                    if accept_failed.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        tracing::error!(error = %e, "accepting a connection failed; retrying");
                        accept_failed = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break 'accept,
        };
        let source = Source::of(peer.ip());
        let held = per_source
            .try_take(source)
            .map(|s| (s, per_network.try_take(source.network_source())));
        let (slot, net_slot) = match held {
            Some((s, Some(n))) => (s, n),
            other => {
                if warned_source.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    let (what, bound, setting) = match other {
                        None => (
                            "source",
                            limits.max_connections_per_source,
                            "max_connections_per_source",
                        ),
                        Some(_) => (
                            "network",
                            limits.max_connections_per_network,
                            "max_connections_per_network",
                        ),
                    };
                    tracing::warn!(
                        %source,
                        network = %source.network(),
                        bound,
                        "a {what} holds the most connections it may: closing its new connections (raise [limits] {setting} if it is a proxy)"
                    );
                    warned_source = Some(Instant::now());
                }
                drop(stream);
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the connection that has waited longest for its
                // headers; if every connection is busy with a request, wait for one to end.
                if open.evict_longest_waiting() {
                    evicted_since_warn += 1;
                    if warned_evict.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        tracing::warn!(
                            max_connections = max,
                            closed = evicted_since_warn,
                            "connection limit reached: closing the connections that waited longest for their request headers or bodies to make room (if this persists, a client is holding connections open; see [limits])"
                        );
                        warned_evict = Some(Instant::now());
                        evicted_since_warn = 0;
                    }
                } else if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached with every connection busy: new connections wait until one closes (raise [limits] max_connections, or find the client holding them)"
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break 'accept,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let (id, activity) = open.register();
            connection(stream, peer, app, &limits, stop, activity).await;
            open.remove(id);
            drop(net_slot);
            drop(slot);
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    drop(listener);
    // Every connection holds a permit until it ends.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(max as u32)).await;
    Ok(())
}

/// The open connections, so that the accept loop can pick one to close when it is full.
#[derive(Default)]
struct Open {
    next: AtomicU64,
    conns: std::sync::Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
}

impl Open {
    fn register(&self) -> (u64, Arc<Activity>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let a = Arc::new(Activity {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(0),
            body_pending: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        self.lock().insert(id, a.clone());
        (id, a)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks a connection to close to make room: of those waiting for a request's headers (no
    /// request in progress) or for the rest of its body, the one that has waited longest; false
    /// when every connection is busy with a request whose body was read. O(open
    /// connections), and only when the bound is reached.
    fn evict_longest_waiting(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|a| !a.evicted.load(Ordering::Relaxed))
            // Waiting for headers or for the rest of a body, oldest first whichever it is: a
            // class order would let connections of the other class evict every newcomer.
            .filter(|a| {
                a.in_flight.load(Ordering::Relaxed) == 0 || a.body_pending.load(Ordering::Relaxed)
            })
            .min_by_key(|a| a.waiting_since());
        match victim {
            Some(a) => {
                a.evicted.store(true, Ordering::Relaxed);
                a.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What a connection has been doing, for the idle check and for eviction.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_io_ms: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the connection began waiting for its next request's
    /// headers (0: since accept); while a request is in progress, when its headers arrived.
    waiting_since_ms: AtomicU64,
    /// The request in progress has a body that has not all arrived.
    body_pending: AtomicBool,
    /// Chosen to be closed to make room.
    evicted: AtomicBool,
    evict: tokio::sync::Notify,
}

impl Activity {
    fn waiting_since(&self) -> Instant {
        self.start + Duration::from_millis(self.waiting_since_ms.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has been idle: no request in progress and no byte moved.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Counts a request as in progress until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        let ms = a.start.elapsed().as_millis() as u64;
        a.waiting_since_ms.store(ms, Ordering::Relaxed);
        InFlight(a.clone())
    }
}

/// A request body that tells its connection whether it has all arrived (so that a connection
/// whose body trickles can be closed to make room), and its request whether it was read to its
/// end (`unread`, so that a response sent before then says `Connection: close`).
struct TrackedBody {
    inner: Incoming,
    activity: Arc<Activity>,
    unread: Arc<AtomicBool>,
}

impl TrackedBody {
    fn new(inner: Incoming, activity: Arc<Activity>, unread: Arc<AtomicBool>) -> Self {
        use hyper::body::Body as _;
        let pending = !inner.is_end_stream();
        activity.body_pending.store(pending, Ordering::Relaxed);
        unread.store(pending, Ordering::Relaxed);
        TrackedBody {
            inner,
            activity,
            unread,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream()
        {
            self.activity.body_pending.store(false, Ordering::Relaxed);
        }
        // A body that failed to arrive stays unread: hyper closes that connection too.
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.unread.store(false, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.activity.body_pending.store(false, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let ms = self.0.start.elapsed().as_millis() as u64;
            self.0.waiting_since_ms.store(ms, Ordering::Relaxed);
        }
        self.0.touch();
    }
}

/// A TCP stream that records when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let guard = InFlight::new(&svc_activity);
        let app = app.clone();
        let body_activity = svc_activity.clone();
        async move {
            let unread = Arc::new(AtomicBool::new(false));
            let tracked = unread.clone();
            let req =
                req.map(|b| axum::body::Body::new(TrackedBody::new(b, body_activity, tracked)));
            let mut res = app.oneshot(req).await;
            // Answered before its body was read (a refusal before the body matters): hyper
            // closes such a connection after the response rather than wait for the rest, so
            // say so, or a client reusing it would send its next request into a closing socket.
            if unread.load(Ordering::Relaxed) {
                if let Ok(res) = &mut res {
                    res.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
            }
            drop(guard);
            res
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Headers: at most 100, in at most 64 KiB (a mandate is at most 16 KiB, a DPoP proof
        // about 1 KiB), instead of hyper's 400 KiB per connection.
        .max_headers(100)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut closing: Option<(Instant, Duration)> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                match closing {
                    Some((since, grace)) if since.elapsed() >= grace => {
                        tracing::debug!(%peer, "connection did not close in time; dropped");
                        return;
                    }
                    Some(_) => {}
                    None if activity.idle_for() >= limits.idle_timeout => {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some((Instant::now(), CLOSE_GRACE));
                    }
                    None => {}
                }
            }
            _ = activity.evict.notified(), if closing.is_none() => {
                if activity.in_flight.load(Ordering::Relaxed) == 0
                    || activity.body_pending.load(Ordering::Relaxed)
                {
                    tracing::debug!(%peer, "closed to make room: it waited longest for its request headers or body");
                    return;
                }
                // A request began after the choice: let it finish, then close.
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), CLOSE_GRACE));
            }
            changed = stop.changed(), if closing.is_none() => {
                let _ = changed;
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), SHUTDOWN_GRACE));
            }
        }
    }
}
