//! The policy decision point for other enforcement points:
//! - OpenID AuthZEN 1.0: `POST /access/v1/evaluation`, `POST /access/v1/evaluations` (batch), and
//!   `GET /.well-known/authzen-configuration`;
//! - the OPA REST data API: `POST /v1/data/{path}` with `{"input": ...}` ->
//!   `{"result": ..., "decision_id": ...}` (no `result` when undefined, as OPA answers);
//! - `GET /policy/v1/status`: the version in force and why the newest edit is not, if it is not.
//!
//! Callers authenticate like every API call: a mandate whose audience is the issuer (DPoP-bound,
//! or bearer for principals allowed bearer) holding scope `mandate:pdp` (or `mandate:admin`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_core::delegation::ADMIN_SCOPE;
use mandate_core::{Scope, ScopeSet};
use mandate_policy::decision::new_decision_id;
use mandate_policy::{authzen, EvalError, Query};
use serde_json::{json, Map, Value};

use crate::api_error::ApiError;
use crate::form::Body;
use crate::policy_hook;
use crate::resource_auth::{self, Caller};
use crate::state::{now, AppState};

/// The scope a policy enforcement point needs to ask for decisions.
pub const PDP_SCOPE: &str = "mandate:pdp";

type St = State<Arc<AppState>>;

/// The decision point's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/.well-known/authzen-configuration", get(configuration))
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/v1/data", post(data_root))
        .route("/v1/data/", post(data_root))
        .route("/v1/data/{*path}", post(data))
        .route("/policy/v1/status", get(status))
}

/// The caller's IP address, when the server was started with connection info.
pub fn peer(ext: &Extensions) -> Option<String> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

async fn pep(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let c = match resource_auth::authenticate_with(
        st,
        method,
        uri,
        headers,
        &st.cfg.issuer,
        now(),
        true,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            use crate::audit::AuditableError;
            crate::audit::refusal(st, None, "pdp.request", e.audit_code(), e.description()).await;
            return Err(e);
        }
    };
    let holds = ScopeSet::parse(&c.claims.scope).is_ok_and(|s| {
        [PDP_SCOPE, ADMIN_SCOPE]
            .iter()
            .any(|w| s.covers(&Scope::parse(w).expect("constant")))
    });
    if !holds {
        let e = ApiError::forbidden(format!(
            "asking for policy decisions needs a mandate with scope {PDP_SCOPE} and audience {}; {}'s mandate holds {:?}",
            st.cfg.issuer, c.claims.client_id, c.claims.scope
        ));
        crate::audit::refusal(
            st,
            Some(&c.claims),
            "pdp.request",
            "insufficient_scope",
            e.description(),
        )
        .await;
        return Err(e);
    }
    Ok(c)
}

fn json_body(body: Body) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// Fills `input.context` with what only the server may say: its clock and environment, and the
/// caller's address unless the enforcement point reported its own client's.
fn complete_context(st: &AppState, input: &mut Value, peer: Option<String>) {
    let ours = policy_hook::context(st, peer, now());
    let ctx = input["context"].as_object_mut();
    if let (Some(ctx), Value::Object(ours)) = (ctx, ours) {
        for (k, v) in ours {
            if k == "client_address" && ctx.get(&k).is_some_and(Value::is_string) {
                continue;
            }
            ctx.insert(k, v);
        }
    }
}

fn with_request_id(headers: &HeaderMap, body: Value) -> Response {
    let mut r = Json(body).into_response();
    // AuthZEN 1.0 §10.1.3: the PDP echoes X-Request-ID.
    if let Some(id) = headers.get("x-request-id") {
        r.headers_mut().insert("x-request-id", id.clone());
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

async fn decide_input(st: &AppState, mut input: Value, peer: Option<String>, who: &str) -> Value {
    complete_context(st, &mut input, peer);
    let d = st.policy.decide(Query::Authz, input.clone()).await;
    tracing::info!(decision = %d.decision_id, policy = %d.policy_version, pep = %who,
        outcome = ?d.outcome(), "authzen evaluation");
    // The decision is audited before it is answered; if it cannot be, the answer is a deny.
    if st
        .audit(&decision_event(st, &input, &d, who))
        .await
        .is_err()
    {
        let mut denied = mandate_policy::Decision::failed(
            "the decision could not be written to the audit log".to_string(),
            &d.policy_version,
        );
        denied.decision_id = d.decision_id.clone();
        return authzen::response(&denied);
    }
    authzen::response(&d)
}

/// The audit event of a decision asked by another enforcement point. Argument values at the
/// decision's `redact` paths are replaced by their HMAC.
fn decision_event(
    st: &AppState,
    input: &Value,
    d: &mandate_policy::Decision,
    pep: &str,
) -> mandate_audit::event::Event {
    use mandate_audit::event::{kinds, redact_arguments};
    let action = &input["action"];
    let mut ev = crate::audit::new_event(kinds::POLICY_DECISION, pep, "pdp.evaluation");
    ev.chain = input["chain"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = input["principal"]["id"].as_str() {
        if ev.chain.last().map(String::as_str) != Some(p) {
            ev.chain.push(p.to_string());
        }
    }
    ev.resource = match (action["server"].as_str(), action["tool"].as_str()) {
        (Some(s), Some(t)) => Some(format!("{s}:{t}")),
        (Some(s), None) => Some(s.to_string()),
        _ => action["kind"].as_str().map(str::to_string),
    };
    ev.decision = Some(d.outcome().as_str().to_string());
    ev.decision_id = Some(d.decision_id.clone());
    ev.policy_version = Some(d.policy_version.clone());
    ev.reasons = d.reasons.clone();
    if let Some(e) = &d.error {
        ev.reasons.push(e.clone());
    }
    ev.jti = input["mandate"]["jti"].as_str().map(str::to_string);
    let mut summary = serde_json::Map::new();
    for key in ["kind", "server", "tool", "method", "annotations", "http"] {
        if let Some(v) = action.get(key) {
            summary.insert(key.to_string(), v.clone());
        }
    }
    if let Some(args) = action.get("arguments") {
        let mut args = args.clone();
        // A failed decision carries no redact paths: then nothing of the arguments is kept.
        let whole = ["/action/arguments".to_string()];
        let paths = if d.error.is_some() {
            &whole[..]
        } else {
            &d.redact[..]
        };
        redact_arguments(st.audit_log.hmac_key(), &mut args, paths);
        summary.insert("arguments".to_string(), args);
    }
    // Redact paths elsewhere in the action (a path, a header...) apply to what is recorded too.
    let mut summary = Value::Object(summary);
    for path in d.redact.iter().filter_map(|p| p.strip_prefix("/action")) {
        if path.starts_with("/arguments") || path.is_empty() {
            continue;
        }
        if let Some(target) = summary.pointer_mut(path) {
            let hashed = mandate_audit::event::redact_value(st.audit_log.hmac_key(), target);
            *target = Value::String(hashed);
        }
    }
    ev.details.insert("action".into(), summary);
    if let Some(a) = &d.approval {
        ev.details.insert(
            "approval".into(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        );
    }
    ev
}

async fn configuration(State(st): St) -> Json<Value> {
    let i = &st.cfg.issuer;
    Json(json!({
        "policy_decision_point": i,
        "access_evaluation_endpoint": format!("{i}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{i}/access/v1/evaluations"),
    }))
}

async fn evaluation(
    State(st): St,
    method: Method,
    uri: Uri,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let c = pep(&st, &method, &uri, &headers).await?;
    let req = json_body(body)?;
    single(&st, &req, &ext, &headers, &c.claims.client_id).await
}

/// One evaluation request answered whole (a malformed one is a 400).
async fn single(
    st: &AppState,
    req: &Value,
    ext: &Extensions,
    headers: &HeaderMap,
    who: &str,
) -> Result<Response, ApiError> {
    let input = authzen::input_from_request(req).map_err(ApiError::bad_request)?;
    let out = decide_input(st, input, peer(ext), who).await;
    Ok(with_request_id(headers, out))
}

/// AuthZEN 1.0 §7.2: an item of a batch that cannot be evaluated is a deny with an error context.
fn item_error(message: &str) -> Value {
    json!({"decision": false, "context": {"error": {"status": 400, "message": message}}})
}

async fn evaluations(
    State(st): St,
    method: Method,
    uri: Uri,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let c = pep(&st, &method, &uri, &headers).await?;
    let req = json_body(body)?;
    let Some(top) = req.as_object() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let items = match top.get("evaluations") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::bad_request("evaluations must be an array")),
    };
    if items.is_empty() {
        // AuthZEN 1.0 §7.1: without evaluations the request is a single evaluation.
        return single(&st, &req, &ext, &headers, &c.claims.client_id).await;
    }
    if items.len() > 1_000 {
        return Err(ApiError::bad_request(
            "at most 1000 evaluations per request",
        ));
    }
    let semantic = top
        .get("options")
        .and_then(|o| o.get("evaluations_semantic"))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "execute_all".into());
    let semantic = semantic.as_str();
    if !matches!(
        semantic,
        "execute_all" | "deny_on_first_deny" | "permit_on_first_permit"
    ) {
        return Err(ApiError::bad_request(format!(
            "options.evaluations_semantic {semantic:?} is not one of execute_all, deny_on_first_deny, permit_on_first_permit"
        )));
    }
    let mut out = vec![];
    for item in items {
        let Some(item) = item.as_object() else {
            out.push(item_error("each evaluation must be an object"));
            continue;
        };
        // Each of subject, action, resource and context given on an item replaces the default.
        let mut merged = Map::new();
        for k in ["subject", "action", "resource", "context"] {
            if let Some(v) = item.get(k).or_else(|| top.get(k)) {
                merged.insert(k.into(), v.clone());
            }
        }
        let r = match authzen::input_from_request(&Value::Object(merged)) {
            Ok(input) => decide_input(&st, input, peer(&ext), &c.claims.client_id).await,
            Err(e) => item_error(&e),
        };
        let decision = r["decision"].as_bool().unwrap_or(false);
        out.push(r);
        if (semantic == "deny_on_first_deny" && !decision)
            || (semantic == "permit_on_first_permit" && decision)
        {
            break;
        }
    }
    Ok(with_request_id(&headers, json!({ "evaluations": out })))
}

/// OPA's error body.
fn opa_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

async fn data_root(
    st: St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    data_at(st, method, uri, headers, body, String::new()).await
}

async fn data(
    st: St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(path): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    data_at(st, method, uri, headers, body, path).await
}

async fn data_at(
    State(st): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    path: String,
) -> Result<Response, ApiError> {
    let c = pep(&st, &method, &uri, &headers).await?;
    let req = match json_body(body) {
        Ok(v) => v,
        Err(e) => return Ok(opa_error(e.status(), "invalid_parameter", e.description())),
    };
    let Some(obj) = req.as_object() else {
        return Ok(opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "the body must be a JSON object such as {\"input\": {...}}",
        ));
    };
    let input = obj.get("input").cloned();
    let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let query = std::iter::once("data")
        .chain(segments.iter().copied())
        .collect::<Vec<_>>()
        .join("/");
    let Some(live) = st.policy.live() else {
        return Ok(opa_error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "this server decides with an external decision point; ask it directly",
        ));
    };
    let policy = live.current();
    let decision_id = new_decision_id();
    let owned: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    let evaluated = policy.clone();
    // Evaluation is CPU work bounded by the policy time limit: off the async workers.
    let out = tokio::task::spawn_blocking(move || {
        let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
        evaluated.eval_path(&segs, input)
    })
    .await
    .map_err(|e| ApiError::internal("policy evaluation task failed", e))?;
    tracing::info!(decision = %decision_id, policy = %policy.version(), pep = %c.claims.client_id,
        query = %query, ok = out.is_ok(), "data API evaluation");
    // Audited before it is answered (the input is not recorded: no decision says what in it is
    // secret); if the event cannot be written, no result is given.
    let mut ev = crate::audit::new_event(
        mandate_audit::event::kinds::POLICY_DECISION,
        &c.claims.client_id,
        "pdp.data",
    );
    ev.chain = crate::audit::chain_of(&c.claims);
    ev.resource = Some(query.clone());
    ev.decision_id = Some(decision_id.clone());
    ev.policy_version = Some(policy.version().to_string());
    ev.details
        .insert("defined".into(), matches!(out, Ok(Some(_))).into());
    if let Err(e) = &out {
        ev.result = "failed".into();
        ev.reasons = vec![e.to_string()];
    }
    if st.audit(&ev).await.is_err() {
        return Ok(opa_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the evaluation could not be written to the audit log; no result is given",
        ));
    }
    Ok(match out {
        Ok(Some(result)) => {
            Json(json!({"result": result, "decision_id": decision_id})).into_response()
        }
        Ok(None) => Json(json!({ "decision_id": decision_id })).into_response(),
        Err(e @ EvalError::BadQuery(_)) => {
            opa_error(StatusCode::BAD_REQUEST, "invalid_parameter", e.to_string())
        }
        Err(e) => opa_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    })
}

async fn status(
    State(st): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    pep(&st, &method, &uri, &headers).await?;
    Ok(Json(match st.policy.live() {
        Some(l) => json!(l.status()),
        None => json!({"version": st.policy.version(), "external": true}),
    }))
}
