//! The audit log's costs on a real SQLite file (WAL, `synchronous=FULL`):
//!
//! 1. durable appends: C concurrent tasks (C = 1, 16, 64, 256) on the multi-threaded runtime each
//!    build a realistic `token.exchanged` event (as the server does: `Event`, its canonical JSON,
//!    its parties) and call `Store::audit` in a loop; only appends that returned `Ok` count.
//!    Printed: events/s and p50/p99 append latency, once without and once with the integrator
//!    running every 500 ms (as the server runs it: step until nothing is new, each step signing
//!    an Ed25519 checkpoint), so the second figure includes tree building and checkpoints;
//! 2. proofs at 1,000,000 entries: the log is built through `Store::audit` (many concurrent
//!    callers, so the group-commit writer makes big batches) and integrated with `Integrator`;
//!    then inclusion and consistency proof generation (`audit_inclusion_proof`,
//!    `audit_consistency_proof`) and verification (`merkle::verify_inclusion`,
//!    `merkle::verify_consistency`), `audit_root`, and the database's size per event.
//!
//! Run: `cargo bench -p mandate-store --bench audit`. The databases go to a temporary directory
//! under `$MANDATE_BENCH_DIR` if set, else the system's (`/tmp`); it must be on the real disk
//! (not a tmpfs) for the fsync cost to be measured. `MANDATE_BENCH_LOG_SIZE` changes the size of
//! the proof log (default 1,000,000; 0 skips it), `MANDATE_BENCH_SECS` the length of each append
//! run (default 5) and `MANDATE_BENCH_WRITERS` the task counts (default `1,16,64,256`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use mandate_audit::checkpoint::{self, Checkpoint};
use mandate_audit::event::{self, Event};
use mandate_audit::merkle::{self, Hash};
use mandate_store::{AuditRecord, Integrator, Store};
use serde_json::{Map, Value};
use sqlx::{Connection, Row};

const WRITERS: [usize; 4] = [1, 16, 64, 256];
/// Appends finishing in the first half second of a run are not counted (the writer's connection,
/// the page cache and the runtime warm up).
const WARMUP: Duration = Duration::from_millis(500);
/// As the server (`crates/server/src/audit.rs`).
const INTEGRATE_EVERY: Duration = Duration::from_millis(500);
const ORIGIN: &str = "bench.mandate.example";
/// Concurrent callers that build the big log.
const BUILDERS: u64 = 512;
const PROOFS: usize = 2_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SplitMix64: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_le_bytes());
        out[8..].copy_from_slice(&self.next().to_le_bytes());
        out
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
}

/// A token exchange as the token endpoint audits it (`issued_event` in the server).
fn exchange_event(rng: &mut Rng) -> Event {
    let ms = now_ms();
    let jti = rng.hex(22); // 16 random bytes, base64url, as the server makes them
    let mut details = Map::new();
    let exp = ms / 1000 + 300;
    details.insert("scope".into(), "repo:read repo:write files:read".into());
    details.insert("audiences".into(), vec!["https://git.example.com"].into());
    details.insert("lifetime_secs".into(), 300.into());
    details.insert("expires_at".into(), exp.into());
    details.insert("depth".into(), 2.into());
    details.insert("holder".into(), "agent:coder".into());
    details.insert("subject".into(), "user:alice".into());
    details.insert("delegator".into(), "agent:planner".into());
    details.insert(
        "grant_type".into(),
        "urn:ietf:params:oauth:grant-type:token-exchange".into(),
    );
    details.insert("kid".into(), "issuer-2026-11".into());
    details.insert("bound".into(), true.into());
    details.insert("parent_jti".into(), Value::String(rng.hex(22)));
    Event {
        id: event::new_event_id(ms.max(0) as u64, rng.bytes16()),
        time: event::rfc3339_millis(ms),
        kind: "token.exchanged".into(),
        principal: "agent:planner".into(),
        chain: vec![
            "user:alice".into(),
            "agent:planner".into(),
            "agent:coder".into(),
        ],
        action: "token.exchange".into(),
        resource: Some("https://git.example.com".into()),
        decision: Some("allow".into()),
        policy_version: Some(format!("sha256:{}", rng.hex(64))),
        decision_id: Some(uuid_like(rng)),
        result: "ok".into(),
        jti: Some(jti),
        details,
        ..Event::default()
    }
}

/// A decision id shaped like the policy crate's (a UUID v4).
fn uuid_like(rng: &mut Rng) -> String {
    let h = rng.hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..]
    )
}

fn new_record(rng: &mut Rng) -> AuditRecord {
    AuditRecord::from_event(&exchange_event(rng))
}

fn sign(key: &SigningKey, size: u64, root: &Hash) -> Result<String, String> {
    let body = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: *root,
        extensions: vec![],
    }
    .body();
    checkpoint::sign(&body, ORIGIN, key).map_err(|e| e.to_string())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the integrator did during a run.
#[derive(Default)]
struct IntegratorStats {
    ticks: u64,
    steps: u64,
    busy: Duration,
    longest_tick: Duration,
    tree_size: u64,
}

/// The server's integrator loop, until `stop`.
async fn integrate_loop(store: Store, key: SigningKey, stop: Arc<AtomicBool>) -> IntegratorStats {
    let mut integrator = Integrator::new();
    let mut tick = tokio::time::interval(INTEGRATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats = IntegratorStats::default();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let t = Instant::now();
        loop {
            match integrator
                .step(&store, now_ms(), |size, root| sign(&key, size, root))
                .await
            {
                Ok(Some((size, _))) => {
                    stats.steps += 1;
                    stats.tree_size = size;
                }
                Ok(None) => break,
                Err(e) => panic!("integration failed: {e}"),
            }
        }
        let took = t.elapsed();
        stats.ticks += 1;
        stats.busy += took;
        stats.longest_tick = stats.longest_tick.max(took);
    }
    stats
}

/// One append run: `writers` tasks for `run` (plus warm-up) on a fresh database.
async fn append_run(dir: &Path, writers: usize, with_integrator: bool, run: Duration) {
    let path = dir.join(format!(
        "append-{writers}-{}.db",
        if with_integrator { "int" } else { "plain" }
    ));
    let store = Store::open_sqlite(&path).await.expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let integrator = with_integrator.then(|| {
        tokio::spawn(integrate_loop(
            store.clone(),
            SigningKey::from_bytes(&[7; 32]),
            Arc::clone(&stop),
        ))
    });
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let counted_from = start + WARMUP;
    let end = counted_from + run;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let mut rng = Rng(0x5eed ^ ((w as u64) << 32));
                let mut lat = Vec::with_capacity(4096);
                loop {
                    let rec = new_record(&mut rng);
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let res = store.audit(rec).await;
                    let done = Instant::now();
                    match res {
                        Ok(_) if done >= counted_from && done <= end => lat.push(done - t),
                        Ok(_) => {}
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer task"));
    }
    stop.store(true, Ordering::Relaxed);
    let stats = match integrator {
        Some(h) => Some(h.await.expect("integrator task")),
        None => None,
    };
    lat.sort_unstable();
    let total = store.audit_event_count().await.expect("count");
    print!(
        "{:>5} {:>11} {:>11.0} {:>10.2} {:>10.2} {:>7}",
        writers,
        if with_integrator { "yes" } else { "no" },
        lat.len() as f64 / run.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        errors.load(Ordering::Relaxed),
    );
    match stats {
        Some(s) => println!(
            "   {} ticks, {} checkpoints, busy {:.0}% of the run, longest tick {:.0} ms, tree {} of {} events",
            s.ticks,
            s.steps,
            100.0 * s.busy.as_secs_f64() / (start.elapsed().as_secs_f64()),
            ms(s.longest_tick),
            s.tree_size,
            total
        ),
        None => println!(),
    }
}

async fn file_size(path: &Path) -> u64 {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

async fn proof_costs(dir: &Path, size: u64) {
    let path = dir.join("log.db");
    let store = Store::open_sqlite(&path).await.expect("open");

    // Build: BUILDERS callers, each appending its share, so the writer batches fully.
    let t = Instant::now();
    let tasks: Vec<_> = (0..BUILDERS)
        .map(|w| {
            let store = store.clone();
            let n = size / BUILDERS + u64::from(w < size % BUILDERS);
            tokio::spawn(async move {
                let mut rng = Rng(0xb111d ^ (w << 40));
                for _ in 0..n {
                    store.audit(new_record(&mut rng)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("builder");
    }
    let build = t.elapsed();
    assert_eq!(store.audit_event_count().await.unwrap(), size as i64);
    println!(
        "appended {size} events in {:.1} s through Store::audit ({BUILDERS} concurrent callers): {:.0} events/s",
        build.as_secs_f64(),
        size as f64 / build.as_secs_f64()
    );

    // Integrate everything, as one catch-up pass of the server's integrator.
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut integrator = Integrator::new();
    let t = Instant::now();
    let mut steps = 0;
    let mut head = None;
    while let Some(h) = integrator
        .step(&store, now_ms(), |s, r| sign(&key, s, r))
        .await
        .expect("integrate")
    {
        steps += 1;
        head = Some(h);
    }
    let integrate = t.elapsed();
    let (tree_size, head_root) = head.expect("integrated");
    assert_eq!(tree_size, size);
    println!(
        "integrated {size} events in {:.1} s ({steps} steps of up to 10,000, one signed checkpoint each): {:.0} events/s",
        integrate.as_secs_f64(),
        size as f64 / integrate.as_secs_f64()
    );

    let mut rng = Rng(0x9700f);

    // Root.
    let mut root_times = Vec::new();
    let mut root = [0u8; 32];
    // A few calls first, so the p99 is not the first cold read.
    for _ in 0..10 {
        store.audit_root(size).await.expect("root");
    }
    for _ in 0..200 {
        let t = Instant::now();
        root = store.audit_root(size).await.expect("root");
        root_times.push(t.elapsed());
    }
    assert_eq!(root, head_root, "stored nodes give the integrator's root");
    root_times.sort_unstable();

    // Inclusion: leaf hashes come from the stored event bodies (as a verifier holding the event
    // computes them), outside the timings.
    let mut gen = Vec::with_capacity(PROOFS);
    let mut ver = Vec::with_capacity(PROOFS);
    let mut proof_len = 0;
    for _ in 0..PROOFS {
        let index = rng.below(size);
        let ev = store
            .audit_event(&(index + 1).to_string())
            .await
            .expect("event")
            .expect("stored");
        let leaf = merkle::leaf_hash(ev.body.as_bytes());
        let t = Instant::now();
        let proof = store
            .audit_inclusion_proof(index, size)
            .await
            .expect("proof");
        gen.push(t.elapsed());
        let t = Instant::now();
        let ok = merkle::verify_inclusion(&leaf, index, size, &proof, &root);
        ver.push(t.elapsed());
        ok.expect("inclusion verifies");
        proof_len = proof.len();
    }
    gen.sort_unstable();
    ver.sort_unstable();

    // Consistency: random (old, new) pairs, and old checkpoints against the newest.
    let mut cons = Vec::new();
    for latest in [false, true] {
        let mut cgen = Vec::with_capacity(PROOFS / 2);
        let mut cver = Vec::with_capacity(PROOFS / 2);
        let mut lens = 0usize;
        for _ in 0..PROOFS / 2 {
            let (old, new) = if latest {
                (1 + rng.below(size - 1), size)
            } else {
                let a = 1 + rng.below(size - 1);
                let b = 1 + rng.below(size - 1);
                (a.min(b), a.max(b) + 1)
            };
            let old_root = store.audit_root(old).await.expect("old root");
            let new_root = store.audit_root(new).await.expect("new root");
            let t = Instant::now();
            let proof = store
                .audit_consistency_proof(old, new)
                .await
                .expect("consistency proof");
            cgen.push(t.elapsed());
            let t = Instant::now();
            let ok = merkle::verify_consistency(old, new, &old_root, &new_root, &proof);
            cver.push(t.elapsed());
            ok.expect("consistency verifies");
            lens += proof.len();
        }
        cgen.sort_unstable();
        cver.sort_unstable();
        cons.push((latest, cgen, cver, lens as f64 / (PROOFS / 2) as f64));
    }

    println!(
        "{:<50} {:>10} {:>10}",
        format!("at size {size} (sequential calls)"),
        "p50 µs",
        "p99 µs"
    );
    let row = |name: &str, v: &[Duration]| {
        println!(
            "{:<50} {:>10.1} {:>10.1}",
            name,
            us(pct(v, 0.5)),
            us(pct(v, 0.99))
        );
    };
    row("audit_root(size)", &root_times);
    row(&format!("audit_inclusion_proof ({proof_len} hashes)"), &gen);
    row("verify_inclusion", &ver);
    for (latest, cgen, cver, len) in &cons {
        let what = if *latest {
            "old -> size"
        } else {
            "random old -> new"
        };
        row(
            &format!("audit_consistency_proof, {what} ({len:.1} h)"),
            cgen,
        );
        row(&format!("verify_consistency, {what}"), cver);
    }

    // Size: checkpoint the WAL into the main file, then ask SQLite where the pages went.
    drop(store);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("inspect");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .expect("checkpoint");
    let main = file_size(&path).await;
    println!(
        "database file {:.1} MiB after a WAL checkpoint: {:.0} bytes per event",
        main as f64 / (1 << 20) as f64,
        main as f64 / size as f64
    );
    let body: i64 = sqlx::query_scalar("SELECT SUM(LENGTH(body)) FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .expect("body bytes");
    println!(
        "  canonical JSON: {:.0} bytes per event on average",
        body as f64 / size as f64
    );
    match sqlx::query(
        "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC",
    )
    .fetch_all(&mut conn)
    .await
    {
        Ok(rows) => {
            for r in rows {
                let name: String = r.get(0);
                let bytes: i64 = r.get(1);
                if bytes as u64 * 1000 >= main {
                    println!(
                        "  {:<40} {:>8.1} MiB {:>6.0} bytes per event",
                        name,
                        bytes as f64 / (1 << 20) as f64,
                        bytes as f64 / size as f64
                    );
                }
            }
        }
        Err(e) => println!("  (no per-table breakdown: {e})"),
    }
    let _ = conn.close().await;
}

/// The 1, 5 and 15 minute load averages (Linux), or a dash.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "-".into())
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let run = Duration::from_secs(env_u64("MANDATE_BENCH_SECS", 5));
    let log_size = env_u64("MANDATE_BENCH_LOG_SIZE", 1_000_000);
    let writers: Vec<usize> = std::env::var("MANDATE_BENCH_WRITERS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| WRITERS.to_vec());
    let base = std::env::var_os("MANDATE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("mandate-audit-bench")
        .tempdir_in(&base)
        .expect("temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Other processes on the machine change every figure here: say how busy it was.
        println!("load average at the start: {}", loadavg());
        let mut rng = Rng(1);
        let sample = new_record(&mut rng);
        let t = Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(new_record(&mut rng));
        }
        println!(
            "audit benchmarks in {} ({} worker threads); event body {} bytes, {} parties; building one record (Event + canonical JSON + parties) {:.1} µs",
            dir.path().display(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            sample.body.len(),
            exchange_event(&mut rng).parties().len(),
            us(t.elapsed()) / 10_000.0
        );
        println!();
        println!(
            "durable appends (Store::audit, fresh database each row, {} s counted after {} ms warm-up)",
            run.as_secs(),
            WARMUP.as_millis()
        );
        println!(
            "{:>5} {:>11} {:>11} {:>10} {:>10} {:>7}",
            "tasks", "integrator", "events/s", "p50 ms", "p99 ms", "errors"
        );
        for with_integrator in [false, true] {
            for &w in &writers {
                append_run(dir.path(), w, with_integrator, run).await;
            }
        }
        if log_size >= 2 {
            println!();
            proof_costs(dir.path(), log_size).await;
        }
        println!();
        println!("load average at the end: {}", loadavg());
    });
}
