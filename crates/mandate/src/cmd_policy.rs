//! `mandate policy check | eval | test`: the policy engine the server runs, on the command line.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mandate_policy::{Decision, Policy, Query, Verdict};
use serde_json::{json, Value};

use crate::cli::PolicyCmd;
use crate::ctx::Ctx;

pub fn run(ctx: &Ctx, c: PolicyCmd) -> Result<()> {
    match c {
        PolicyCmd::Check { dir } => check(ctx, dir),
        PolicyCmd::Eval { input, query, dir } => eval(ctx, &input, query, dir),
        PolicyCmd::Test { dir } => test(ctx, dir),
    }
}

/// DIR, else the policy directory of the server in MANDATE_HOME.
fn resolve_dir(ctx: &Ctx, dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    if ctx.home.server_config_path().exists() {
        let (cfg, base) = ctx.home.server_config(None)?;
        return Ok(crate::cmd_server::resolve(&base, &cfg.policy.dir));
    }
    bail!("no policy directory given and MANDATE_HOME has no server: pass DIR (e.g. policies/default)")
}

fn load(dir: &Path) -> Result<Policy> {
    Policy::load_dir(dir).map_err(|e| anyhow::anyhow!("policy does not load: {e}"))
}

fn check(ctx: &Ctx, dir: Option<PathBuf>) -> Result<()> {
    let dir = resolve_dir(ctx, dir)?;
    let p = load(&dir)?;
    let missing: Vec<&str> = [Query::Authz, Query::Delegation]
        .iter()
        .filter(|q| !p.has_rule(q.path()))
        .map(|q| q.path())
        .collect();
    let packages: Vec<&String> = p.packages().keys().collect();
    let evaluator = match p.vm_unsafe_reason() {
        None => "vm".to_string(),
        Some(why) => format!("interpreter ({why})"),
    };
    let out = json!({
        "dir": dir, "ok": true, "version": p.version(), "files": p.files(),
        "packages": packages, "missing_decisions": missing, "decisions_by": evaluator,
    });
    ctx.print(&out, || {
        let mut s = format!(
            "ok: {} loads ({} files, policy {})\n  packages: {}",
            dir.display(),
            p.files(),
            p.version(),
            packages
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        s.push_str(&format!("\n  decisions evaluated by: {evaluator}"));
        for m in &missing {
            s.push_str(&format!(
                "\n  warning: nothing defines {m}: every such decision will be a deny"
            ));
        }
        s
    });
    Ok(())
}

fn read_input(path: &Path) -> Result<Value> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read input {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "input {} is not JSON (see docs/policy-input.schema.json)",
            path.display()
        )
    })
}

fn eval(ctx: &Ctx, input: &Path, query: Option<String>, dir: Option<PathBuf>) -> Result<()> {
    let dir = resolve_dir(ctx, dir)?;
    let p = load(&dir)?;
    let input = read_input(input)?;
    let decision_query = match query.as_deref() {
        None if input["action"]["kind"] == "delegation" => Some(Query::Delegation),
        None => Some(Query::Authz),
        Some(q) if q == Query::Authz.path() => Some(Query::Authz),
        Some(q) if q == Query::Delegation.path() => Some(Query::Delegation),
        Some(_) => None,
    };
    let query = query.unwrap_or_else(|| decision_query.expect("set").path().to_string());
    let result = p
        .eval(&query, Some(input.clone()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let package = query.rsplit_once('.').map(|(p, _)| p).unwrap_or("data");
    let fired = p.fired(package, &input);
    let decision = decision_query.map(|q| Decision::from_result(q, result.as_ref(), p.version()));
    let out = json!({
        "query": query, "policy_version": p.version(), "result": result,
        "decision": decision, "outcome": decision.as_ref().map(Decision::outcome),
        "fired": fired.iter().map(|(r, v)| json!({"rule": r, "value": v})).collect::<Vec<_>>(),
    });
    ctx.print(&out, || {
        let mut s = String::new();
        match &decision {
            Some(d) => {
                let outcome = match d.verdict() {
                    Verdict::Allow => "allow".to_string(),
                    Verdict::Deny { .. } => "deny".to_string(),
                    Verdict::NeedsApproval(a) => {
                        format!(
                            "needs approval by {} of {}",
                            a.quorum,
                            a.approvers.join(", ")
                        )
                    }
                };
                s.push_str(&format!("decision  {outcome}\n"));
                s.push_str(&format!("reasons   {}\n", d.reasons_line()));
                if let Some(e) = d.error() {
                    s.push_str(&format!("error     {e}\n"));
                }
                if !d.redact().is_empty() {
                    s.push_str(&format!("redact    {}\n", d.redact().join(" ")));
                }
            }
            None => s.push_str(&format!(
                "result    {}\n",
                result
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "undefined".into())
            )),
        }
        s.push_str(&format!("policy    {} ({})\n", p.version(), dir.display()));
        s.push_str("rules fired:");
        if fired.is_empty() {
            s.push_str(" none");
        }
        for (r, v) in &fired {
            let mut v = v.to_string();
            if v.len() > 160 {
                v.truncate(157);
                v.push_str("...");
            }
            s.push_str(&format!("\n  {r} = {v}"));
        }
        s
    });
    Ok(())
}

fn test(ctx: &Ctx, dir: Option<PathBuf>) -> Result<()> {
    let dir = resolve_dir(ctx, dir)?;
    let p = load(&dir)?;
    let results = p.run_tests();
    let failed = results.iter().filter(|t| !t.passed).count();
    let passed = results.len() - failed;
    let out = json!({"dir": dir, "policy_version": p.version(), "passed": passed, "failed": failed, "tests": results});
    ctx.print(&out, || {
        let mut s = String::new();
        for t in results.iter().filter(|t| !t.passed) {
            s.push_str(&format!(
                "FAIL {}: {}\n",
                t.name,
                t.failure.as_deref().unwrap_or("")
            ));
        }
        s.push_str(&format!("{passed} passed, {failed} failed"));
        s
    });
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    Ok(())
}
