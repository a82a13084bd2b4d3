//! Per-source rate limits (GCRA, through the `governor` crate): each source (an IPv4 address or
//! an IPv6 /64, see [`Source`]) may make `per_source_rps` requests per second with bursts of
//! `per_source_burst`. A request over the limit is answered `429 Too Many Requests` with
//! `Retry-After` before anything else is done for it, and counted as an unauthenticated refusal.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::{Limits, Source};
use crate::refusals::Refused;
use crate::state::AppState;

/// The per-source limiter, or none when limits are off.
pub struct SourceLimiter {
    limiter: Option<DefaultKeyedRateLimiter<Source>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("on", &self.limiter.is_some())
            .finish()
    }
}

impl SourceLimiter {
    /// A limiter for `limits` (off when `per_source_rps` is 0).
    pub fn new(limits: &Limits) -> Self {
        let limiter = NonZeroU32::new(limits.per_source_rps).map(|rps| {
            let burst =
                NonZeroU32::new(limits.per_source_burst.max(limits.per_source_rps)).unwrap_or(rps);
            RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        SourceLimiter {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `source`'s allowance; `Err(seconds)` says when to retry.
    pub fn check(&self, source: Source) -> Result<(), u64> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        l.check_key(&source).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets sources whose allowance is full again, so memory holds only recent sources.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// How many sources are remembered.
    pub fn sources(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

/// The rate-limiting layer.
pub async fn limit(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(source) = crate::pdp::peer_source(req.extensions()) else {
        return next.run(req).await;
    };
    match st.limiter.check(source) {
        Ok(()) => next.run(req).await,
        Err(retry) => {
            let retry = retry.max(1);
            let description = format!("too many requests from {source}: retry after {retry} s");
            st.refusals.record(
                Some(source),
                Refused {
                    action: "request",
                    code: "rate_limited",
                    reason: "too many requests",
                    claimed: None,
                },
            );
            let body =
                serde_json::json!({"error": "rate_limited", "error_description": description});
            let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
    }
}

/// Forgets idle sources every few seconds, until stopped.
pub async fn forget_idle_sources(st: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        st.limiter.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_waits_and_others_are_unaffected() {
        let l = SourceLimiter::new(&Limits {
            per_source_rps: 2,
            per_source_burst: 3,
            ..Limits::default()
        });
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        let wait = l.check(a).unwrap_err();
        assert!((1..=1).contains(&wait), "{wait}");
        assert!(l.check(b).is_ok());
        let off = SourceLimiter::new(&Limits {
            per_source_rps: 0,
            ..Limits::default()
        });
        for _ in 0..10_000 {
            assert!(off.check(a).is_ok());
        }
    }
}
