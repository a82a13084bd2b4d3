//! The policy decision point for other enforcement points:
//! - OpenID AuthZEN 1.0: `POST /access/v1/evaluation`, `POST /access/v1/evaluations` (batch, at
//!   most [`MAX_BATCH_EVALUATIONS`] items), and `GET /.well-known/authzen-configuration`;
//! - the OPA REST data API: `POST /v1/data/{path}` with `{"input": ...}` ->
//!   `{"result": ..., "decision_id": ...}` (no `result` when undefined, as OPA answers). A decision
//!   point may query only the configured paths (the two decisions by default); admins may query
//!   any document;
//! - `GET /policy/v1/status`: the version in force and why the newest edit is not, if it is not
//!   (file system paths only for admins).
//!
//! Callers authenticate through [`PepCaller`]: a mandate whose audience is the issuer (DPoP-bound,
//! or bearer for principals allowed bearer) holding scope `mandate:pdp` (or `mandate:admin`).
//!
//! What an enforcement point says about the call (the principal, the chain, the mandate id) is
//! its word only: events record it under `asserted`, naming the caller, and keep `principal` and
//! `chain` for what was verified: the caller itself. One request adds one event to the log: a
//! batch is recorded as one event listing each item's decision.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::audit::scrub_text;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mandate_audit::event::{kinds, Asserted, Event};
use mandate_policy::decision::new_decision_id;
use mandate_policy::{authzen, Decision, EvalError, Outcome, Query};
use serde_json::{json, Map, Value};

use crate::api_error::ApiError;
use crate::auth::PepCaller;
use crate::form::Body;
use crate::limits::{Source, BATCH_BUDGET, MAX_BATCH_EVALUATIONS};
use crate::policy_hook;
use crate::refusals::{audit_refusals, RefusalKind};
use crate::resource_auth::Caller;
use crate::state::{now, AppState};

type St = State<Arc<AppState>>;

/// The decision point's routes; every refused call is recorded (see
/// [`crate::refusals::audit_refusals`]).
pub fn routes(st: Arc<AppState>) -> Router<Arc<AppState>> {
    let refused = RefusalKind {
        kind: kinds::REQUEST_REFUSED,
        action: crate::auth::PDP_ACTION,
    };
    Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/v1/data", post(data_root))
        .route("/v1/data/", post(data_root))
        .route("/v1/data/{*path}", post(data))
        .route("/policy/v1/status", get(status))
        .layer(axum::middleware::from_fn_with_state(
            (st, refused),
            audit_refusals,
        ))
        .route("/.well-known/authzen-configuration", get(configuration))
}

/// The caller's IP address, when the server was started with connection info.
pub fn peer(ext: &Extensions) -> Option<String> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The caller's source, as limits and refusal counts see it.
pub fn peer_source(ext: &Extensions) -> Option<Source> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| Source::of(c.0.ip()))
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
    if let Some(ctx) = input["context"].as_object_mut() {
        policy_hook::context(st, peer, now()).complete(ctx);
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

/// A place in the decision lane (see `AppState::decision_lane`), waited for at most as long as a
/// request may take.
async fn lane(st: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    st.decision_lane
        .acquire()
        .await
        .map_err(|e| ApiError::internal("the decision lane is closed", e))
}

/// Decides one policy input (its context completed by the server).
async fn decide(
    st: &AppState,
    mut input: Value,
    peer: Option<String>,
    who: &str,
) -> (Value, Decision) {
    complete_context(st, &mut input, peer);
    let d = st.policy.decide_apart(Query::Authz, input.clone()).await;
    // Each decision is in the audit log (a batch as one event); per decision, only at debug.
    tracing::debug!(decision = %d.decision_id(), policy = %d.policy_version(), pep = %who,
        outcome = ?d.outcome(), "authzen evaluation");
    (input, d)
}

/// The deny given instead of `d` when its event could not be written (fail closed).
fn unaudited(d: &Decision) -> Decision {
    d.denied_because("the decision could not be written to the audit log")
}

/// A decision point event with the verified caller as principal and chain.
fn caller_event(c: &Caller, action: &str) -> Event {
    let mut ev = crate::audit::new_event(kinds::POLICY_DECISION, &c.claims.client_id, action);
    ev.chain = c.claims.chain_to_holder();
    ev.jti = Some(c.claims.jti.clone());
    ev
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What the enforcement point asserted about the call in `input`.
fn asserted(c: &Caller, input: &Value) -> Asserted {
    Asserted {
        by: c.claims.client_id.clone(),
        principal: input["principal"]["id"].as_str().map(str::to_string),
        chain: strings(&input["chain"]),
        jti: input["mandate"]["jti"]
            .as_str()
            .map(|j| j.chars().take(200).collect()),
    }
}

fn resource_of(input: &Value) -> Option<String> {
    let action = &input["action"];
    let r = match (action["server"].as_str(), action["tool"].as_str()) {
        (Some(s), Some(t)) => Some(format!("{s}:{t}")),
        (Some(s), None) => Some(s.to_string()),
        _ => action["kind"].as_str().map(str::to_string),
    };
    // An HTTP route can carry a credential in its query (`?api_key=...`).
    r.map(|r| scrub_text(&r).into_owned())
}

/// The recorded form of the action (see [`mandate_audit::event::recorded_action`]).
fn recorded_action(st: &AppState, input: &Value, d: &Decision) -> Value {
    mandate_audit::event::recorded_action(
        st.audit_log.hmac_key(),
        &input["action"],
        d.redact(),
        d.error().is_some(),
        &mandate_core::secrets::looks_like_secret_value,
    )
}

/// The event of one decision asked by an enforcement point.
fn decision_event(st: &AppState, c: &Caller, input: &Value, d: &Decision) -> Event {
    let mut ev = caller_event(c, "pdp.evaluation");
    ev.asserted = Some(asserted(c, input));
    ev.resource = resource_of(input);
    // (Credentials in the reasons are removed where every event is recorded, AppState::record.)
    ev = ev.decided(
        d.outcome().as_str(),
        d.decision_id(),
        d.policy_version(),
        d.reasons(),
    );
    if let Some(e) = d.error() {
        ev.reasons.push(e.to_string());
    }
    ev.details
        .insert("action".into(), recorded_action(st, input, d));
    if let Some(a) = &d.approval() {
        ev.details.insert(
            "approval".into(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        );
    }
    ev
}

/// The one event of a batch: the caller, what the first item asserted (and every other principal
/// the items named), and per item its resource, outcome and decision id, with the first reason
/// (at most 100 characters) for items not allowed; the items' arguments only as one HMAC over
/// all of them. Kept this compact so that a maximal batch (64 items) fits one event's bound. Its
/// `decision` is `deny` if any item was denied, else `approval` if any needs one, else `allow`.
fn batch_event(st: &AppState, c: &Caller, items: &[(Value, Decision)]) -> Event {
    let key = st.audit_log.hmac_key();
    let mut ev = caller_event(c, "pdp.evaluations");
    let mut a = items
        .first()
        .map(|(i, _)| asserted(c, i))
        .unwrap_or_else(|| Asserted {
            by: c.claims.client_id.clone(),
            ..Asserted::default()
        });
    let mut listed = Vec::with_capacity(items.len());
    let mut arguments = Vec::with_capacity(items.len());
    for (input, d) in items {
        let subject = input["principal"]["id"].as_str().unwrap_or_default();
        if !subject.is_empty()
            && a.principal.as_deref() != Some(subject)
            && !a.chain.iter().any(|p| p == subject)
        {
            a.chain.push(subject.to_string());
        }
        let mut item = json!({
            "resource": resource_of(input),
            "decision": d.outcome().as_str(),
            "decision_id": d.decision_id(),
        });
        if a.principal.as_deref() != Some(subject) && !subject.is_empty() {
            item["subject"] = json!(subject);
        }
        if d.outcome() != Outcome::Allow {
            if let Some(r) = d.error().or(d.reasons().first().map(String::as_str)) {
                item["reason"] = json!(scrub_text(r).chars().take(100).collect::<String>());
            }
        }
        arguments.push(
            input["action"]
                .get("arguments")
                .cloned()
                .unwrap_or(Value::Null),
        );
        listed.push(item);
    }
    if arguments
        .iter()
        .any(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        ev.details.insert(
            "arguments_hmac".into(),
            json!(mandate_audit::event::redact_value(
                key,
                &Value::Array(arguments)
            )),
        );
    }
    let outcomes: Vec<Outcome> = items.iter().map(|(_, d)| d.outcome()).collect();
    let summary = if outcomes.contains(&Outcome::Deny) {
        Outcome::Deny
    } else if outcomes.contains(&Outcome::Approval) {
        Outcome::Approval
    } else {
        Outcome::Allow
    };
    ev.asserted = Some(a);
    ev.decision = Some(summary.as_str().to_string());
    ev.policy_version = items.first().map(|(_, d)| d.policy_version().to_string());
    ev.resource = Some(format!("{} evaluations", items.len()));
    ev.details.insert("count".into(), items.len().into());
    ev.details
        .insert("evaluations".into(), Value::Array(listed));
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
    PepCaller(c): PepCaller,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    single(&st, &c, &req, &ext, &headers).await
}

/// One evaluation request answered whole (a malformed one is a 400). The decision is audited
/// before it is answered; if it cannot be, the answer is a deny.
async fn single(
    st: &AppState,
    c: &Caller,
    req: &Value,
    ext: &Extensions,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let input = authzen::input_from_request(req).map_err(ApiError::bad_request)?;
    let lane = lane(st).await?;
    let (input, d) = decide(st, input, peer(ext), &c.claims.client_id).await;
    drop(lane);
    let answer = match st.audit(&decision_event(st, c, &input, &d)).await {
        Ok(_) => authzen::response(&d),
        Err(_) => authzen::response(&unaudited(&d)),
    };
    Ok(with_request_id(headers, answer))
}

/// AuthZEN 1.0 §7.2: an item of a batch that cannot be evaluated is a deny with an error context.
fn item_error(message: &str) -> Value {
    json!({"decision": false, "context": {"error": {"status": 400, "message": message}}})
}

async fn evaluations(
    State(st): St,
    PepCaller(c): PepCaller,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
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
        return single(&st, &c, &req, &ext, &headers).await;
    }
    if items.len() > MAX_BATCH_EVALUATIONS {
        return Err(ApiError::bad_request(format!(
            "{} evaluations in one request; at most {MAX_BATCH_EVALUATIONS} (split the batch)",
            items.len()
        )));
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
    // Each answer is an item error or the index of a decision in `decided`.
    let mut answers: Vec<Result<usize, String>> = vec![];
    let mut decided: Vec<(Value, Decision)> = vec![];
    let lane = lane(&st).await?;
    let started = std::time::Instant::now();
    for item in items {
        let Some(item) = item.as_object() else {
            answers.push(Err("each evaluation must be an object".into()));
            continue;
        };
        // Each of subject, action, resource and context given on an item replaces the default.
        let mut merged = Map::new();
        for k in ["subject", "action", "resource", "context"] {
            if let Some(v) = item.get(k).or_else(|| top.get(k)) {
                merged.insert(k.into(), v.clone());
            }
        }
        let allowed = match authzen::input_from_request(&Value::Object(merged)) {
            Ok(input) if started.elapsed() >= BATCH_BUDGET => {
                // One request gets a bounded share of the decision lane: the rest is denied.
                let d = Decision::failed(
                    format!(
                        "the batch used its {} s of evaluation time before this item: split the batch",
                        BATCH_BUDGET.as_secs()
                    ),
                    &st.policy.version(),
                );
                answers.push(Ok(decided.len()));
                decided.push((input, d));
                false
            }
            Ok(input) => {
                let (input, d) = decide(&st, input, peer(&ext), &c.claims.client_id).await;
                let allowed = d.outcome() == Outcome::Allow;
                answers.push(Ok(decided.len()));
                decided.push((input, d));
                allowed
            }
            Err(e) => {
                answers.push(Err(e));
                false
            }
        };
        if (semantic == "deny_on_first_deny" && !allowed)
            || (semantic == "permit_on_first_permit" && allowed)
        {
            break;
        }
    }
    drop(lane);
    let mut ev = batch_event(&st, &c, &decided);
    let malformed = answers.iter().filter(|a| a.is_err()).count();
    if malformed > 0 {
        ev.details.insert("malformed".into(), malformed.into());
    }
    // The batch is audited before it is answered; if it cannot be, every item is a deny.
    let audited = st.audit(&ev).await.is_ok();
    let out: Vec<Value> = answers
        .iter()
        .map(|a| match a {
            Ok(i) if audited => authzen::response(&decided[*i].1),
            Ok(i) => authzen::response(&unaudited(&decided[*i].1)),
            Err(e) => item_error(e),
        })
        .collect();
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

async fn data_root(st: St, caller: PepCaller, body: Body) -> Result<Response, ApiError> {
    data_at(st, caller, body, String::new()).await
}

async fn data(
    st: St,
    caller: PepCaller,
    Path(path): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    data_at(st, caller, body, path).await
}

/// Whether a decision point may query `segments` (a path under `data`): it is one of the
/// configured paths or below one. Admins may query everything.
fn readable(st: &AppState, caller: &PepCaller, segments: &[&str]) -> bool {
    caller.is_admin()
        || st.cfg.data_api_paths.iter().any(|allowed| {
            let allowed: Vec<&str> = allowed.split('/').filter(|p| !p.is_empty()).collect();
            !allowed.is_empty() && segments.starts_with(&allowed)
        })
}

async fn data_at(
    State(st): St,
    caller: PepCaller,
    body: Body,
    path: String,
) -> Result<Response, ApiError> {
    let c = &caller.0;
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
    // A path names a document: bounded, printable segments (it reaches logs and the audit log).
    if segments.len() > 32
        || segments
            .iter()
            .any(|p| p.len() > 128 || p.chars().any(char::is_control))
    {
        return Ok(opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "the path must have at most 32 segments of at most 128 characters, without control characters",
        ));
    }
    let query = std::iter::once("data")
        .chain(segments.iter().copied())
        .collect::<Vec<_>>()
        .join("/");
    if !readable(&st, &caller, &segments) {
        // Policy data (approver lists, environments, anything an operator put in a data file)
        // is not for every enforcement point to read: only the decisions are.
        let message = format!(
            "{query} is not a decision this enforcement point may query; it may query: {} (an admin can widen this with [policy] data_api_paths)",
            st.cfg.data_api_paths.iter().map(|p| format!("data/{p}")).collect::<Vec<_>>().join(", ")
        );
        let e = ApiError::forbidden(message.clone());
        crate::audit::refusal(
            &st,
            Some(&c.claims),
            None,
            "pdp.data",
            e.code(),
            e.description(),
        )
        .await;
        let mut r = opa_error(StatusCode::FORBIDDEN, "unauthorized", message);
        r.extensions_mut().insert(crate::refusals::Audited);
        return Ok(r);
    }
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
    // Evaluation is CPU work bounded by the policy time limit: off the async workers, in the
    // decision lane.
    let lane = lane(&st).await?;
    let out = tokio::task::spawn_blocking(move || {
        let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
        evaluated.eval_path(&segs, input)
    })
    .await
    .map_err(|e| ApiError::internal("policy evaluation task failed", e))?;
    drop(lane);
    tracing::info!(decision = %decision_id, policy = %policy.version(), pep = %c.claims.client_id,
        query = ?query, ok = out.is_ok(), "data API evaluation");
    // Audited before it is answered (the input is not recorded: no decision says what in it is
    // secret); if the event cannot be written, no result is given.
    let mut ev = caller_event(c, "pdp.data");
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
    let mut r = match out {
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
    };
    // The event above is this request's one record, whatever the answer.
    r.extensions_mut().insert(crate::refusals::Audited);
    Ok(r)
}

/// The policy status. Admins see all of it; other decision points see the version and whether a
/// newer edit failed, without file system paths.
async fn status(State(st): St, caller: PepCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(match st.policy.live() {
        Some(l) if caller.is_admin() => json!(l.status()),
        Some(l) => {
            let s = l.status();
            let hide = |text: &str| match &s.dir {
                Some(d) => text
                    .replace(&format!("{}/", d.display()), "")
                    .replace(&d.display().to_string(), "<policy directory>"),
                None => text.to_string(),
            };
            json!({
                "version": s.version,
                "reloads": s.reloads,
                "error": s.error.as_deref().map(hide),
            })
        }
        None => json!({"version": st.policy.version(), "external": true}),
    }))
}
