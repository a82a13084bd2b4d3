//! `mandate bench`: token exchange throughput over HTTP on loopback against a real server with a
//! durable SQLite database in a temporary directory, driven by concurrent clients in this process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_core::{assertion, dpop, SecretKey};
use mandate_server::issuer::IssuerKeys;
use mandate_server::revocation::Revocations;
use mandate_server::{AppState, Config};
use mandate_store::Store;
use serde_json::json;

use crate::cli::BenchArgs;
use crate::client::{random_id, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE};
use crate::ctx::Ctx;

const AUD: &str = "https://api.example";

async fn register(store: &Store, name: &str, now: i64) -> Result<SecretKey> {
    crate::cmd_server::register_with_new_key(store, &name.parse()?, None, "api:*", AUD, now).await
}

/// The planner's client: signs a fresh client assertion and DPoP proof per request.
#[derive(Clone)]
struct Signer {
    key: SecretKey,
    issuer: String,
    token_url: String,
}

impl Signer {
    fn sign(&self) -> (String, String) {
        let n = mandate_server::now();
        (
            assertion::make(&self.key, "agent:planner", &self.issuer, n, &random_id()),
            dpop::make_proof(&self.key, "POST", &self.token_url, n, &random_id(), None),
        )
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        mut form: Vec<(&str, String)>,
        signed: (String, String),
    ) -> Result<reqwest::Response> {
        form.push(("client_assertion_type", assertion::ASSERTION_TYPE.into()));
        form.push(("client_assertion", signed.0));
        Ok(http
            .post(&self.token_url)
            .form(&form)
            .header("DPoP", signed.1)
            .send()
            .await?)
    }
}

struct Counters {
    stop: AtomicBool,
    done: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mandate-bench-{}", random_id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open_sqlite(&dir.join("bench.db")).await?;
    let now = mandate_server::now();
    IssuerKeys::ensure(&store, &dir.join("keys"), now).await?;
    let planner = register(&store, "agent:planner", now).await?;
    register(&store, "agent:coder", now).await?;
    let keys = IssuerKeys::load(&store, &dir.join("keys")).await?;
    let revocations = Revocations::load(&store).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let cfg = Config {
        issuer: issuer.clone(),
        keys_dir: dir.join("keys"),
        enrollment_ttl: 900,
        environment: "bench".into(),
        // Throughput from one loopback source is what is measured: no per-source limits.
        limits: mandate_server::Limits {
            per_source_rps: 0,
            max_connections_per_source: mandate_server::Limits::default().max_connections,
            max_connections_per_network: mandate_server::Limits::default().max_connections,
            ..mandate_server::Limits::default()
        },
        data_api_paths: mandate_server::default_data_api_paths(),
    };
    let policy = Arc::new(mandate_policy::DecisionPoint::embedded(Arc::new(
        mandate_policy::LivePolicy::fixed(crate::policy_pack::policy()?),
    )));
    let server = tokio::spawn(mandate_server::serve(
        listener,
        Arc::new(AppState::new(
            cfg,
            store,
            keys,
            revocations,
            policy,
            mandate_server::audit::AuditLog::open(&dir.join("keys"), &issuer)?,
        )),
        std::future::pending(),
    ));

    let signer = Signer {
        key: planner,
        token_url: format!("{issuer}/oauth2/token"),
        issuer,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    // One parent mandate for the planner, as a real planner would hold.
    let own = vec![
        ("grant_type", "client_credentials".to_string()),
        ("scope", "api:*".into()),
        ("audience", AUD.into()),
    ];
    let v: serde_json::Value = signer.post(&http, own, signer.sign()).await?.json().await?;
    let subject = v["access_token"]
        .as_str()
        .context("bench setup: no parent mandate")?
        .to_string();

    // The load generator signs assertions and proofs before the clock starts, as wrk-style
    // generators prepare requests: what is measured is the server, not the client's signing.
    // When they run out, requests are signed inline.
    let presigned: Vec<(String, String)> = (0..a.seconds as usize * a.presign_per_second)
        .map(|_| signer.sign())
        .collect();
    let queue = Arc::new(Mutex::new(presigned));
    let counters = Arc::new(Counters {
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let mut tasks = vec![];
    for _ in 0..a.concurrency {
        let (http, signer, subject, queue, c) = (
            http.clone(),
            signer.clone(),
            subject.clone(),
            queue.clone(),
            counters.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            while !c.stop.load(Ordering::Relaxed) {
                let signed = queue
                    .lock()
                    .expect("queue lock")
                    .pop()
                    .unwrap_or_else(|| signer.sign());
                let form = vec![
                    ("grant_type", TOKEN_EXCHANGE.to_string()),
                    ("subject_token", subject.clone()),
                    ("subject_token_type", ACCESS_TOKEN_TYPE.into()),
                    ("requested_actor", "agent:coder".into()),
                    ("scope", "api:read".into()),
                ];
                let t = Instant::now();
                let ok = match signer.post(&http, form, signed).await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        tracing::warn!(%status, body, "an exchange failed");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an exchange failed");
                        false
                    }
                };
                lat.push(t.elapsed());
                let counter = if ok { &c.done } else { &c.failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    counters.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await?);
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let ok = counters.done.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let rate = ok as f64 / elapsed;
    let out = json!({
        "exchanges": ok, "failed": failed, "seconds": elapsed, "exchanges_per_second": rate,
        "concurrency": a.concurrency, "presigned_per_second": a.presign_per_second,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
    });
    ctx.print(&out, || {
        format!(
            "token exchange over HTTP (SQLite durable, {} clients): {rate:.0} exchanges/s, p50 {:.2} ms, p99 {:.2} ms, {failed} failed",
            a.concurrency, pct(0.5), pct(0.99)
        )
    });
    Ok(())
}
