//! `mandate approvals list|show|approve|deny|cancel`: the approvals API (`/approvals/v1`) as a user,
//! authenticated with the user's own key (`--as user:NAME`, default the admin of config.toml)
//! and a mandate holding `mandate:approve`.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::cli::ApprovalsCmd;
use crate::ctx::Ctx;
use crate::term::safe;

const SCOPE: &str = mandate_core::delegation::APPROVE_SCOPE;

pub async fn run(ctx: &Ctx, c: ApprovalsCmd) -> Result<()> {
    let who = |as_: &Option<String>| match as_ {
        Some(p) => ctx.identity(p),
        None => ctx.admin(),
    };
    let mut api = ctx.api()?;
    match c {
        ApprovalsCmd::List { state, before, as_ } => {
            let me = who(&as_)?;
            if let Some(b) = &before {
                check_id(b)?;
            }
            let query: Vec<String> = [("state", &state), ("before", &before)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
            let path = if query.is_empty() {
                "/approvals/v1/requests".to_string()
            } else {
                format!("/approvals/v1/requests?{}", query.join("&"))
            };
            let v = api
                .call_as(&me, SCOPE, reqwest::Method::GET, &path, None)
                .await?;
            ctx.print(&v, || {
                let mut s = String::from("ID                          STATE     VOTES  TOOL                           REQUESTED BY");
                for a in v["approvals"].as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "\n{:<27} {:<9} {:<6} {:<30} {}",
                        safe(a["id"].as_str().unwrap_or("")),
                        safe(a["state"].as_str().unwrap_or("")),
                        format!("{}/{}", approvals(a), a["quorum"]),
                        safe(&format!(
                            "{}/{}",
                            a["upstream"].as_str().unwrap_or(""),
                            a["tool"].as_str().unwrap_or("")
                        )),
                        safe(a["requested_by"].as_str().unwrap_or("")),
                    ));
                }
                if let Some(next) = v["next"].as_str() {
                    s.push_str(&format!(
                        "\nmore: mandate approvals list --before {}",
                        safe(next)
                    ));
                }
                s
            });
        }
        ApprovalsCmd::Show { id, as_ } => {
            let me = who(&as_)?;
            check_id(&id)?;
            let v = api
                .call_as(
                    &me,
                    SCOPE,
                    reqwest::Method::GET,
                    &format!("/approvals/v1/requests/{id}"),
                    None,
                )
                .await?;
            ctx.print(&v, || describe(&v));
        }
        ApprovalsCmd::Approve { id, as_, reason } => {
            vote(ctx, &mut api, &who(&as_)?, &id, "approve", reason).await?
        }
        ApprovalsCmd::Deny { id, as_, reason } => {
            vote(ctx, &mut api, &who(&as_)?, &id, "deny", reason).await?
        }
        ApprovalsCmd::Cancel { id, as_, reason } => {
            vote(ctx, &mut api, &who(&as_)?, &id, "cancel", reason).await?
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<()> {
    if !mandate_core::approval::is_id(id) {
        bail!("{id:?} is not an approval request id (they look like apr_ and 22 characters; see `mandate approvals list`)");
    }
    Ok(())
}

async fn vote(
    ctx: &Ctx,
    api: &mut crate::client::Api,
    me: &crate::client::Identity,
    id: &str,
    how: &str,
    reason: Option<String>,
) -> Result<()> {
    check_id(id)?;
    let body = match &reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    };
    let v = api
        .call_as(
            me,
            SCOPE,
            reqwest::Method::POST,
            &format!("/approvals/v1/requests/{id}/{how}"),
            Some(body),
        )
        .await?;
    ctx.print(&v, || {
        let state = v["state"].as_str().unwrap_or("");
        let what = match (how, state) {
            ("approve", "approved") => {
                "approved: the held call goes through (once; a waiting call now, or the same call retried)".to_string()
            }
            ("approve", _) => format!(
                "approval counted: {} of {} ({state})",
                approvals(&v),
                v["quorum"]
            ),
            ("cancel", _) => {
                "withdrawn: a waiting call is told so; the same call made again asks anew"
                    .to_string()
            }
            _ => "denied: the agent is told your reason".to_string(),
        };
        format!("{} {what}", safe(id))
    });
    Ok(())
}

/// Unix seconds as RFC 3339 (UTC), for people.
fn when(v: &Value) -> String {
    v.as_i64()
        .map(|t| mandate_audit::event::rfc3339_millis(t.saturating_mul(1000)))
        .unwrap_or_default()
}

fn approvals(a: &Value) -> usize {
    a["votes"]
        .as_array()
        .map_or(0, |v| v.iter().filter(|v| v["vote"] == "approve").count())
}

/// A request for a human: the call, its arguments (as recorded: redacted), the chain as a tree,
/// why the policy held it, and the votes.
fn describe(v: &Value) -> String {
    let s = |k: &str| safe(v[k].as_str().unwrap_or("")).into_owned();
    let mut out = format!(
        "Approval request {}  [{}]\nCall:     {} on {}\nReason:   {}\nApprovers: {} (quorum {})\nExpires:  {}\n",
        s("id"),
        s("state"),
        s("tool"),
        s("upstream"),
        safe(v["reason"].as_str().unwrap_or("(none given)")),
        safe(
            &v["approvers"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        v["quorum"],
        when(&v["expires_at"]),
    );
    out.push_str("Chain:\n");
    for (depth, p) in v["chain"].as_array().into_iter().flatten().enumerate() {
        let lead = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(depth - 1))
        };
        out.push_str(&format!("  {lead}{}\n", safe(p.as_str().unwrap_or(""))));
    }
    let args = v["call"]["arguments"].clone();
    // Pretty JSON (its strings escaped by JSON itself; `ctx.print` escapes each line again).
    out.push_str(&format!(
        "Arguments (as recorded; secrets redacted):\n{}\n",
        serde_json::to_string_pretty(&args).unwrap_or_default()
    ));
    out.push_str(&format!(
        "Arguments SHA-256 (RFC 8785): {}\n",
        s("arguments_sha256")
    ));
    let votes = v["votes"].as_array().cloned().unwrap_or_default();
    if votes.is_empty() {
        out.push_str("Votes:    none yet\n");
    } else {
        out.push_str("Votes:\n");
        for x in votes {
            out.push_str(&format!(
                "  {} {} {}\n",
                safe(x["voter"].as_str().unwrap_or("")),
                safe(x["vote"].as_str().unwrap_or("")),
                safe(x["reason"].as_str().unwrap_or(""))
            ));
        }
    }
    if v["state"] == "pending" {
        out.push_str(&format!(
            "Approve:  mandate approvals approve {} --as user:NAME\nDeny:     mandate approvals deny {} --as user:NAME --reason \"...\"",
            s("id"),
            s("id")
        ));
    }
    out.trim_end().to_string()
}
