//! `RemoteAudit` against a stand-in authority: concurrent appends share requests, each waiter
//! gets its own seq, every failure (an error status, no authority) is `AuditUnavailable`, and
//! `failing` tells whether the last append failed, until an append succeeds or the authority's
//! health endpoint says its log takes events again.

use std::sync::atomic::{AtomicI64, AtomicU16, AtomicUsize, Ordering};

use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

use super::*;

struct Fixed;

impl OwnMandate for Fixed {
    fn mandate(&self, _renew: bool) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Ok("token".to_string()) })
    }

    fn proof(&self, _method: &str, _url: &str, _token: &str) -> String {
        "proof".into()
    }
}

#[derive(Default)]
struct Authority {
    requests: AtomicUsize,
    next: AtomicI64,
    /// The status appends are answered with (changeable while it runs).
    status: AtomicU16,
    /// The status `GET /audit/v1/health` answers with.
    health: AtomicU16,
    /// Health probes received.
    probes: AtomicUsize,
}

/// A stand-in authority on loopback answering the key and, after `delay`, appends (or `status`).
async fn authority(status: u16, delay: Duration) -> (String, Arc<Authority>) {
    let seen = Arc::new(Authority {
        status: AtomicU16::new(status),
        health: AtomicU16::new(503),
        ..Default::default()
    });
    let s = seen.clone();
    let h = seen.clone();
    let app = axum::Router::new()
        .route(
            "/audit/v1/key",
            get(|| async { Json(json!({"key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})) }),
        )
        .route(
            "/audit/v1/health",
            get(move || {
                let h = h.clone();
                async move {
                    h.probes.fetch_add(1, Ordering::SeqCst);
                    let status = h.health.load(Ordering::SeqCst);
                    let code = axum::http::StatusCode::from_u16(status).unwrap();
                    let body = if status == 200 {
                        json!({"status": "ok"})
                    } else {
                        json!({"status": "audit_unavailable", "reason": "checkpoints failing"})
                    };
                    (code, Json(body))
                }
            }),
        )
        .route(
            "/audit/v1/events",
            post(move |Json(events): Json<Vec<Value>>| {
                let s = s.clone();
                async move {
                    s.requests.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let seqs: Vec<i64> = events
                        .iter()
                        .map(|_| s.next.fetch_add(1, Ordering::SeqCst) + 1)
                        .collect();
                    let status = s.status.load(Ordering::SeqCst);
                    let code = axum::http::StatusCode::from_u16(status).unwrap();
                    (code, Json(json!({"seqs": seqs})))
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

fn event(i: usize) -> Event {
    Event::new(
        "tool.call",
        "agent:coder",
        "mcp.tools/call",
        1_000 + i as i64,
        [i as u8; 16],
    )
}

#[tokio::test]
async fn concurrent_appends_share_requests_and_each_gets_its_own_seq() {
    let (url, seen) = authority(200, Duration::from_millis(100)).await;
    let sink = Arc::new(
        RemoteAudit::connect(&url, reqwest::Client::new(), Arc::new(Fixed))
            .await
            .unwrap(),
    );
    assert_eq!(sink.hmac_key(), [0u8; 32]);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.append(&event(i)).await })
        })
        .collect();
    let mut seqs = vec![];
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 40, "every append has a seq of its own");
    let requests = seen.requests.load(Ordering::SeqCst);
    assert!(requests < 40, "{requests} requests for 40 events");
}

#[tokio::test]
async fn an_authority_that_refuses_or_is_gone_makes_every_append_unavailable() {
    let (url, _) = authority(503, Duration::ZERO).await;
    let sink = RemoteAudit::connect(&url, reqwest::Client::new(), Arc::new(Fixed))
        .await
        .unwrap();
    assert_eq!(sink.append(&event(1)).await, Err(AuditUnavailable));
    let gone = format!(
        "http://{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    );
    let r = RemoteAudit::connect(&gone, reqwest::Client::new(), Arc::new(Fixed)).await;
    assert!(
        matches!(r, Err(RemoteError::Unreachable { .. })),
        "{:?}",
        r.err()
    );
}

#[tokio::test]
async fn failing_names_the_last_appends_failure_until_one_succeeds() {
    let (url, authority) = authority(200, Duration::ZERO).await;
    let sink = RemoteAudit::connect(&url, reqwest::Client::new(), Arc::new(Fixed))
        .await
        .unwrap();
    assert_eq!(sink.failing(), None, "healthy before any append");
    sink.append(&event(1)).await.unwrap();
    assert_eq!(sink.failing(), None);
    authority.status.store(503, Ordering::SeqCst);
    assert_eq!(sink.append(&event(2)).await, Err(AuditUnavailable));
    let why = sink.failing().expect("the failure is remembered");
    assert!(why.contains("503"), "{why}");
    authority.status.store(200, Ordering::SeqCst);
    sink.append(&event(3)).await.unwrap();
    assert_eq!(sink.failing(), None, "an append that succeeds clears it");
}

#[tokio::test]
async fn a_failure_clears_without_any_append_once_the_authoritys_health_answers_ok() {
    let (url, authority) = authority(503, Duration::ZERO).await;
    let sink = RemoteAudit::connect(&url, reqwest::Client::new(), Arc::new(Fixed))
        .await
        .unwrap();
    // Healthy: no probe is sent.
    tokio::time::sleep(PROBE_EVERY + Duration::from_millis(500)).await;
    assert_eq!(authority.probes.load(Ordering::SeqCst), 0);
    assert_eq!(sink.append(&event(1)).await, Err(AuditUnavailable));
    // The health endpoint says unavailable: the failure stays.
    tokio::time::sleep(PROBE_EVERY + Duration::from_millis(500)).await;
    assert!(authority.probes.load(Ordering::SeqCst) >= 1);
    assert!(sink.failing().is_some());
    let appends = authority.requests.load(Ordering::SeqCst);
    authority.health.store(200, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + PROBE_EVERY * 2 + Duration::from_secs(1);
    while sink.failing().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "not cleared by the probe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        authority.requests.load(Ordering::SeqCst),
        appends,
        "cleared by the probe, not by an append"
    );
}

#[test]
fn a_probe_sent_before_a_later_failure_does_not_clear_it() {
    let h = AppendHealth::default();
    assert_eq!(h.failure(), None);
    h.failed("first".into());
    let n = h.failure().unwrap();
    h.failed("second".into());
    h.recovered(n);
    assert_eq!(h.failing().as_deref(), Some("second"));
    h.recovered(h.failure().unwrap());
    assert_eq!(h.failing(), None);
}
