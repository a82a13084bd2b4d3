//! `mandate bench gateway`: MCP tool calls straight to a fast upstream, and through the gateway,
//! measured in the same run.
//!
//! The upstream is an `rmcp` Streamable HTTP server in this process (stateless, JSON answers, one
//! `add` tool), so that it is not the bottleneck. The gateway is a real `mandate serve` child with
//! a durable SQLite database in a temporary MANDATE_HOME: every call is authenticated (DPoP proof,
//! single use spent in the database), decided by the default policy and recorded durably in the
//! audit log before it is forwarded. Proofs are signed before the clock starts, so the load
//! generator (in this process, on the same cores) does little more than HTTP.
//!
//! Reported per phase: calls/s, p50 and p99 latency; for the gateway, its CPU time per call (the
//! child's threads, from /proc) beside the floor: one DPoP proof check plus one policy decision,
//! timed here in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mandate_core::dpop;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde_json::{json, Value};

use crate::cli::BenchArgs;
use crate::client::{random_id, unix_now, Api, Identity};
use crate::ctx::Ctx;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddRequest {
    a: i64,
    b: i64,
}

/// The fast upstream.
#[derive(Debug, Clone)]
struct Adder {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Adder {
    #[tool(description = "Adds two numbers", annotations(read_only_hint = true))]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Adder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Starts the upstream on loopback; returns its URL.
async fn start_upstream() -> Result<String> {
    let service = StreamableHttpService::new(
        || {
            Ok(Adder {
                tool_router: Adder::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_sse_keep_alive(None)
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().nest_service("/mcp", service);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/mcp"))
}

/// A `mandate` child process on a temporary home.
struct Child {
    home: std::path::PathBuf,
    proc: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn mandate(home: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .env("MANDATE_HOME", home)
        .env("MANDATE_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "mandate {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// CPU time of every thread of `pid`, from /proc (Linux).
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = t.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

struct Phase {
    name: String,
    concurrency: usize,
    calls: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    cpu_per_call: Option<Duration>,
    failed: usize,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn json(&self) -> Value {
        json!({
            "phase": self.name, "concurrency": self.concurrency, "calls": self.calls,
            "calls_per_second": self.rate().round(),
            "p50_us": self.p50.as_micros(), "p99_us": self.p99.as_micros(),
            "gateway_cpu_per_call_us": self.cpu_per_call.map(|d| d.as_secs_f64() * 1e6),
            "failed": self.failed,
        })
    }
}

fn call_body(i: usize) -> String {
    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": i, "b": 1}}})
    .to_string()
}

/// One simulated client's keep-alive HTTP/1.1 connection, made with hyper's connection API: no
/// pool, proxy or redirect logic, so that the load generator, which shares the two cores with the
/// gateway, takes as little of them as it can. A failed call drops the connection; the next call
/// makes a new one.
struct Conn {
    addr: String,
    host: String,
    path: String,
    send: Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<axum::body::Bytes>>>,
}

impl Conn {
    fn new(url: &str) -> Result<Self> {
        let u = url::Url::parse(url)?;
        let host = u.host_str().context("the URL has no host")?.to_string();
        let port = u.port_or_known_default().context("the URL has no port")?;
        Ok(Conn {
            addr: format!("{host}:{port}"),
            host: format!("{host}:{port}"),
            path: u.path().to_string(),
            send: None,
        })
    }

    /// POSTs `body` with `headers`; the status and the answer's body.
    async fn post(
        &mut self,
        body: String,
        headers: &[(&'static str, String)],
    ) -> std::result::Result<(u16, String), String> {
        let out = self.try_post(body, headers).await;
        if out.is_err() {
            self.send = None;
        }
        out
    }

    async fn try_post(
        &mut self,
        body: String,
        headers: &[(&'static str, String)],
    ) -> std::result::Result<(u16, String), String> {
        use http_body_util::BodyExt;
        let send = match &mut self.send {
            Some(s) if !s.is_closed() => s,
            _ => {
                let tcp = tokio::net::TcpStream::connect(&self.addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let (send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(conn);
                self.send.insert(send)
            }
        };
        send.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut req = hyper::Request::post(&self.path)
            .header("Host", &self.host)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{status}: body unreadable: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Runs `calls` calls at `concurrency`, each simulated client on its own connection;
/// `headers(i)` gives each call's extra headers.
async fn phase(
    name: &str,
    url: &str,
    concurrency: usize,
    calls: usize,
    headers: Arc<dyn Fn(usize) -> Vec<(&'static str, String)> + Send + Sync>,
    cpu_of: Option<u32>,
) -> Result<Phase> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_of.and_then(cpu_time);
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..concurrency {
        let mut conn = Conn::new(url)?;
        let (next, headers) = (next.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                let t = Instant::now();
                let outcome = match conn.post(call_body(i), &headers(i)).await {
                    Ok((status, b)) if (200..300).contains(&status) && b.contains("\"result\"") => {
                        Ok(())
                    }
                    Ok((status, b)) => Err(format!(
                        "{status}: {}",
                        b.chars().take(300).collect::<String>()
                    )),
                    Err(why) => Err(why),
                };
                lat.push(t.elapsed());
                if let Err(why) = outcome {
                    // The first few failures are shown, so a failed call can be explained.
                    if failed < 3 {
                        eprintln!("call {i} failed: {why}");
                    }
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = vec![];
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed();
    let cpu_per_call = match (cpu_before, cpu_of.and_then(cpu_time)) {
        (Some(a), Some(b)) => Some((b - a) / calls.max(1) as u32),
        _ => None,
    };
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(Phase {
        name: name.into(),
        concurrency,
        calls,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu_per_call,
        failed,
    })
}

/// The floor's parts, each timed on its own.
struct Floor {
    /// One DPoP proof check.
    verify: Duration,
    /// One default-policy decision.
    decide: Duration,
    /// One decision while another thread decides too (per decision, per thread).
    decide_two_threads: Duration,
}

/// The floor: one DPoP proof check and one default-policy decision, each timed on its own.
fn floor(
    key: &mandate_core::SecretKey,
    token: &str,
    url: &str,
    claims: &mandate_core::MandateClaims,
) -> Result<Floor> {
    let n = 2000;
    let proofs: Vec<String> = (0..n)
        .map(|_| dpop::make_proof(key, "POST", url, unix_now(), &random_id(), Some(token)))
        .collect();
    let t = Instant::now();
    for p in &proofs {
        dpop::check_proof(
            p,
            dpop::ProofCheck {
                method: "POST",
                url,
                now: unix_now(),
                access_token: Some(token),
            },
        )
        .map_err(|e| anyhow::anyhow!("floor proof: {e}"))?;
    }
    let verify = t.elapsed() / n as u32;
    let policy = crate::policy_pack::policy()?;
    let input = mandate_policy::input::Input::for_mandate(
        &claims.client_id,
        claims,
        mandate_policy::input::Action::Mcp(mandate_policy::input::ToolCall {
            server: "fast".into(),
            tool: "add".into(),
            mcp_method: Some("tools/call".into()),
            scope: Some("fast:add".into()),
            arguments: json!({"a": 1, "b": 2})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            annotations: json!({"readOnlyHint": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            upstream: Default::default(),
        }),
        mandate_policy::input::Context::at(unix_now(), "development", Some("127.0.0.1".into())),
    )
    .to_value();
    let t = Instant::now();
    for _ in 0..n {
        let d = policy.decide(mandate_policy::Query::Authz, &input);
        if !d.is_allow() {
            bail!("floor decision did not allow: {}", d.reasons_line());
        }
    }
    let one = t.elapsed() / n as u32;
    // The same decisions on two threads at once (one per core): what a decision costs when the
    // gateway's workers decide concurrently, as they do under load.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (policy, input) = (&policy, &input);
            s.spawn(move || {
                for _ in 0..n {
                    let _ = policy.decide(mandate_policy::Query::Authz, input);
                }
            });
        }
    });
    Ok(Floor {
        verify,
        decide: one,
        decide_two_threads: t.elapsed() / n as u32,
    })
}

pub async fn run(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    let upstream = start_upstream().await?;
    let home = std::env::temp_dir().join(format!("mandate-bench-gw-{}", random_id()));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let base = format!("http://127.0.0.1:{port}");
    mandate(&home, &["init", "--listen", &format!("127.0.0.1:{port}")])?;
    // The fast upstream; rate limits off, so that the bench measures the work, not the limits.
    let toml = format!("\n[upstream.fast]\nurl = \"{upstream}\"\n");
    let cfg_path = home.join("server/server.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&cfg_path)?.parse()?;
    for (table, key) in [("limits", "per_source_rps"), ("gateway", "per_agent_rps")] {
        if let Some(t) = cfg.get_mut(table).and_then(|t| t.as_table_mut()) {
            t.insert(key.into(), 0.into());
        }
    }
    let mut text = toml::to_string(&cfg)?;
    text.push_str(&toml);
    std::fs::write(&cfg_path, text)?;
    let proc = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("MANDATE_HOME", &home)
        .env("MANDATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        // Kept, so that a failed call can be explained by the gateway's side too.
        .stderr(std::fs::File::create(home.join("serve.log"))?)
        .spawn()?;
    let child = Child {
        home: home.clone(),
        proc,
    };
    let pid = child.proc.id();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/oauth2/jwks"))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the gateway did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mandate(
        &home,
        &[
            "agent",
            "create",
            "bench",
            "--scopes",
            "fast:add",
            "--audiences",
            "mcp:fast",
            "--max-ttl",
            "1h",
        ],
    )
    .or_else(|_| {
        mandate(
            &home,
            &[
                "agent",
                "create",
                "bench",
                "--scopes",
                "fast:add",
                "--audiences",
                "mcp:fast",
            ],
        )
    })?;
    let key_text = std::fs::read_to_string(home.join("keys/agent_bench.jwk"))
        .context("the bench agent's key")?;
    let key = mandate_core::SecretKey::parse(&key_text)?;
    let id = Identity {
        name: "agent:bench".parse()?,
        key: key.clone(),
    };
    let mut api = Api::new(&base);
    let t = api
        .token(
            &id,
            &[
                ("grant_type", "client_credentials".into()),
                ("scope", "fast:add".into()),
                ("audience", "mcp:fast".into()),
            ],
            true,
        )
        .await?;
    let token = t.access_token;
    // Our own mandate, just issued: its claims for the floor's policy input.
    let claims: mandate_core::MandateClaims = mandate_core::jws::Jws::decode(&token)
        .and_then(|j| j.unverified_claims())
        .map_err(|e| anyhow::anyhow!("the bench mandate: {e}"))?;
    let gw_url = format!("{base}/mcp/fast");
    let Floor {
        verify,
        decide,
        decide_two_threads,
    } = floor(&key, &token, &gw_url, &claims)?;

    let c1_calls = (a.seconds as usize * 400).max(500);
    let c32_calls = (a.seconds as usize * 6000).max(5000);
    // Proofs for a phase are signed just before it starts (a proof is accepted for 60 s), so the
    // load generator does not sign inside the measurement.
    let auth = format!("DPoP {token}");
    let signed = |n: usize| -> Arc<dyn Fn(usize) -> Vec<(&'static str, String)> + Send + Sync> {
        let proofs: Vec<String> = (0..n)
            .map(|_| {
                dpop::make_proof(
                    &key,
                    "POST",
                    &gw_url,
                    unix_now(),
                    &random_id(),
                    Some(&token),
                )
            })
            .collect();
        let auth = auth.clone();
        Arc::new(move |i| vec![("Authorization", auth.clone()), ("DPoP", proofs[i].clone())])
    };
    let none: Arc<dyn Fn(usize) -> Vec<(&'static str, String)> + Send + Sync> =
        Arc::new(|_| vec![]);
    // Warm both paths up.
    phase("warmup", &upstream, 4, 200, none.clone(), None).await?;
    phase("warmup", &gw_url, 4, 200, signed(200), None).await?;
    let mut phases = vec![];
    for (c, n) in [(1, c1_calls), (32, c32_calls)] {
        // Progress on stderr (the results go to stdout), also so that a profiler can be attached
        // to the gateway (pid printed) for exactly one phase.
        eprintln!("direct, concurrency {c}: {n} calls");
        phases.push(phase("direct", &upstream, c, n, none.clone(), None).await?);
        let headers = signed(n);
        eprintln!("gateway (pid {pid}), concurrency {c}: {n} calls");
        phases.push(phase("gateway", &gw_url, c, n, headers, Some(pid)).await?);
    }
    if phases.iter().any(|p| p.failed > 0) {
        let log = std::fs::read_to_string(home.join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("calls failed; the gateway's last log lines:");
        for l in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("  {l}");
        }
    }
    let floor_total = verify + decide;
    let out = json!({
        "machine": format!("{} cores", std::thread::available_parallelism().map_or(1, |n| n.get())),
        "phases": phases.iter().map(Phase::json).collect::<Vec<_>>(),
        "floor_us": {"dpop_proof_check": verify.as_secs_f64() * 1e6, "policy_decision": decide.as_secs_f64() * 1e6,
                     "total": floor_total.as_secs_f64() * 1e6,
                     "policy_decision_two_threads": decide_two_threads.as_secs_f64() * 1e6},
    });
    ctx.print(&out, || {
        let mut s = String::from("phase     conc   calls    calls/s    p50 µs    p99 µs   gateway CPU/call µs  failed");
        for p in &phases {
            s.push_str(&format!(
                "\n{:<9} {:>4} {:>7} {:>10.0} {:>9} {:>9} {:>20} {:>7}",
                p.name,
                p.concurrency,
                p.calls,
                p.rate(),
                p.p50.as_micros(),
                p.p99.as_micros(),
                p.cpu_per_call.map(|d| format!("{:.0}", d.as_secs_f64() * 1e6)).unwrap_or_default(),
                p.failed
            ));
        }
        let added = |c: usize| {
            let d = phases.iter().find(|p| p.name == "direct" && p.concurrency == c)?;
            let g = phases.iter().find(|p| p.name == "gateway" && p.concurrency == c)?;
            Some(g.p50.saturating_sub(d.p50))
        };
        s.push_str(&format!(
            "\nadded p50 at concurrency 1: {} µs; floor (one DPoP proof check {:.0} µs + one policy decision {:.0} µs) = {:.0} µs; a decision with two threads deciding at once: {:.0} µs",
            added(1).map_or(0, |d| d.as_micros()),
            verify.as_secs_f64() * 1e6,
            decide.as_secs_f64() * 1e6,
            floor_total.as_secs_f64() * 1e6,
            decide_two_threads.as_secs_f64() * 1e6
        ));
        s
    });
    drop(child);
    Ok(())
}
