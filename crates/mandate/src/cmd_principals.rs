//! `mandate agent ...` and `mandate user ...`: registration, listing, state, enrollment.

use anyhow::{bail, Context, Result};
use mandate_core::duration::{format_duration, parse_duration};
use mandate_core::{PrincipalKind, PrincipalName, PublicKey, SecretKey};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{AgentCmd, CeilingArgs, RevokeCmd, UserCmd};
use crate::client::Api;
use crate::ctx::Ctx;
use crate::home::ClientConfig;
use crate::term::safe;

fn joined(v: &[String]) -> Option<String> {
    (!v.is_empty()).then(|| v.join(" "))
}

fn ceiling_json(c: &CeilingArgs) -> Result<Value> {
    let max_ttl = c
        .max_ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--max-ttl")?;
    Ok(json!({
        "scopes": joined(&c.scopes), "audiences": joined(&c.audiences), "max_ttl": max_ttl,
        "max_depth": c.max_depth, "allow_bearer": c.allow_bearer,
    }))
}

/// Every string of a principal the server answered, escaped for the terminal.
fn text(p: &Value, k: &str, default: &str) -> String {
    safe(p[k].as_str().unwrap_or(default)).into_owned()
}

fn describe(p: &Value) -> String {
    let s = |k: &str| text(p, k, "");
    let scopes = if s("scopes").is_empty() {
        "(none)".into()
    } else {
        s("scopes")
    };
    format!(
        "{}{}{}\n  kid        {}\n  scopes     {scopes}\n  audiences  {}\n  max_ttl    {}\n  max_depth  {}\n  bearer     {}",
        s("name"),
        p["role"].as_str().map(|r| format!(" (role {})", safe(r))).unwrap_or_default(),
        if p["disabled"].as_bool() == Some(true) { " [DISABLED]" } else { "" },
        text(p, "kid", "(no key yet: enrollment pending)"),
        s("audiences"),
        format_duration(p["max_ttl"].as_i64().unwrap_or(0)),
        p["max_depth"],
        if p["allow_bearer"].as_bool() == Some(true) { "allowed" } else { "refused (DPoP only)" },
    )
}

fn table(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut out = format!("{:<28} {:<8} {:<45} {}", "NAME", "STATE", "KID", "SCOPES");
    for p in rows {
        out.push_str(&format!(
            "\n{:<28} {:<8} {:<45} {}",
            text(p, "name", ""),
            if p["disabled"].as_bool() == Some(true) {
                "disabled"
            } else {
                "enabled"
            },
            text(p, "kid", "-"),
            text(p, "scopes", ""),
        ));
    }
    out
}

/// Registers a principal; makes its key here when none is given.
async fn create(
    ctx: &Ctx,
    name: PrincipalName,
    public_key: Option<String>,
    role: Option<String>,
    ceiling: &CeilingArgs,
) -> Result<()> {
    let admin = ctx.admin()?;
    let mut api = ctx.api()?;
    let (public, made_here) = match public_key {
        Some(k) => {
            let text = match k.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read public key file {file}"))?,
                None => k,
            };
            (PublicKey::parse(&text)?, None)
        }
        None => {
            let key = SecretKey::generate(&mut rand::rngs::OsRng);
            let path = ctx.home.save_key(&name, &key)?;
            (key.public(), Some(path))
        }
    };
    let mut body = ceiling_json(ceiling)?;
    body["name"] = name.to_string().into();
    body["public_key"] = public.x().into();
    if let Some(r) = role {
        body["role"] = r.into();
    }
    let res = api
        .admin(&admin, Method::POST, "/principals", Some(body))
        .await;
    let mut p = match res {
        Ok(p) => p,
        Err(e) => {
            // Registration failed: the key made for it is useless, so it is removed again.
            if let Some(path) = &made_here {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    if let Some(path) = &made_here {
        p["private_key_file"] = path.display().to_string().into();
    }
    ctx.print(&p, || {
        let mut s = format!("Registered {}", describe(&p));
        if let Some(path) = &made_here {
            s.push_str(&format!(
                "\n  key        made here, private half in {} (0600)",
                path.display()
            ));
        }
        s
    });
    Ok(())
}

async fn list(ctx: &Ctx, kind: PrincipalKind) -> Result<()> {
    let admin = ctx.admin()?;
    let v = ctx
        .api()?
        .admin(
            &admin,
            Method::GET,
            &format!("/principals?kind={}", kind.as_str()),
            None,
        )
        .await?;
    let rows = v["principals"].as_array().cloned().unwrap_or_default();
    ctx.print(&v, || table(&rows));
    Ok(())
}

async fn simple(ctx: &Ctx, method: Method, path: String) -> Result<Value> {
    let admin = ctx.admin()?;
    ctx.api()?.admin(&admin, method, &path, None).await
}

fn agent_name(name: &str) -> Result<PrincipalName> {
    Ok(PrincipalName::new(
        PrincipalKind::Agent,
        name.strip_prefix("agent:").unwrap_or(name),
    )?)
}

pub async fn agent(ctx: &Ctx, cmd: AgentCmd) -> Result<()> {
    match cmd {
        AgentCmd::Create {
            name,
            public_key,
            ceiling,
        } => create(ctx, agent_name(&name)?, public_key, None, &ceiling).await,
        AgentCmd::List => list(ctx, PrincipalKind::Agent).await,
        AgentCmd::Show { name } => {
            let p = simple(
                ctx,
                Method::GET,
                format!("/principals/{}", agent_name(&name)?),
            )
            .await?;
            ctx.print(&p, || describe(&p));
            Ok(())
        }
        AgentCmd::Disable { name } => {
            let p = simple(
                ctx,
                Method::POST,
                format!("/principals/{}/disable", agent_name(&name)?),
            )
            .await?;
            ctx.print(&p, || {
                let ttl = p["max_ttl"]
                    .as_i64()
                    .map(|t| format!(", at most {}", format_duration(t)))
                    .unwrap_or_default();
                format!(
                    "Disabled {}: it can no longer authenticate or receive new mandates\nMandates it already holds or appears in remain valid until they expire{ttl} (its max_ttl); to cut them off now, run `mandate revoke agent {}`",
                    text(&p, "name", ""),
                    text(&p, "name", "").trim_start_matches("agent:")
                )
            });
            Ok(())
        }
        AgentCmd::Enable { name } => {
            let p = simple(
                ctx,
                Method::POST,
                format!("/principals/{}/enable", agent_name(&name)?),
            )
            .await?;
            ctx.print(&p, || format!("Enabled {}", text(&p, "name", "")));
            Ok(())
        }
        AgentCmd::Enroll { name, ttl, ceiling } => {
            enroll(ctx, agent_name(&name)?, ttl, &ceiling).await
        }
        AgentCmd::Join { code } => join(ctx, &code).await,
    }
}

async fn enroll(
    ctx: &Ctx,
    name: PrincipalName,
    ttl: Option<String>,
    ceiling: &CeilingArgs,
) -> Result<()> {
    let admin = ctx.admin()?;
    let mut agent = ceiling_json(ceiling)?;
    agent["name"] = name.to_string().into();
    let ttl = ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("--ttl")?;
    let body = json!({"ttl": ttl, "agent": agent});
    let v = ctx
        .api()?
        .admin(
            &admin,
            Method::POST,
            &format!("/principals/{name}/enrollments"),
            Some(body),
        )
        .await?;
    ctx.print(&v, || {
        format!(
            "Enrollment code for {name} (single use, expires in {}):\n  {}\nOn the agent's machine run:\n  mandate agent join --code {} --server {}",
            format_duration(v["expires_at"].as_i64().unwrap_or(0) - mandate_server::now()),
            text(&v, "code", ""),
            text(&v, "code", ""),
            text(&v, "server", ""),
        )
    });
    Ok(())
}

async fn join(ctx: &Ctx, code: &str) -> Result<()> {
    let server = ctx.server_url()?;
    let mut api = Api::new(&server);
    let key = SecretKey::generate(&mut rand::rngs::OsRng);
    let v = api
        .post_json(
            "/enroll/v1/join",
            json!({"code": code, "public_key": key.public().x()}),
        )
        .await?;
    let name: PrincipalName = v["name"]
        .as_str()
        .context("join answer has no name")?
        .parse()?;
    let path = ctx.home.save_key(&name, &key)?;
    let mut cfg = ctx.home.client_config()?;
    if cfg.server.is_none() {
        cfg = ClientConfig {
            server: Some(server.clone()),
            principal: cfg.principal,
        };
        ctx.home.write_client_config(&cfg)?;
    }
    let out = json!({"name": name, "kid": v["kid"], "server": server, "private_key_file": path});
    ctx.print(&out, || {
        format!(
            "Joined {server} as {name}\n  kid  {}\n  key  {} (0600, never leaves this machine)",
            text(&v, "kid", ""),
            path.display()
        )
    });
    Ok(())
}

pub async fn user(ctx: &Ctx, cmd: UserCmd) -> Result<()> {
    let user_name =
        |n: &str| PrincipalName::new(PrincipalKind::User, n.strip_prefix("user:").unwrap_or(n));
    match cmd {
        UserCmd::Create {
            name,
            public_key,
            role,
            ceiling,
        } => create(ctx, user_name(&name)?, public_key, role, &ceiling).await,
        UserCmd::List => list(ctx, PrincipalKind::User).await,
        UserCmd::Show { name } => {
            let p = simple(
                ctx,
                Method::GET,
                format!("/principals/{}", user_name(&name)?),
            )
            .await?;
            ctx.print(&p, || describe(&p));
            Ok(())
        }
    }
}

/// The `jti` of a mandate given either as its jti or as the whole token.
fn jti_of(s: &str) -> Result<String> {
    if !s.contains('.') {
        return Ok(s.to_string());
    }
    let jws = mandate_core::jws::Jws::decode(s.trim())?;
    let claims: Value = jws.unverified_claims()?;
    Ok(claims["jti"]
        .as_str()
        .context("the token has no jti")?
        .to_string())
}

/// Refuses a whole token where an identifier is expected, before it is parsed (a parse error
/// would quote it), sent to the server or logged. The message never repeats the value.
fn not_a_token(value: &str, what: &str, kind: &str) -> Result<()> {
    if mandate_core::jws::looks_like_compact_jws(value) {
        bail!(
            "`mandate revoke {kind}` was given a whole token: pass the {what}, not a token (nothing was sent; to revoke this mandate and everything delegated from it, run `mandate revoke token TOKEN`)"
        );
    }
    Ok(())
}

pub async fn revoke(ctx: &Ctx, cmd: RevokeCmd) -> Result<()> {
    match &cmd {
        RevokeCmd::Agent { name, .. } => not_a_token(name, "agent name", "agent")?,
        RevokeCmd::User { name, .. } => not_a_token(name, "user name", "user")?,
        RevokeCmd::Key { kid, .. } => not_a_token(kid, "kid", "key")?,
        // A token is what `revoke token` takes: only its jti is sent.
        RevokeCmd::Token { .. } => {}
    }
    let (kind, value, reason) = match cmd {
        RevokeCmd::Agent { name, reason } => ("agent", agent_name(&name)?.to_string(), reason),
        RevokeCmd::User { name, reason } => {
            let n = PrincipalName::new(
                PrincipalKind::User,
                name.strip_prefix("user:").unwrap_or(&name),
            )?;
            ("user", n.to_string(), reason)
        }
        RevokeCmd::Key { kid, reason } => ("key", kid, reason),
        RevokeCmd::Token { jti, reason } => ("token", jti_of(&jti)?, reason),
    };
    let admin = ctx.admin()?;
    let body = json!({"kind": kind, "value": value, "reason": reason});
    let v = ctx
        .api()?
        .admin(&admin, Method::POST, "/revocations", Some(body))
        .await?;
    ctx.print(&v, || {
        let what = match kind {
            "agent" | "user" => "it is disabled and every mandate it appears in is refused",
            "key" => "mandates signed by or bound to it are refused",
            _ => "it and every mandate delegated from it are refused",
        };
        format!("Revoked {kind} {value} (revocation #{}): {what}", v["seq"])
    });
    Ok(())
}
