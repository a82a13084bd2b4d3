//! `mandate verify`: check presented mandates exactly as an enforcement point does, with the
//! `mandate-verify` library. With `--follow` it is a long-running verifier process that follows
//! the revocation feed and answers one presentation per stdin line with one JSON verdict line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mandate_core::duration::parse_duration;
use mandate_verify::{Config, Presentation, Refusal, Verifier};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::cli::VerifyArgs;
use crate::ctx::Ctx;
use crate::term::safe;

/// A presentation as one input line: a JSON object, or an `Authorization` value
/// (`DPoP <jwt>` / `Bearer <jwt>`), or a bare mandate (presented as `Bearer`).
#[derive(Deserialize)]
struct Line {
    authorization: String,
    #[serde(default)]
    dpop: Option<String>,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    url: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

fn parse_line(line: &str, default_url: &str) -> Line {
    let line = line.trim();
    if line.starts_with('{') {
        if let Ok(l) = serde_json::from_str::<Line>(line) {
            return l;
        }
    }
    let authorization = if line.starts_with("DPoP ") || line.starts_with("Bearer ") {
        line.to_string()
    } else {
        format!("Bearer {line}")
    };
    Line {
        authorization,
        dpop: None,
        method: default_method(),
        url: Some(default_url.into()),
    }
}

fn verdict(r: Result<mandate_verify::Presented, Refusal>) -> Value {
    match r {
        Ok(v) => {
            let c = v.mandate.claims();
            json!({"valid": true, "jti": c.jti, "sub": c.sub, "client_id": c.client_id,
                   "scope": c.scope, "chain": c.chain()})
        }
        Err(r) => json!({"valid": false, "code": r.code, "message": r.message}),
    }
}

async fn check(v: &Verifier, l: &Line, default_url: &str) -> Value {
    let p = Presentation {
        authorization: &l.authorization,
        dpop: l.dpop.as_deref(),
        method: &l.method,
        url: l.url.as_deref().unwrap_or(default_url),
    };
    verdict(v.verify(&p).await)
}

pub async fn run(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let issuer = ctx.server_url()?.trim_end_matches('/').to_string();
    let max_staleness =
        Duration::from_secs(parse_duration(&a.max_staleness).context("--max-staleness")? as u64);
    let cfg = Config {
        issuer,
        audience: a.audience.clone(),
        max_staleness,
        skew: 30,
    };
    let v = Verifier::new(cfg, reqwest::Client::new());
    if let Err(e) = v.refresh_jwks().await {
        tracing::warn!(error = %e, "cannot fetch the issuer's keys yet; will retry on use");
    }
    let _follower = v.spawn_follower();
    let default_url = a.url.clone().unwrap_or_else(|| a.audience.clone());
    if !a.follow {
        let token = a
            .token
            .as_deref()
            .context("give a TOKEN to verify, or --follow to read presentations from stdin")?;
        let line = Line {
            authorization: parse_line(token, &default_url).authorization,
            dpop: a.dpop.clone(),
            method: a.method.clone(),
            url: Some(default_url.clone()),
        };
        // A one-shot check waits (briefly) for the first view of the revocation feed.
        let start = Instant::now();
        let out = loop {
            let out = check(&v, &line, &default_url).await;
            if out["code"] != "revocations_stale" || start.elapsed() > Duration::from_secs(5) {
                break out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let valid = out["valid"] == true;
        ctx.print(&out, || match valid {
            true => format!(
                "valid: {} held by {} (scope {})",
                out["jti"], out["client_id"], out["scope"]
            ),
            false => format!(
                "refused ({}): {}",
                safe(out["code"].as_str().unwrap_or("")),
                safe(out["message"].as_str().unwrap_or(""))
            ),
        });
        if !valid {
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let out = check(&v, &parse_line(&line, &default_url), &default_url).await;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", crate::term::json_text(&out.to_string()))?;
        stdout.flush()?;
    }
    Ok(())
}
