//! `mandate bench sandbox`: what the stdio sandbox costs, measured against the same upstream run
//! unsandboxed, in one run. Two figures, each alternating sandboxed and unsandboxed so that the
//! machine's drift touches both alike:
//!
//! - start-up: from starting the child to its answer to `initialize` (the trampoline, Landlock,
//!   seccomp, namespaces and the exec included), `--starts` times each;
//! - calls: one caller's sequential requests to a running child (`tools/call list_notes` on the
//!   default upstream, this binary's demo server; `tools/list` on one given after `--`), in
//!   rounds of 100, for `--seconds`.
//!
//! The child is supervised by the gateway's own stdio code (`mandate_gateway::stdio`), so what is
//! measured is what the gateway pays; the gateway's policy and audit work are left out on
//! purpose (they do not depend on the sandbox: `mandate bench gateway` measures them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mandate_gateway::stdio::{Launch, StdioUpstream};
use serde_json::{json, Value};

use crate::cli::BenchArgs;
use crate::ctx::Ctx;

/// Calls per round (each round alternates the two children).
const ROUND: usize = 100;

fn launch(
    command: &[String],
    sandbox: Option<mandate_sandbox::Policy>,
    env: &[(String, String)],
) -> Launch {
    let env = env.to_vec();
    Launch {
        name: if sandbox.is_some() {
            "sandboxed"
        } else {
            "unsandboxed"
        }
        .into(),
        command: command[0].clone(),
        args: command[1..].to_vec(),
        env: Arc::new(move || Ok(env.clone())),
        secret_names: vec![],
        sandbox,
    }
}

fn percentiles(mut lat: Vec<Duration>) -> Value {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3)
    };
    json!({"count": lat.len(), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99)})
}

async fn start_once(l: Launch) -> Result<(Arc<StdioUpstream>, Duration)> {
    let t = Instant::now();
    let up = StdioUpstream::start(l);
    match up.initialize_result().await {
        Ok(_) => Ok((up, t.elapsed())),
        Err(e) => {
            let why = up.last_error().unwrap_or_default();
            up.shutdown().await;
            bail!("the upstream did not start: {e} {why}")
        }
    }
}

pub async fn run(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let (command, method, params) = if a.command.is_empty() {
        (
            vec![exe.display().to_string(), "demo-mcp".into()],
            "tools/call",
            Some(json!({"name": "list_notes", "arguments": {}})),
        )
    } else {
        (a.command.clone(), "tools/list", None)
    };
    let policy = mandate_sandbox::SandboxConfig {
        read: a.allow_read.clone(),
        ..Default::default()
    }
    .check()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let env: Vec<(String, String)> = ["PATH", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let starts = a.starts.max(1);
    let (mut plain_start, mut boxed_start) = (vec![], vec![]);
    for _ in 0..starts {
        let (up, t) = start_once(launch(&command, None, &env)).await?;
        up.shutdown().await;
        plain_start.push(t);
        let (up, t) = start_once(launch(&command, Some(policy.clone()), &env)).await?;
        up.shutdown().await;
        boxed_start.push(t);
    }
    let (plain, _) = start_once(launch(&command, None, &env)).await?;
    let (boxed, _) = start_once(launch(&command, Some(policy.clone()), &env)).await?;
    let timeout = Duration::from_secs(10);
    // Warm both (page cache, the interpreter's first-call paths).
    for up in [&plain, &boxed] {
        for _ in 0..ROUND {
            up.request(method, params.as_ref(), timeout).await?;
        }
    }
    let (mut plain_calls, mut boxed_calls) = (vec![], vec![]);
    let until = Instant::now() + Duration::from_secs(a.seconds.max(1));
    while Instant::now() < until {
        for (up, into) in [(&plain, &mut plain_calls), (&boxed, &mut boxed_calls)] {
            for _ in 0..ROUND {
                let t = Instant::now();
                let answer = up.request(method, params.as_ref(), timeout).await?;
                if answer.get("result").is_none() {
                    bail!("the upstream answered with an error: {answer}");
                }
                into.push(t.elapsed());
            }
        }
    }
    plain.shutdown().await;
    boxed.shutdown().await;
    let v = json!({
        "upstream": command.join(" "),
        "method": method,
        "start_up": {"unsandboxed": percentiles(plain_start), "sandboxed": percentiles(boxed_start)},
        "calls": {"unsandboxed": percentiles(plain_calls), "sandboxed": percentiles(boxed_calls)},
    });
    ctx.print(&v, || {
        let row = |what: &str, p: &Value| {
            format!(
                "{what:<22} n={:<6} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms",
                p["count"],
                p["p50_ms"].as_f64().unwrap_or(0.0),
                p["p90_ms"].as_f64().unwrap_or(0.0),
                p["p99_ms"].as_f64().unwrap_or(0.0)
            )
        };
        [
            format!("upstream: {} ({method})", command.join(" ")),
            row("start-up unsandboxed", &v["start_up"]["unsandboxed"]),
            row("start-up sandboxed", &v["start_up"]["sandboxed"]),
            row("call unsandboxed", &v["calls"]["unsandboxed"]),
            row("call sandboxed", &v["calls"]["sandboxed"]),
        ]
        .join("\n")
    });
    Ok(())
}
