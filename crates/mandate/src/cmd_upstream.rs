//! `mandate upstream add|list|show|remove`: the gateway's upstreams through the admin API (live,
//! audited). Upstreams in `server.toml` are listed and shown; they are changed by editing it.

use anyhow::{bail, Context, Result};
use mandate_gateway::UpstreamConfig;
use serde_json::{json, Value};

use crate::cli::{UpstreamAddArgs, UpstreamCmd};
use crate::ctx::Ctx;
use crate::term::safe;

pub async fn run(ctx: &Ctx, c: UpstreamCmd) -> Result<()> {
    let admin = ctx.admin()?;
    let mut api = ctx.api()?;
    match c {
        UpstreamCmd::Add(a) => {
            let name = a.name.clone();
            let config = config_of(*a)?;
            // Checked here too, so a mistake is reported before anything is sent.
            config.validate(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let body = json!({"name": name, "config": config});
            let v = api
                .admin(&admin, reqwest::Method::POST, "/upstreams", Some(body))
                .await?;
            ctx.print(&v, || {
                format!(
                    "Added upstream {} ({}), served at {} for audience {}",
                    safe(v["name"].as_str().unwrap_or("")),
                    safe(v["transport"].as_str().unwrap_or("")),
                    safe(v["path"].as_str().unwrap_or("")),
                    safe(v["audience"].as_str().unwrap_or(""))
                )
            });
        }
        UpstreamCmd::List => {
            let v = api
                .admin(&admin, reqwest::Method::GET, "/upstreams", None)
                .await?;
            ctx.print(&v, || {
                let mut s =
                    String::from("NAME                 TRANSPORT  ORIGIN  UP   SANDBOX  AUDIENCE");
                for u in v["upstreams"].as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "\n{:<20} {:<10} {:<7} {:<4} {:<8} {}",
                        safe(u["name"].as_str().unwrap_or("")),
                        safe(u["transport"].as_str().unwrap_or("")),
                        safe(u["origin"].as_str().unwrap_or("")),
                        if u["up"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        },
                        safe(u["sandbox"].as_str().unwrap_or("")),
                        safe(u["audience"].as_str().unwrap_or(""))
                    ));
                }
                s
            });
        }
        UpstreamCmd::Show { name } => {
            let v = api
                .admin(
                    &admin,
                    reqwest::Method::GET,
                    &format!("/upstreams/{}", path_segment(&name)?),
                    None,
                )
                .await?;
            ctx.print(&v, || show_text(&v));
        }
        UpstreamCmd::Remove { name } => {
            let v = api
                .admin(
                    &admin,
                    reqwest::Method::DELETE,
                    &format!("/upstreams/{}", path_segment(&name)?),
                    None,
                )
                .await?;
            ctx.print(&v, || format!("Removed upstream {}", safe(&name)));
        }
    }
    Ok(())
}

/// A name as one URL path segment (names are checked by the server; this keeps `/` and `?` out).
fn path_segment(name: &str) -> Result<&str> {
    if !mandate_gateway::config::valid_name(name) {
        bail!("{name:?} is not an upstream name (lower-case letters, digits, '-' and '_')");
    }
    Ok(name)
}

fn pairs(flag: &str, items: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|i| {
            let (k, v) = i
                .split_once('=')
                .with_context(|| format!("{flag} {i:?}: write NAME=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn config_of(a: UpstreamAddArgs) -> Result<UpstreamConfig> {
    if a.stdio && a.command.is_empty() {
        bail!("--stdio needs the command after `--`: mandate upstream add NAME --stdio -- npx -y @modelcontextprotocol/server-filesystem /srv");
    }
    if !a.stdio && !a.command.is_empty() {
        bail!("a command after `--` goes with --stdio");
    }
    let mut c = UpstreamConfig {
        url: a.url,
        http: a.http,
        stdio: if a.stdio { a.command } else { vec![] },
        audience: a.audience,
        timeout: a.timeout,
        env: pairs("--env", &a.env)?,
        secret_env: pairs("--secret-env", &a.secret_env)?,
        secret_header: pairs("--secret-header", &a.secret_header)?,
        ..Default::default()
    };
    if !a.pass_env.is_empty() {
        c.pass_env = Some(a.pass_env);
    }
    let declared = !a.allow_read.is_empty()
        || !a.allow_write.is_empty()
        || !a.allow_net.is_empty()
        || a.memory.is_some()
        || a.processes.is_some()
        || a.disk.is_some();
    if declared && !c.stdio.is_empty() {
        c.sandbox = Some(mandate_gateway::config::SandboxSetting::On(
            mandate_sandbox::SandboxConfig {
                read: a.allow_read,
                write: a.allow_write,
                network: a.allow_net,
                memory: a.memory,
                processes: a.processes,
                disk: a.disk,
                ..Default::default()
            },
        ));
    } else if declared {
        bail!("--allow-read, --allow-write, --allow-net, --memory, --processes and --disk shape a stdio upstream's sandbox: use them with --stdio");
    } else if a.sandbox.is_some() {
        c.sandbox = Some(mandate_gateway::config::SandboxSetting::Off);
    }
    c.forward_mandate = a.forward_mandate;
    c.forward_audience = a.forward_audience;
    for r in &a.route {
        let (lhs, action) = r
            .split_once('=')
            .with_context(|| format!("--route {r:?}: write 'METHOD PATH=ACTION'"))?;
        let (method, path) = lhs
            .trim()
            .split_once(' ')
            .with_context(|| format!("--route {r:?}: write 'METHOD PATH=ACTION'"))?;
        c.routes.push(mandate_gateway::config::RouteConfig {
            method: method.trim().to_string(),
            path: path.trim().to_string(),
            action: action.trim().to_string(),
        });
    }
    for (tools, scope) in pairs("--scope-rule", &a.scope_rule)? {
        c.scopes
            .push(mandate_gateway::config::ScopeRuleConfig { tools, scope });
    }
    Ok(c)
}

fn show_text(v: &Value) -> String {
    let mut s = format!(
        "Upstream {} ({}, from {}), audience {}, {}",
        safe(v["name"].as_str().unwrap_or("")),
        safe(v["transport"].as_str().unwrap_or("")),
        safe(v["origin"].as_str().unwrap_or("")),
        safe(v["audience"].as_str().unwrap_or("")),
        if v["up"].as_bool() == Some(true) {
            "up"
        } else {
            "not running"
        }
    );
    let config = serde_json::to_string(&v["config"]).unwrap_or_default();
    s.push_str(&format!("\n  config  {}", safe(&config)));
    match v["sandbox"].as_str() {
        Some("off") => s.push_str(
            "\n  sandbox OFF: the child runs with the gateway's rights (sandbox = \"off\")",
        ),
        Some("on") => {
            s.push_str("\n  sandbox on (docs/sandbox.md):");
            for (k, val) in v["sandbox_in_force"].as_object().into_iter().flatten() {
                s.push_str(&format!(
                    "\n    {:<11} {}",
                    safe(k),
                    safe(val.as_str().unwrap_or(""))
                ));
            }
        }
        _ => {}
    }
    let tools = v["tools"].as_array().cloned().unwrap_or_default();
    if tools.is_empty() {
        s.push_str("\n  tools   (none known yet: a stdio upstream is asked; an HTTP upstream's are learned from the lists callers make)");
    }
    for t in tools {
        let callers: Vec<String> = t["callers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(|c| safe(c).into_owned()))
            .collect();
        s.push_str(&format!(
            "\n  {:<24} scope {:<28} callers: {}",
            safe(t["name"].as_str().unwrap_or("")),
            safe(t["scope"].as_str().unwrap_or("(none: refused)")),
            if callers.is_empty() {
                "nobody".to_string()
            } else {
                callers.join(", ")
            }
        ));
    }
    s
}
