//! The admin API for the gateway's upstreams (`mandate upstream add|list|show|remove`): changes
//! apply at once, without a restart, and each is an audited admin change (the event first, then
//! the change). Upstreams declared in `server.toml` are listed and shown but changed only there.
//!
//! `POST /admin/v1/upstreams` `{"name", "config": {...}}` adds one (201); `GET` lists them;
//! `GET /admin/v1/upstreams/{name}` shows one with its tools and who may call each;
//! `DELETE /admin/v1/upstreams/{name}` removes one (its stdio child is stopped).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use mandate_gateway::{Origin, Upstream, UpstreamConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::audit::audited;
use crate::auth::AdminCaller;
use crate::state::{now, AppState};

type St = State<Arc<AppState>>;

/// The routes, nested under the admin API (which adds the refusal audit layer).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/upstreams", get(list).post(add))
        .route("/upstreams/{name}", get(show).delete(remove))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUpstream {
    name: String,
    config: UpstreamConfig,
}

fn gateway(st: &AppState) -> Result<Arc<mandate_gateway::Gateway>, ApiError> {
    st.gateway
        .get()
        .and_then(std::sync::Weak::upgrade)
        .ok_or_else(|| ApiError::unavailable("no gateway runs in this process"))
}

fn summary(u: &Upstream) -> Value {
    json!({
        "name": u.name,
        "transport": u.checked.transport.kind(),
        "audience": u.checked.audience,
        "origin": u.origin,
        "up": u.is_up(),
        "sandbox": match (&u.checked.sandbox, u.checked.transport.kind()) {
            (Some(_), _) => "on",
            (None, "stdio") => "off",
            _ => "n/a",
        },
        "sandbox_in_force": u.checked.sandbox.as_ref().map(|p| {
            p.describe().into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>()
        }),
        "path": if u.checked.transport.is_mcp() { format!("/mcp/{}", u.name) } else { format!("/http/{}/...", u.name) },
        "config": u.config,
    })
}

async fn add(
    State(st): St,
    AdminCaller(who): AdminCaller,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: AddUpstream = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid upstream: {e}")))?;
    let gw = gateway(&st)?;
    req.config
        .validate(&req.name)
        .map_err(|e| ApiError::bad_request(e.0))?;
    req.config
        .check_sandbox_paths(&req.name)
        .map_err(|e| ApiError::bad_request(e.0))?;
    // Its secret files must not be readable by a sandbox already running.
    for f in req.config.secret_files() {
        let real = f.canonicalize().unwrap_or(f.clone());
        for u in gw.upstreams.all() {
            let Some(p) = &u.checked.sandbox else {
                continue;
            };
            if let Some(d) =
                p.read.iter().chain(&p.write).find(|d| {
                    real.starts_with(d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
                })
            {
                return Err(ApiError::bad_request(format!(
                    "secret file {} lies in {}, which upstream {}'s sandbox may read; keep secrets outside every sandbox's paths",
                    f.display(),
                    d.display(),
                    u.name
                )));
            }
        }
    }
    // The server's own directory (issuer keys, audit keys, the database) is never a secret source.
    if let Some(server_dir) = st.cfg.keys_dir.parent() {
        req.config
            .check_secret_files_outside(&req.name, server_dir)
            .map_err(|e| ApiError::bad_request(e.0))?;
    }
    if let Some(existing) = gw.upstreams.get(&req.name) {
        return Err(ApiError::conflict(match existing.origin {
            Origin::Config => format!(
                "upstream {} is declared in server.toml: change it there",
                req.name
            ),
            Origin::Admin => format!(
                "upstream {} already exists: `mandate upstream remove {}` first",
                req.name, req.name
            ),
        }));
    }
    let config_json = serde_json::to_string(&req.config)
        .map_err(|e| ApiError::internal("upstream configuration", e))?;
    let mut ev = crate::admin::change(&who, "upstream.add", &req.name);
    ev.details.insert(
        "config".into(),
        serde_json::to_value(&req.config).unwrap_or_default(),
    );
    let stored = mandate_store::StoredUpstream {
        name: req.name.clone(),
        config: config_json,
        created_at: now(),
        created_by: who.claims.client_id.clone(),
    };
    audited(&st, ev, async {
        st.store.add_upstream(&stored).await.map_err(ApiError::from)
    })
    .await?;
    let up = Upstream::start(&req.name, req.config, Origin::Admin)
        .map_err(|e| ApiError::bad_request(e.0))?;
    tracing::info!(upstream = %req.name, by = %who.claims.client_id, transport = up.checked.transport.kind(), "upstream added");
    let out = summary(&up);
    if let Some(old) = gw.upstreams.put(up) {
        old.shutdown().await;
    }
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(State(st): St, _: AdminCaller) -> Result<impl IntoResponse, ApiError> {
    let gw = gateway(&st)?;
    let ups: Vec<Value> = gw.upstreams.all().iter().map(|u| summary(u)).collect();
    Ok(Json(json!({ "upstreams": ups })))
}

async fn show(
    State(st): St,
    _: AdminCaller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let gw = gateway(&st)?;
    let up = gw
        .upstreams
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no upstream called {name}")))?;
    gw.refresh_tools(&up).await;
    let principals = st.store.list_principals(None).await?;
    let loaded: Vec<crate::principals::Loaded> = principals
        .into_iter()
        .filter(|p| !p.disabled)
        .filter_map(|p| crate::principals::Loaded::new(p).ok())
        .collect();
    let audience = &up.checked.audience;
    let tools: Vec<Value> = up
        .known_tools()
        .iter()
        .map(|tool| {
            let scope = up.checked.scopes.required(tool).ok();
            let callers: Vec<String> = match &scope {
                Some(s) => loaded
                    .iter()
                    .filter(|p| {
                        p.ceiling.scopes.covers(s)
                            && p.ceiling.audiences.iter().any(|a| {
                                a == audience || a == mandate_core::delegation::ANY_AUDIENCE
                            })
                    })
                    .map(|p| p.name.to_string())
                    .collect(),
                None => vec![],
            };
            json!({
                "name": tool,
                "scope": scope.map(|s| s.as_str().to_string()),
                "annotations": up.annotations(tool),
                "callers": callers,
            })
        })
        .collect();
    let mut out = summary(&up);
    out["tools"] = Value::Array(tools);
    out["note"] = json!("callers: principals whose ceiling holds the tool's scope and the audience; the policy decides each call");
    Ok(Json(out))
}

async fn remove(
    State(st): St,
    AdminCaller(who): AdminCaller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let gw = gateway(&st)?;
    match gw.upstreams.get(&name) {
        None => return Err(ApiError::not_found(format!("no upstream called {name}"))),
        Some(u) if u.origin == Origin::Config => {
            return Err(ApiError::conflict(format!(
                "upstream {name} is declared in server.toml: remove it there"
            )))
        }
        Some(_) => {}
    }
    audited(
        &st,
        crate::admin::change(&who, "upstream.remove", &name),
        async {
            if !st.store.remove_upstream(&name).await? {
                return Err(ApiError::not_found(format!("no upstream called {name}")));
            }
            Ok(())
        },
    )
    .await?;
    if let Some(old) = gw.upstreams.remove(&name) {
        old.shutdown().await;
    }
    tracing::info!(upstream = %name, by = %who.claims.client_id, "upstream removed");
    Ok(Json(json!({ "removed": name })))
}

/// Records, at start-up, that an upstream declared in `server.toml` runs unsandboxed
/// (`sandbox = "off"`): an admin change by whoever wrote the file, since nobody made it through
/// the admin API. Fails when the audit log cannot take it, and the server then does not start.
pub async fn audit_unsandboxed(
    st: &AppState,
    name: &str,
    config: &UpstreamConfig,
) -> Result<(), mandate_store::StoreError> {
    let mut ev = crate::audit::new_event(
        mandate_audit::event::kinds::ADMIN_CHANGE,
        "config:server.toml",
        mandate_gateway::upstream::SANDBOX_OFF_ACTION,
    );
    mandate_gateway::upstream::describe_sandbox_off(&mut ev, name, config);
    st.audit(&ev).await.map(|_| ())
}

/// Starts the upstreams stored by earlier `mandate upstream add`s (a name `server.toml` also
/// declares keeps its `server.toml` form, with a warning). One that no longer checks out is
/// logged and skipped, so that the rest are served.
pub async fn start_stored(
    st: &AppState,
    gw: &mandate_gateway::Gateway,
) -> Result<(), mandate_store::StoreError> {
    for s in st.store.upstreams().await? {
        if gw.upstreams.get(&s.name).is_some() {
            tracing::warn!(upstream = %s.name, "an upstream added with `mandate upstream add` has the name of one in server.toml; serving the server.toml one");
            continue;
        }
        let started = serde_json::from_str::<UpstreamConfig>(&s.config)
            .map_err(|e| e.to_string())
            .and_then(|c| Upstream::start(&s.name, c, Origin::Admin).map_err(|e| e.0));
        match started {
            Ok(up) => {
                tracing::info!(upstream = %s.name, transport = up.checked.transport.kind(), "serving upstream {}", s.name);
                if up.config.sandbox_off() {
                    tracing::warn!(upstream = %s.name, "stdio upstream runs unsandboxed (sandbox = \"off\"), with the gateway's rights");
                }
                gw.upstreams.put(up);
            }
            Err(e) => {
                tracing::error!(upstream = %s.name, error = %e, "a stored upstream does not check out; not served (remove it and add it again)")
            }
        }
    }
    Ok(())
}
