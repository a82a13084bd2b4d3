//! `mandate token issue|inspect`, `mandate delegate` and `mandate keys`.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{bail, Context, Result};
use mandate_core::duration::{format_duration, parse_duration};
use mandate_core::verify::{verify_mandate, Expect, DEFAULT_SKEW};
use mandate_core::{MandateClaims, PrincipalName, PublicKey};
use reqwest::Method;
use serde_json::json;

use crate::cli::{DelegateArgs, KeysCmd, TokenCmd};
use crate::client::{Api, TokenResponse, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE};
use crate::ctx::Ctx;
use crate::term::safe;

fn ttl_secs(ttl: &Option<String>) -> Result<Option<String>> {
    Ok(ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--ttl")?
        .map(|s| s.to_string()))
}

fn print_token(ctx: &Ctx, t: &TokenResponse) {
    // A real mandate is base64url and dots; anything else the server sent is escaped.
    ctx.print(&serde_json::to_value(t).expect("serialises"), || {
        safe(&t.access_token).into_owned()
    });
}

pub async fn token(ctx: &Ctx, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Issue {
            as_,
            aud,
            scope,
            ttl,
            may_act,
            bearer,
        } => {
            let id = ctx.identity(&as_)?;
            let mut params = vec![
                ("grant_type", "client_credentials".to_string()),
                ("scope", scope.join(" ")),
            ];
            params.extend(aud.into_iter().map(|a| ("audience", a)));
            if let Some(t) = ttl_secs(&ttl)? {
                params.push(("ttl", t));
            }
            if let Some(m) = may_act {
                params.push(("may_act", PrincipalName::parse_cli(&m)?.to_string()));
            }
            let t = ctx.api()?.token(&id, &params, !bearer).await?;
            print_token(ctx, &t);
            Ok(())
        }
        TokenCmd::Inspect { token } => inspect(ctx, &token).await,
    }
}

pub async fn delegate(ctx: &Ctx, a: DelegateArgs) -> Result<()> {
    let id = ctx.identity(&a.as_)?;
    let to = PrincipalName::parse_cli(&a.to)?;
    let mut api = ctx.api()?;
    let ttl = ttl_secs(&a.ttl)?;
    let subject = match a.subject_token {
        Some(t) if t == "-" => read_stdin()?,
        Some(t) => t,
        None => {
            // The delegator first gets its own mandate with exactly what it is about to pass on.
            if a.scope.is_empty() || a.aud.is_empty() {
                bail!("without --subject-token, give --aud and --scope: {} first gets its own mandate for them", id.name);
            }
            let mut p = vec![
                ("grant_type", "client_credentials".to_string()),
                ("scope", a.scope.join(" ")),
            ];
            p.extend(a.aud.iter().map(|x| ("audience", x.clone())));
            if let Some(t) = &ttl {
                p.push(("ttl", t.clone()));
            }
            api.token(&id, &p, true).await?.access_token
        }
    };
    let mut p = vec![
        ("grant_type", TOKEN_EXCHANGE.to_string()),
        ("subject_token", subject.trim().to_string()),
        ("subject_token_type", ACCESS_TOKEN_TYPE.to_string()),
        ("requested_actor", to.to_string()),
    ];
    if !a.scope.is_empty() {
        p.push(("scope", a.scope.join(" ")));
    }
    p.extend(a.aud.iter().map(|x| ("audience", x.clone())));
    if let Some(t) = ttl {
        p.push(("ttl", t));
    }
    if let Some(r) = a.reason {
        p.push(("reason", r));
    }
    let t = api.token(&id, &p, true).await?;
    print_token(ctx, &t);
    Ok(())
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    Ok(s.trim().to_string())
}

async fn verified(api: &mut Api, token: &str) -> Result<MandateClaims> {
    let meta = api.metadata().await?;
    let jwks = api.jwks().await?;
    let mut keys = HashMap::new();
    for k in jwks["keys"].as_array().context("JWKS has no keys")? {
        let kid = k["kid"].as_str().context("JWKS key without kid")?;
        keys.insert(kid.to_string(), PublicKey::from_jwk(k)?);
    }
    let expect = Expect {
        issuer: &meta.issuer,
        audience: None,
        now: mandate_server::now(),
        skew: DEFAULT_SKEW,
    };
    verify_mandate(token, &keys, expect)
        .map(|v| v.into_claims())
        .map_err(|e| anyhow::anyhow!("token is not valid ({}): {e}", e.code()))
}

/// The chain as a tree: each principal with the mandate it held, root first.
pub fn tree(c: &MandateClaims) -> String {
    let chain = c.chain();
    let mut jtis = c.mandate.parents.clone();
    jtis.push(c.jti.clone());
    let mut out = String::new();
    for (i, who) in chain.iter().enumerate() {
        let indent = if i == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(i - 1))
        };
        let jti = jtis.get(i).map(String::as_str).unwrap_or("?");
        let this = if i + 1 == chain.len() {
            "  <- this mandate"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {indent}{}  (jti {}){this}\n",
            safe(who),
            safe(jti)
        ));
    }
    out
}

async fn inspect(ctx: &Ctx, token: &str) -> Result<()> {
    let token = if token == "-" {
        read_stdin()?
    } else {
        token.trim().to_string()
    };
    let mut api = ctx.api()?;
    let c = verified(&mut api, &token).await?;
    let left = c.exp - mandate_server::now();
    let out = json!({"valid": true, "expires_in": left, "chain": c.chain(), "claims": c});
    ctx.print(&out, || {
        format!(
            "Valid mandate {} (expires in {})\n  subject    {}\n  holder     {}{}\n  audience   {}\n  scope      {}\n  depth      {} (at most {})\nDelegation chain:\n{}",
            safe(&c.jti),
            format_duration(left.max(0)),
            safe(&c.sub),
            safe(&c.client_id),
            c.cnf.as_ref().map(|x| format!(" (DPoP-bound, jkt {})", safe(&x.jkt))).unwrap_or_else(|| " (bearer)".into()),
            safe(&c.aud.as_slice().join(" ")),
            safe(&c.scope),
            c.mandate.depth,
            c.mandate.max_depth,
            tree(&c).trim_end()
        )
    });
    Ok(())
}

pub async fn keys(ctx: &Ctx, cmd: KeysCmd) -> Result<()> {
    let mut api = ctx.api()?;
    match cmd {
        KeysCmd::Rotate => {
            let admin = ctx.admin()?;
            let v = api
                .admin(&admin, Method::POST, "/keys/rotate", None)
                .await?;
            ctx.print(&v, || {
                format!(
                    "New issuer key {}; the old key {} stays in the JWKS until its last mandate expires (unix {})",
                    safe(v["kid"].as_str().unwrap_or("")), safe(v["retired_kid"].as_str().unwrap_or("")), v["retired_key_published_until"]
                )
            });
        }
        KeysCmd::List => {
            let v = api.jwks().await?;
            ctx.print(&v, || {
                v["keys"]
                    .as_array()
                    .map(|ks| {
                        ks.iter()
                            .map(|k| safe(k["kid"].as_str().unwrap_or("")).into_owned())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
    }
    Ok(())
}
