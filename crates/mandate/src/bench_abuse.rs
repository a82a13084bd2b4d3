//! `mandate bench --abuse`: normal token exchanges measured while the server is abused, against a
//! real server (in this process, durable SQLite in a temporary directory, the default limits).
//!
//! Two phases of `--seconds` each: first the normal load alone, then the same load while other
//! loopback sources (every 127.x address reaches the server) hold 500 idle connections (ten
//! sources of 50, 127.0.2.2 to 127.0.11.2, each in its own /24 so the per-network bound does not
//! turn them away; each reconnects when the server closes it), flood the token endpoint with
//! unauthenticated requests, and post maximal AuthZEN batches as an enforcement point. The normal
//! load comes from 127.0.0.1 at a steady rate, below the per-source limit, as a fleet's exchanges
//! would. Reported per phase: the normal exchanges' latency percentiles, and what the audit log
//! grew by.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_core::{assertion, dpop, SecretKey};
use mandate_server::issuer::IssuerKeys;
use mandate_server::revocation::Revocations;
use mandate_server::{AppState, Config};
use mandate_store::Store;
use serde_json::{json, Value};

use crate::cli::BenchArgs;
use crate::client::{random_id, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE};
use crate::ctx::Ctx;

const AUD: &str = "https://api.example";
/// Normal exchanges per second, from one source (under its limit of 100 requests per second).
const NORMAL_RATE: u64 = 40;

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

struct Running {
    issuer: String,
    addr: SocketAddr,
    store: Store,
    planner: SecretKey,
    pep: SecretKey,
    dir: std::path::PathBuf,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Result<Running> {
    let dir = std::env::temp_dir().join(format!("mandate-bench-abuse-{}", random_id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open_sqlite(&dir.join("bench.db")).await?;
    let now = mandate_server::now();
    IssuerKeys::ensure(&store, &dir.join("keys"), now).await?;
    let reg = |name: &'static str, scopes: &'static str, auds: String| {
        let store = store.clone();
        async move {
            crate::cmd_server::register_with_new_key(
                &store,
                &name.parse()?,
                None,
                scopes,
                &auds,
                now,
            )
            .await
        }
    };
    let planner = reg("agent:planner", "api:*", AUD.into()).await?;
    reg("agent:coder", "api:*", AUD.into()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let pep = reg("agent:pep", "mandate:pdp", issuer.clone()).await?;
    let keys = IssuerKeys::load(&store, &dir.join("keys")).await?;
    let revocations = Revocations::load(&store).await?;
    let cfg = Config {
        issuer: issuer.clone(),
        keys_dir: dir.join("keys"),
        enrollment_ttl: 900,
        environment: "bench".into(),
        limits: mandate_server::Limits::default(),
        data_api_paths: mandate_server::default_data_api_paths(),
    };
    let policy = Arc::new(mandate_policy::DecisionPoint::embedded(Arc::new(
        mandate_policy::LivePolicy::fixed(crate::policy_pack::policy()?),
    )));
    let state = Arc::new(AppState::new(
        cfg,
        store.clone(),
        keys,
        revocations,
        policy,
        mandate_server::audit::AuditLog::open(&dir.join("keys"), &issuer)?,
    ));
    let server = tokio::spawn(mandate_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Ok(Running {
        issuer,
        addr,
        store,
        planner,
        pep,
        dir,
        server,
    })
}

/// A client's assertion and DPoP proof for `POST url`.
fn signed(key: &SecretKey, who: &str, issuer: &str, url: &str) -> (String, String) {
    let n = mandate_server::now();
    (
        assertion::make(key, who, issuer, n, &random_id()),
        dpop::make_proof(key, "POST", url, n, &random_id(), None),
    )
}

async fn token(
    http: &reqwest::Client,
    r: &Running,
    key: &SecretKey,
    who: &str,
    mut form: Vec<(&str, String)>,
) -> Result<reqwest::Response> {
    let url = format!("{}/oauth2/token", r.issuer);
    let (a, p) = signed(key, who, &r.issuer, &url);
    form.push(("client_assertion_type", assertion::ASSERTION_TYPE.into()));
    form.push(("client_assertion", a));
    Ok(http.post(&url).form(&form).header("DPoP", p).send().await?)
}

async fn own_mandate(
    http: &reqwest::Client,
    r: &Running,
    key: &SecretKey,
    who: &str,
    scope: &str,
    aud: &str,
) -> Result<String> {
    let form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("scope", scope.into()),
        ("audience", aud.into()),
    ];
    let v: Value = token(http, r, key, who, form).await?.json().await?;
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("bench setup: no mandate for {who}: {v}"))
}

/// The normal load for `seconds`: exchanges at [`NORMAL_RATE`], each latency recorded.
async fn normal_load(r: &Running, subject: &str, seconds: u64) -> Result<(Vec<Duration>, u64)> {
    let http = reqwest::Client::builder()
        .local_address(source(1))
        .build()?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / NORMAL_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut inflight = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (http, subject) = (http.clone(), subject.to_string());
        let (issuer, planner) = (r.issuer.clone(), r.planner.clone());
        inflight.spawn(async move {
            let url = format!("{issuer}/oauth2/token");
            let (a, p) = signed(&planner, "agent:planner", &issuer, &url);
            let form = [
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject.as_str()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("requested_actor", "agent:coder"),
                ("scope", "api:read"),
                ("client_assertion_type", assertion::ASSERTION_TYPE),
                ("client_assertion", a.as_str()),
            ];
            let t = Instant::now();
            let ok = match http.post(&url).form(&form).header("DPoP", p).send().await {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            (t.elapsed(), ok)
        });
    }
    let mut lat = vec![];
    let mut failed = 0;
    while let Some(x) = inflight.join_next().await {
        let (d, ok) = x?;
        lat.push(d);
        failed += u64::from(!ok);
    }
    lat.sort();
    Ok((lat, failed))
}

#[derive(Default)]
struct AttackCounts {
    stop: AtomicBool,
    idle_opened: AtomicU64,
    idle_held: AtomicU64,
    flood_sent: AtomicU64,
    flood_limited: AtomicU64,
    batches_sent: AtomicU64,
    batches_answered: AtomicU64,
    batches_limited: AtomicU64,
}

/// Holds `n` idle connections from `from`, opening a new one whenever the server closes one.
/// Half send nothing; half send the start of a request and never finish its headers.
async fn hold_idle(addr: SocketAddr, from: IpAddr, n: usize, c: Arc<AttackCounts>) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        set.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while !c.stop.load(Ordering::Relaxed) {
                let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                    return;
                };
                if sock.bind(SocketAddr::new(from, 0)).is_err() {
                    return;
                }
                let Ok(mut conn) = sock.connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                c.idle_opened.fetch_add(1, Ordering::Relaxed);
                if i % 2 == 1 {
                    let _ = conn
                        .write_all(b"GET /oauth2/jwks HTTP/1.1\r\nHost: x\r\n")
                        .await;
                }
                c.idle_held.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(120), conn.read(&mut buf)).await;
                c.idle_held.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Unauthenticated token requests as fast as `tasks` clients can send them, from `from`.
async fn flood(issuer: String, from: IpAddr, tasks: usize, c: Arc<AttackCounts>) {
    let Ok(http) = reqwest::Client::builder().local_address(from).build() else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (http, c, url) = (http.clone(), c.clone(), format!("{issuer}/oauth2/token"));
        set.spawn(async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", "agent:planner"),
                ("client_assertion_type", assertion::ASSERTION_TYPE),
                ("client_assertion", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"),
            ];
            while !c.stop.load(Ordering::Relaxed) {
                c.flood_sent.fetch_add(1, Ordering::Relaxed);
                if let Ok(r) = http.post(&url).form(&form).send().await {
                    if r.status().as_u16() == 429 {
                        c.flood_limited.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = r.bytes().await;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The largest AuthZEN batch the server takes (64 items, a 17-name chain, ~48 KiB), posted in a
/// loop by an enforcement point from `from`.
async fn batches(r: Arc<(String, SecretKey, String)>, from: IpAddr, c: Arc<AttackCounts>) {
    let (issuer, pep, mandate) = (&r.0, &r.1, &r.2);
    let Ok(http) = reqwest::Client::builder().local_address(from).build() else {
        return;
    };
    let chain: Vec<String> = (0..17).map(|i| format!("agent:a{i:03}")).collect();
    let items: Vec<Value> = (0..64)
        .map(|i| json!({"resource": {"type": "mcp_tool", "id": format!("tool_{i}"), "properties": {"server": "github"}},
                        "action": {"name": "tools/call", "properties": {"arguments": {"blob": "x".repeat(700)}}}}))
        .collect();
    let body = json!({"subject": {"type": "agent", "id": "agent:a016", "properties": {"chain": chain}},
                      "action": {"name": "tools/call"}, "evaluations": items});
    let url = format!("{issuer}/access/v1/evaluations");
    while !c.stop.load(Ordering::Relaxed) {
        let proof = dpop::make_proof(
            pep,
            "POST",
            &url,
            mandate_server::now(),
            &random_id(),
            Some(mandate),
        );
        c.batches_sent.fetch_add(1, Ordering::Relaxed);
        let sent = http
            .post(&url)
            .header("Authorization", format!("DPoP {mandate}"))
            .header("DPoP", proof)
            .json(&body)
            .send()
            .await;
        if let Ok(resp) = sent {
            match resp.status().as_u16() {
                200 => c.batches_answered.fetch_add(1, Ordering::Relaxed),
                429 => c.batches_limited.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            let _ = resp.bytes().await;
        }
    }
}

async fn log_size(store: &Store) -> Result<(i64, i64)> {
    let events = store.audit_event_count().await?;
    let bytes = store.audit_body_bytes().await?;
    Ok((events, bytes))
}

fn percentiles(lat: &[Duration]) -> Value {
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| (d.as_secs_f64() * 1e5).round() / 1e2)
    };
    json!({"count": lat.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)})
}

pub async fn run(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    let r = start().await?;
    let http = reqwest::Client::new();
    let subject = own_mandate(&http, &r, &r.planner, "agent:planner", "api:*", AUD).await?;
    let pep_mandate = own_mandate(&http, &r, &r.pep, "agent:pep", "mandate:pdp", &r.issuer).await?;
    // Let the setup's events be integrated before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = log_size(&r.store).await?;
    let (calm, calm_failed) = normal_load(&r, &subject, a.seconds).await?;
    let middle = log_size(&r.store).await?;

    let counts = Arc::new(AttackCounts::default());
    let mut attacks = tokio::task::JoinSet::new();
    // 500 idle connections from ten sources in ten networks (under the per-source bound of 64
    // and the per-network bound of 256 each).
    for s in 2..=11u8 {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, s, 2));
        attacks.spawn(hold_idle(r.addr, from, 50, counts.clone()));
    }
    attacks.spawn(flood(r.issuer.clone(), source(12), 8, counts.clone()));
    let pep = Arc::new((r.issuer.clone(), r.pep.clone(), pep_mandate));
    attacks.spawn(batches(pep.clone(), source(13), counts.clone()));
    attacks.spawn(batches(pep, source(13), counts.clone()));
    // Give the idle connections time to be opened.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_at_start = counts.idle_held.load(Ordering::Relaxed);
    let (abused, abused_failed) = normal_load(&r, &subject, a.seconds).await?;
    let held_at_end = counts.idle_held.load(Ordering::Relaxed);
    counts.stop.store(true, Ordering::Relaxed);
    attacks.abort_all();
    // The last refusal window is written after it ends.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = log_size(&r.store).await?;
    r.server.abort();
    let _ = std::fs::remove_dir_all(&r.dir);

    let c = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let out = json!({
        "seconds_per_phase": a.seconds,
        "normal_rate_per_second": NORMAL_RATE,
        "calm": {"exchanges": percentiles(&calm), "failed": calm_failed,
                 "log_events": middle.0 - before.0, "log_bytes": middle.1 - before.1},
        "abused": {"exchanges": percentiles(&abused), "failed": abused_failed,
                   "log_events": after.0 - middle.0, "log_bytes": after.1 - middle.1},
        "attacks": {
            "idle_connections_held": {"at_start": held_at_start, "at_end": held_at_end, "opened": c(&counts.idle_opened)},
            "flood": {"sent": c(&counts.flood_sent), "rate_limited": c(&counts.flood_limited)},
            "batches": {"sent": c(&counts.batches_sent), "answered": c(&counts.batches_answered), "rate_limited": c(&counts.batches_limited)},
        },
    });
    ctx.print(&out, || {
        format!(
            "normal exchanges ({NORMAL_RATE}/s): calm p50 {} ms p99 {} ms; abused p50 {} ms p99 {} ms ({} failed)\n\
             attacks: {} idle connections held, {} unauthenticated requests ({} rate limited), {} maximal batches ({} answered)\n\
             audit log during the attack: {} events, {} bytes (calm phase: {} events, {} bytes)",
            out["calm"]["exchanges"]["p50_ms"], out["calm"]["exchanges"]["p99_ms"],
            out["abused"]["exchanges"]["p50_ms"], out["abused"]["exchanges"]["p99_ms"], abused_failed,
            held_at_start, c(&counts.flood_sent), c(&counts.flood_limited),
            c(&counts.batches_sent), c(&counts.batches_answered),
            after.0 - middle.0, after.1 - middle.1, middle.0 - before.0, middle.1 - before.1,
        )
    });
    Ok(())
}
