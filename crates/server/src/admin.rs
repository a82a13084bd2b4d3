//! The admin API: principals (create, list, show, disable, enable), enrollment codes and issuer
//! key rotation. Every call is authenticated with the admin's own DPoP-bound mandate for the
//! issuer audience holding `mandate:admin`; no shared secret exists.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_core::claims::MAX_CHAIN_DEPTH;
use mandate_core::{PrincipalKind, PrincipalName, PublicKey, ScopeSet};
use mandate_store::{NewKey, NewPrincipal};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use mandate_audit::event::{kinds, Event};

use crate::api_error::ApiError;
use crate::audit::{audited, new_event};
use crate::auth::AdminCaller;
use crate::principals::to_json;
use crate::refusals::{audit_refusals, RefusalKind};
use crate::resource_auth::Caller;
use crate::state::{now, AppState};

/// Default longest lifetime of a principal's mandates: 1 hour.
pub const DEFAULT_MAX_TTL: i64 = 3600;
/// Hard cap on any principal's `max_ttl`: 1 day.
pub const MAX_TTL_CAP: i64 = 86_400;
/// Default deepest chain position a principal may hold a mandate at.
pub const DEFAULT_MAX_DEPTH: i64 = 5;

type St = State<Arc<AppState>>;

/// The admin routes, mounted under `/admin/v1`. Every refused call is recorded (the caller is
/// authenticated by [`AdminCaller`]; see [`crate::refusals::audit_refusals`]).
pub fn routes(st: Arc<AppState>) -> Router<Arc<AppState>> {
    let refused = RefusalKind {
        kind: kinds::ADMIN_REFUSED,
        action: crate::auth::ADMIN_ACTION,
    };
    Router::new()
        .route("/principals", post(create).get(list))
        .route("/principals/{name}", get(show))
        .route("/principals/{name}/disable", post(disable))
        .route("/principals/{name}/enable", post(enable))
        .route("/principals/{name}/enrollments", post(enroll))
        .route("/keys/rotate", post(rotate))
        .route("/revocations", post(revoke))
        .merge(crate::admin_upstreams::routes())
        .layer(axum::middleware::from_fn_with_state(
            (st, refused),
            audit_refusals,
        ))
}

/// A request to register a principal (also the ceiling of an agent made by enrollment).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Option<String>,
    #[serde(default)]
    audiences: Option<String>,
    #[serde(default)]
    max_ttl: Option<i64>,
    #[serde(default)]
    max_depth: Option<i64>,
    #[serde(default)]
    allow_bearer: bool,
}

fn validate(req: CreatePrincipal, now: i64) -> Result<NewPrincipal, ApiError> {
    let name: PrincipalName = req
        .name
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let kind = name.kind();
    if req.role.is_some() && kind != PrincipalKind::User {
        return Err(ApiError::bad_request("only users have roles"));
    }
    if let Some(r) = req.role.as_deref() {
        if r != "admin" && r != "approver" {
            return Err(ApiError::bad_request(format!(
                "unknown role {r:?}: use admin or approver"
            )));
        }
    }
    // Agents start with no scopes at all (least privilege); users, the roots of authority, may
    // hold any scope except Mandate's own administration, which needs the admin role.
    let default_scopes = if kind == PrincipalKind::User { "*" } else { "" };
    let scopes = ScopeSet::parse(req.scopes.as_deref().unwrap_or(default_scopes))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    mandate_core::delegation::check_ceiling(&scopes, req.role.as_deref() == Some("admin"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let audiences: Vec<&str> = req
        .audiences
        .as_deref()
        .unwrap_or("*")
        .split_ascii_whitespace()
        .collect();
    let max_auds = mandate_core::delegation::MAX_AUDIENCES * 2;
    if audiences.len() > max_auds
        || audiences
            .iter()
            .any(|a| a.len() > 512 || a.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(format!(
            "a ceiling lists at most {max_auds} audiences, each at most 512 characters without control characters"
        )));
    }
    let max_ttl = req.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
    if !(1..=MAX_TTL_CAP).contains(&max_ttl) {
        return Err(ApiError::bad_request(format!(
            "max_ttl must be between 1s and {MAX_TTL_CAP}s"
        )));
    }
    let max_depth = req.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
    if !(0..=i64::from(MAX_CHAIN_DEPTH)).contains(&max_depth) {
        return Err(ApiError::bad_request(format!(
            "max_depth must be between 0 and {MAX_CHAIN_DEPTH}"
        )));
    }
    let key = req
        .public_key
        .as_deref()
        .map(|k| PublicKey::parse(k).map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?
        .map(|k| NewKey {
            kid: k.thumbprint(),
            public_key: k.x(),
        });
    Ok(NewPrincipal {
        name: name.to_string(),
        kind: kind.as_str().to_string(),
        role: req.role,
        allow_bearer: req.allow_bearer,
        ceiling_scopes: scopes.to_string(),
        ceiling_audiences: audiences.join(" "),
        max_ttl_secs: max_ttl,
        max_depth,
        key,
        now,
    })
}

/// An admin change's event, before the change.
pub(crate) fn change(who: &Caller, action: &str, resource: &str) -> Event {
    let mut ev = new_event(kinds::ADMIN_CHANGE, &who.claims.client_id, action);
    ev.chain = who.claims.chain_to_holder();
    ev.resource = Some(resource.to_string());
    ev.jti = Some(who.claims.jti.clone());
    ev
}

async fn create(
    State(st): St,
    AdminCaller(who): AdminCaller,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CreatePrincipal = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let p = validate(req, now())?;
    let mut ev = change(&who, "principal.create", &p.name);
    ev.details = principal_details(&p);
    audited(&st, ev, async {
        st.store.create_principal(&p).await.map_err(ApiError::from)
    })
    .await?;
    st.principals.invalidate(&p.name);
    tracing::info!(principal = %p.name, by = %who.claims.client_id, "principal created");
    let row = st
        .store
        .principal(&p.name)
        .await?
        .ok_or_else(|| ApiError::internal("principal vanished", &p.name))?;
    Ok((StatusCode::CREATED, Json(to_json(&row))))
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
}

async fn list(
    State(st): St,
    _: AdminCaller,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let rows = st.store.list_principals(q.kind.as_deref()).await?;
    Ok(Json(
        serde_json::json!({"principals": rows.iter().map(to_json).collect::<Vec<_>>()}),
    ))
}

async fn show(
    State(st): St,
    _: AdminCaller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let row = st
        .store
        .principal(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name} does not exist")))?;
    Ok(Json(to_json(&row)))
}

async fn set_disabled(
    st: &AppState,
    name: &str,
    disabled: bool,
    who: &Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let by = who.claims.client_id.as_str();
    let action = if disabled {
        "principal.disable"
    } else {
        "principal.enable"
    };
    audited(st, change(who, action, name), async {
        let changed = st.store.set_disabled(name, disabled, now()).await;
        st.principals.invalidate(name);
        if !changed? {
            return Err(ApiError::not_found(format!("{name} does not exist")));
        }
        Ok(())
    })
    .await?;
    tracing::info!(principal = %name, by, disabled, "principal state changed");
    let row = st
        .store
        .principal(name)
        .await?
        .ok_or_else(|| ApiError::not_found(name.to_string()))?;
    Ok(Json(to_json(&row)))
}

async fn disable(
    State(st): St,
    AdminCaller(who): AdminCaller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if who.claims.client_id == name {
        return Err(ApiError::bad_request("an admin cannot disable itself"));
    }
    set_disabled(&st, &name, true, &who).await
}

async fn enable(
    State(st): St,
    AdminCaller(who): AdminCaller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set_disabled(&st, &name, false, &who).await
}

/// Enrollment request: the ceiling to create the agent with if it does not exist yet.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    agent: Option<CreatePrincipal>,
}

/// Hashes an enrollment code for storage; only the hash is ever stored.
pub fn code_hash(code: &str) -> String {
    Sha256::digest(code.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn enroll(
    State(st): St,
    AdminCaller(who): AdminCaller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: EnrollRequest = if body.is_empty() {
        EnrollRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let now = now();
    let ttl = req.ttl.unwrap_or(st.cfg.enrollment_ttl);
    if !(1..=7 * 86_400).contains(&ttl) {
        return Err(ApiError::bad_request(
            "enrollment ttl must be between 1s and 7d",
        ));
    }
    // Everything is validated before the event, so the event says exactly what is done.
    let new_principal = match st.store.principal(&name).await? {
        Some(_) => None,
        None => {
            let mut p = req.agent.unwrap_or_default();
            p.name = name.clone();
            p.public_key = None;
            Some(validate(p, now)?)
        }
    };
    let mut ev = change(&who, "enrollment.create", &name);
    ev.details.insert("expires_at".into(), (now + ttl).into());
    if let Some(p) = &new_principal {
        ev.details
            .insert("creates_principal".into(), principal_details(p).into());
    }
    // The code itself is a secret: only the event says one was issued.
    audited(
        &st,
        ev,
        enroll_inner(&st, &who, name, new_principal, now, ttl),
    )
    .await
}

/// What an audit event records of a new principal (its ceiling; never a key, only its kid).
fn principal_details(p: &NewPrincipal) -> serde_json::Map<String, serde_json::Value> {
    let mut d = serde_json::Map::new();
    d.insert("kind".into(), p.kind.clone().into());
    d.insert("role".into(), p.role.clone().into());
    d.insert("scopes".into(), p.ceiling_scopes.clone().into());
    d.insert("audiences".into(), p.ceiling_audiences.clone().into());
    d.insert("max_ttl_secs".into(), p.max_ttl_secs.into());
    d.insert("max_depth".into(), p.max_depth.into());
    d.insert("allow_bearer".into(), p.allow_bearer.into());
    if let Some(k) = &p.key {
        d.insert("kid".into(), k.kid.clone().into());
    }
    d
}

async fn enroll_inner(
    st: &AppState,
    who: &Caller,
    name: String,
    new_principal: Option<NewPrincipal>,
    now: i64,
    ttl: i64,
) -> Result<Json<serde_json::Value>, ApiError> {
    let created = match new_principal {
        None => false,
        Some(p) => {
            st.store.create_principal(&p).await?;
            st.principals.invalidate(&name);
            true
        }
    };
    let mut raw = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    use base64::Engine;
    let code = format!(
        "mdt-enroll-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    st.store
        .create_enrollment(
            &code_hash(&code),
            &name,
            &who.claims.client_id,
            now,
            now + ttl,
        )
        .await?;
    tracing::info!(principal = %name, by = %who.claims.client_id, "enrollment code issued");
    Ok(Json(serde_json::json!({
        "name": name, "code": code, "expires_at": now + ttl, "created": created,
        "server": st.cfg.issuer,
    })))
}

async fn rotate(
    State(st): St,
    AdminCaller(who): AdminCaller,
) -> Result<impl IntoResponse, ApiError> {
    let ev = change(&who, "issuer_key.rotate", &st.keys.signing_kid());
    let (new_kid, old_kid, until) = audited(&st, ev, async {
        st.keys
            .rotate(&st.store, now())
            .await
            .map_err(|e| ApiError::internal("key rotation failed", e))
    })
    .await?;
    tracing::info!(new_kid, old_kid, by = %who.claims.client_id, "issuer key rotated");
    Ok(Json(
        serde_json::json!({"kid": new_kid, "retired_kid": old_kid, "retired_key_published_until": until}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// `agent`, `user`, `key` or `token`.
    kind: String,
    value: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Revokes a principal (disabled, and every mandate it appears in refused), a key (a principal's
/// key is disabled; an issuer key stops verifying) or one mandate and all its descendants.
async fn revoke(
    State(st): St,
    AdminCaller(who): AdminCaller,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let by = who.claims.client_id.as_str();
    let req: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::bad_request(
            "reason is longer than 500 characters",
        ));
    }
    // Never let a token reach the audit log (or an error message): a key id, a principal name
    // and a jti are never tokens.
    if mandate_core::jws::looks_like_compact_jws(&req.value)
        || (req.kind == "token" && req.value.contains('.'))
    {
        return Err(ApiError::bad_request(format!(
            "the value is a token, not a {}: pass {} (`mandate revoke token TOKEN` extracts the jti)",
            if req.kind == "token" { "jti" } else { "name or kid" },
            match req.kind.as_str() {
                "key" => "the key's kid",
                "token" => "the mandate's jti",
                _ => "the principal's name",
            }
        )));
    }
    if req.value.len() > 200 || req.value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "the value must be at most 200 characters, without control characters",
        ));
    }
    let mut ev = new_event(
        kinds::REVOCATION,
        by,
        &format!("revoke.{}", req.kind.chars().take(20).collect::<String>()),
    );
    ev.chain = who.claims.chain_to_holder();
    ev.resource = Some(req.value.chars().take(200).collect());
    ev.jti = Some(who.claims.jti.clone());
    if let Some(r) = &req.reason {
        ev.reasons = vec![r.clone()];
    }
    audited(&st, ev, revoke_inner(&st, &who, req)).await
}

async fn revoke_inner(
    st: &AppState,
    who: &Caller,
    req: RevokeRequest,
) -> Result<Json<serde_json::Value>, ApiError> {
    let by = who.claims.client_id.as_str();
    let now = now();
    let (kind, value) = match req.kind.as_str() {
        "agent" | "user" => {
            let name: PrincipalName = if req.value.contains(':') {
                req.value.parse()
            } else {
                let kind = if req.kind == "agent" {
                    PrincipalKind::Agent
                } else {
                    PrincipalKind::User
                };
                PrincipalName::new(kind, &req.value)
            }
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if name.kind().as_str() != req.kind {
                return Err(ApiError::bad_request(format!(
                    "{name} is not a{} {}",
                    if req.kind == "agent" { "n" } else { "" },
                    req.kind
                )));
            }
            if name.as_str() == by {
                return Err(ApiError::bad_request("an admin cannot revoke itself"));
            }
            if !st.store.set_disabled(name.as_str(), true, now).await? {
                return Err(ApiError::not_found(format!("{name} does not exist")));
            }
            st.principals.invalidate(name.as_str());
            ("principal", name.to_string())
        }
        "key" => {
            let active_issuer = st.keys.signing_kid() == req.value;
            if active_issuer {
                return Err(ApiError::bad_request(
                    "this is the issuer's active signing key: run `mandate keys rotate` first, then revoke the old kid",
                ));
            }
            let is_issuer = st.keys.with_keys(|k| k.contains_key(&req.value));
            if is_issuer {
                // A revoked issuer key leaves the JWKS too, so that verifiers which do not follow
                // the revocation feed stop trusting it as well.
                st.keys
                    .forget(&st.store, &req.value)
                    .await
                    .map_err(|e| ApiError::internal("removing the issuer key failed", e))?;
                st.verified.clear();
            } else {
                match st.store.disable_key(&req.value, now).await? {
                    Some(owner) => st.principals.invalidate(&owner),
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no key with kid {} is registered",
                            req.value
                        )))
                    }
                }
            }
            ("key", req.value.clone())
        }
        "token" => {
            if st.store.mandate(&req.value).await?.is_none() {
                return Err(ApiError::not_found(format!(
                    "no mandate with jti {} was issued here (pass the jti, not the token)",
                    req.value
                )));
            }
            ("jti", req.value.clone())
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot revoke {other:?}: use agent, user, key or token"
            )))
        }
    };
    let row = st
        .store
        .add_revocation(kind, &value, req.reason.as_deref(), by, now)
        .await?;
    st.revocations.apply(std::slice::from_ref(&row));
    tracing::info!(kind, value = %value, by, seq = row.seq, "revoked");
    Ok(Json(
        serde_json::to_value(&row).map_err(|e| ApiError::internal("encoding", e))?,
    ))
}
