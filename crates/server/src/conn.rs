//! Accepting and serving connections, with the bounds that keep one client from holding the
//! server: at most `max_connections` open at once (new ones wait in the listen backlog, and the
//! first wait in every 10 s is logged), at most `max_connections_per_source` from one source
//! (more are closed on accept, also logged), a deadline for each request's headers (`header_timeout`,
//! from accept or from the previous response, so it is also the keep-alive idle time), a close
//! for connections that move no byte with no request in progress (`idle_timeout`), and a grace
//! period at shutdown. HTTP/1.1 only: HTTP/2 is left to a TLS-terminating proxy in front.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    let mut warned_source: Option<Instant> = None;
    let mut accept_failed: Option<Instant> = None;
    // The global bound is the semaphore's; these count per source.
    let per_source = Slots::new(usize::MAX, limits.max_connections_per_source.max(1));
    'accept: loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached: new connections wait until one closes (raise [limits] max_connections, or find the client holding them)"
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break 'accept,
                }
            }
        };
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
        let Some(slot) = per_source.try_take(source) else {
            if warned_source.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    %source,
                    max_connections_per_source = limits.max_connections_per_source,
                    "a source holds the most connections it may: closing its new connections (raise [limits] max_connections_per_source if it is a proxy)"
                );
                warned_source = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, peer, app, &limits, stop).await;
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

/// What a connection has been doing, for the idle check.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_io_ms: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicUsize,
}

impl Activity {
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
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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
) {
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_io_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let guard = InFlight::new(&svc_activity);
        let app = app.clone();
        async move {
            let res = app.oneshot(req.map(axum::body::Body::new)).await;
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
            changed = stop.changed(), if closing.is_none() => {
                let _ = changed;
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), SHUTDOWN_GRACE));
            }
        }
    }
}
