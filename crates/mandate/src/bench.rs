//! `mandate bench`: token exchange throughput over HTTP on loopback against a real server with a
//! durable SQLite database in a temporary directory, driven by concurrent clients in this process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_core::{assertion, dpop, PrincipalName, SecretKey};
use mandate_server::issuer::IssuerKeys;
use mandate_server::{AppState, Config};
use mandate_store::{NewKey, NewPrincipal, Store};
use serde_json::json;

use crate::cli::BenchArgs;
use crate::client::{random_id, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE};
use crate::ctx::Ctx;

async fn register(store: &Store, name: &str, scopes: &str, now: i64) -> Result<SecretKey> {
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    store
        .create_principal(&NewPrincipal {
            name: name.into(),
            kind: name.split(':').next().unwrap_or("agent").into(),
            role: None,
            allow_bearer: false,
            ceiling_scopes: scopes.into(),
            ceiling_audiences: "https://api.example".into(),
            max_ttl_secs: 3600,
            max_depth: 5,
            key: Some(NewKey {
                kid: key.public().thumbprint(),
                public_key: key.public().x(),
            }),
            now,
        })
        .await?;
    Ok(key)
}

pub async fn run(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mandate-bench-{}", random_id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open_sqlite(&dir.join("bench.db")).await?;
    let now = mandate_server::now();
    IssuerKeys::ensure(&store, &dir.join("keys"), now).await?;
    let planner = register(&store, "agent:planner", "api:*", now).await?;
    register(&store, "agent:coder", "api:*", now).await?;
    let keys = IssuerKeys::load(&store, &dir.join("keys")).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(AppState::new(
        Config {
            issuer: issuer.clone(),
            keys_dir: dir.join("keys"),
            enrollment_ttl: 900,
        },
        store,
        keys,
    ));
    let server = tokio::spawn(mandate_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let token_url = format!("{issuer}/oauth2/token");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let pname: PrincipalName = "agent:planner".parse()?;
    // One parent mandate for the planner, as a real planner would hold.
    let subject = {
        let n = mandate_server::now();
        let form = [
            ("grant_type", "client_credentials".to_string()),
            ("scope", "api:*".into()),
            ("audience", "https://api.example".into()),
            ("client_assertion_type", assertion::ASSERTION_TYPE.into()),
            (
                "client_assertion",
                assertion::make(&planner, pname.as_str(), &issuer, n, &random_id()),
            ),
        ];
        let r = http
            .post(&token_url)
            .form(&form)
            .header(
                "DPoP",
                dpop::make_proof(&planner, "POST", &token_url, n, &random_id(), None),
            )
            .send()
            .await?;
        let v: serde_json::Value = r.json().await?;
        v["access_token"]
            .as_str()
            .context("bench setup: no token")?
            .to_string()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for _ in 0..a.concurrency {
        let (http, token_url, issuer, planner, subject) = (
            http.clone(),
            token_url.clone(),
            issuer.clone(),
            planner.clone(),
            subject.clone(),
        );
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            while !stop.load(Ordering::Relaxed) {
                let n = mandate_server::now();
                let form = [
                    ("grant_type", TOKEN_EXCHANGE.to_string()),
                    ("subject_token", subject.clone()),
                    ("subject_token_type", ACCESS_TOKEN_TYPE.into()),
                    ("requested_actor", "agent:coder".into()),
                    ("scope", "api:read".into()),
                    ("client_assertion_type", assertion::ASSERTION_TYPE.into()),
                    (
                        "client_assertion",
                        assertion::make(&planner, "agent:planner", &issuer, n, &random_id()),
                    ),
                ];
                let proof = dpop::make_proof(&planner, "POST", &token_url, n, &random_id(), None);
                let t = Instant::now();
                let ok = match http
                    .post(&token_url)
                    .form(&form)
                    .header("DPoP", proof)
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await?);
    }
    server.abort();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    let ok = done.load(Ordering::Relaxed);
    let out = json!({
        "exchanges": ok, "failed": failed.load(Ordering::Relaxed), "seconds": elapsed.as_secs_f64(),
        "exchanges_per_second": ok as f64 / elapsed.as_secs_f64(), "concurrency": a.concurrency,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99)},
    });
    let _ = std::fs::remove_dir_all(&dir);
    ctx.print(&out, || format!(
        "token exchange over HTTP (SQLite durable, {} clients): {:.0} exchanges/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
        a.concurrency, out["exchanges_per_second"].as_f64().unwrap_or(0.0), pct(0.5), pct(0.99), out["failed"]
    ));
    Ok(())
}
