//! The audit log's endpoints for gateways run apart from the authority
//! (`mandate gateway --authority URL`):
//!
//! - `POST /audit/v1/events`: a JSON array of at most [`MAX_APPEND_EVENTS`] `tool.call` events
//!   built by the gateway (body at most [`MAX_APPEND_BODY`] bytes). Each is recorded in the one
//!   audit log through `AppState::audit` (bounded by `Event::bound`, free text scrubbed, like
//!   every event), and the answer (`200 {"seqs": [...], "ids": [...]}`) is given only once every
//!   one of them is durable. Any failure to write is `503`: the gateway then refuses the call
//!   (fail closed). A malformed array, an event of another kind, an action that is not a
//!   gateway's (`mcp.*`, `http.*`) or an event that already names an `asserted` party is `400`.
//! - `GET /audit/v1/key`: the installation's audit HMAC key (`{"key": base64url}`), so that the
//!   gateway's redacted argument values match what `mandate audit hash` computes. A gateway sees
//!   every raw argument it forwards anyway, so the key gives it nothing it does not already see;
//!   each read is itself an audit event.
//! - `GET /audit/v1/health`: whether the log takes new events now (`200 {"status": "ok"}`, or
//!   `503 {"status": "audit_unavailable", "reason": ...}`), found with the checks every append
//!   goes through first ([`AppState::audit_health`]) and without writing anything: a gateway
//!   whose last append failed probes it to learn that the log is back, and a probe must not grow
//!   the log (an answer, even a 503, is no event; refused probes are recorded as refusals of the
//!   other endpoints are, strangers' counted per source).
//!
//! All three authenticate through [`AuditCaller`]: a DPoP-bound mandate whose audience is the issuer
//! holding `mandate:audit`, the same check the decision point's callers go through, and refusals
//! are recorded by the same layer ([`audit_refusals`]).
//!
//! What a remote gateway says about a call (who made it, under which chain and mandate) is its
//! word only. The stored event names the gateway as `principal` and `chain` (what the authority
//! verified) and keeps the gateway's attribution under `asserted` (`by` = the gateway), so
//! `mandate audit query --party` counts it as asserted, never as verified. The authority gives
//! each event a fresh id and its own time (the gateway's id is kept in `details.gateway_event`):
//! ids are unique in the log, and a repeated id must not be able to fail the group commit other
//! requests share.
//!
//! A gateway records arguments as the authority does (`recorded_action`, with the installation's
//! key); the authority still redacts what the gateway sends, as the decision point does for what
//! an enforcement point sends: values under secret-looking keys and values that are credentials
//! by their shape, anywhere in `details`, are stored only as their HMAC (values already redacted
//! are left alone, so the gateway's hashes stay what `mandate audit hash` gives).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use mandate_audit::event::{kinds, Asserted, Event, MAX_EVENT_BYTES};
use mandate_core::MandateClaims;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::auth::{AuditCaller, AUDIT_ACTION};
use crate::form::Body;
use crate::refusals::{audit_refusals, RefusalKind};
use crate::state::AppState;

/// Most events one append carries (a gateway batch of 64 messages is one request at most).
pub const MAX_APPEND_EVENTS: usize = 64;
/// Largest append body, in bytes: a full batch of events at their bound, with room for JSON.
pub const MAX_APPEND_BODY: usize = MAX_APPEND_EVENTS * (MAX_EVENT_BYTES + 1024) + 4096;
/// The append endpoint's path.
pub const EVENTS_PATH: &str = "/audit/v1/events";
/// The key endpoint's path.
pub const KEY_PATH: &str = "/audit/v1/key";
/// The health endpoint's path.
pub const HEALTH_PATH: &str = "/audit/v1/health";
/// Longest `details.gateway_event` kept (an event id is 30 characters).
const MAX_GATEWAY_ID: usize = 64;

type St = State<Arc<AppState>>;

/// The routes; every refused call is recorded as the decision point's are.
pub fn routes(st: Arc<AppState>) -> Router<Arc<AppState>> {
    let refused = RefusalKind {
        kind: kinds::REQUEST_REFUSED,
        action: AUDIT_ACTION,
    };
    Router::new()
        .route(EVENTS_PATH, post(append))
        .route(KEY_PATH, get(key))
        .route(HEALTH_PATH, get(health))
        .layer(axum::middleware::from_fn_with_state(
            (st, refused),
            audit_refusals,
        ))
}

/// Reads an append body: a JSON array of at most [`MAX_APPEND_EVENTS`] events, each a `tool.call`
/// of an MCP method or HTTP route that names no `asserted` party yet.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let items: Vec<Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Array(a)) => a,
        Ok(_) => return Err("the body must be a JSON array of audit events".into()),
        Err(e) => return Err(format!("the body is not valid JSON: {e}")),
    };
    if items.is_empty() {
        return Err("the array has no events".into());
    }
    if items.len() > MAX_APPEND_EVENTS {
        return Err(format!(
            "{} events in one request; at most {MAX_APPEND_EVENTS}",
            items.len()
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let ev: Event = serde_json::from_value(v)
                .map_err(|e| format!("event {i} is not an audit event: {e}"))?;
            check_gateway_event(&ev).map_err(|e| format!("event {i}: {e}"))?;
            Ok(ev)
        })
        .collect()
}

/// What a gateway may write: `tool.call` events of a call through it (`mcp.METHOD` or
/// `http.METHOD`), with a result the log knows, and no `asserted` part (the authority writes
/// that, naming the gateway); and the one admin change a gateway makes itself, running an
/// upstream of its configuration without its sandbox.
fn check_gateway_event(ev: &Event) -> Result<(), String> {
    if ev.kind == kinds::ADMIN_CHANGE
        && ev.action == mandate_gateway::upstream::SANDBOX_OFF_ACTION
        && ev.asserted.is_none()
        && ev.result == "ok"
    {
        return Ok(());
    }
    if ev.kind != kinds::TOOL_CALL {
        return Err(format!(
            "kind {:?} is not one a gateway may write (only {})",
            ev.kind.chars().take(64).collect::<String>(),
            kinds::TOOL_CALL
        ));
    }
    if !(ev.action.starts_with("mcp.") || ev.action.starts_with("http.")) {
        return Err(format!(
            "action {:?} is not a gateway's (mcp.METHOD or http.METHOD)",
            ev.action.chars().take(64).collect::<String>()
        ));
    }
    if !matches!(ev.result.as_str(), "ok" | "refused" | "failed") {
        return Err("result must be ok, refused or failed".into());
    }
    if ev.asserted.is_some() {
        return Err("asserted is written by the authority, naming the gateway".into());
    }
    if ev.principal.is_empty() {
        return Err("the event names no principal".into());
    }
    Ok(())
}

/// `ev`'s details with recognisable secrets replaced by their HMAC under `key` (idempotent).
pub fn redact_details(key: &[u8], ev: &mut Event) {
    let mut details = Value::Object(std::mem::take(&mut ev.details));
    redact_value(key, &mut details);
    if let Value::Object(d) = details {
        ev.details = d;
    }
}

/// `v` with values under secret-looking keys and values shaped like credentials replaced by
/// their HMAC under `key` (idempotent): what a gateway run apart sends is stored only so.
pub fn redact_value(key: &[u8], v: &mut Value) {
    mandate_audit::event::redact_secret_keys(key, v, &mandate_audit::event::SECRET_KEY_FRAGMENTS);
    mandate_audit::event::redact_secret_values(
        key,
        v,
        &mandate_core::secrets::looks_like_secret_value,
    );
}

/// The stored form of an event `by` (the gateway's verified mandate) appended: the gateway as
/// principal and chain, what it said about the call under `asserted`, and the id and time of
/// `fresh` (made by the authority).
pub fn as_appended(by: &MandateClaims, sent: Event, fresh: &Event) -> Event {
    let mut ev = sent;
    let gateway_id: String = ev.id.chars().take(MAX_GATEWAY_ID).collect();
    attribute_to(by, &mut ev);
    ev.details
        .insert("gateway_event".into(), Value::String(gateway_id));
    ev.id = fresh.id.clone();
    ev.time = fresh.time.clone();
    ev
}

/// Moves what `ev` says about its principal, chain and mandate under `asserted` (by `by`, the
/// gateway that said it) and names `by` as the one the authority verified: the form of every
/// event a gateway run apart causes (its appended calls, the approval requests it opens).
pub fn attribute_to(by: &MandateClaims, ev: &mut Event) {
    ev.asserted = Some(Asserted {
        by: by.client_id.clone(),
        principal: Some(std::mem::take(&mut ev.principal)),
        chain: std::mem::take(&mut ev.chain),
        jti: ev.jti.take(),
    });
    ev.principal = by.client_id.clone();
    ev.chain = by.chain_to_holder();
    ev.jti = Some(by.jti.clone());
}

async fn append(
    State(st): St,
    AuditCaller(c): AuditCaller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
    let sent = parse_batch(&bytes).map_err(ApiError::bad_request)?;
    let events: Vec<Event> = sent
        .into_iter()
        .map(|e| {
            let fresh = crate::audit::new_event(&e.kind, &c.claims.client_id, &e.action);
            let mut ev = as_appended(&c.claims, e, &fresh);
            redact_details(st.audit_log.hmac_key(), &mut ev);
            ev
        })
        .collect();
    // Appended concurrently, so the group-commit writer takes them in one transaction; the
    // answer waits for every one.
    let tasks: Vec<_> = events
        .iter()
        .map(|e| {
            let st = st.clone();
            let e = e.clone();
            tokio::spawn(async move { st.audit(&e).await })
        })
        .collect();
    let mut seqs = Vec::with_capacity(tasks.len());
    let mut failed = false;
    for t in tasks {
        match t.await {
            Ok(Ok(seq)) => seqs.push(seq),
            _ => failed = true,
        }
    }
    if failed {
        tracing::error!(gateway = %c.claims.client_id, jti = %c.claims.jti, "a gateway's events could not all be written; it was told to refuse the calls");
        return Err(ApiError::unavailable(
            "the audit log could not be written; the gateway must refuse the call (retry later)",
        ));
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    Ok(Json(json!({ "seqs": seqs, "ids": ids })))
}

async fn key(State(st): St, AuditCaller(c): AuditCaller) -> Result<Json<Value>, ApiError> {
    // Handing out the key is itself recorded, before the key is given.
    let ev = crate::audit::new_event(kinds::AUDIT_KEY_READ, &c.claims.client_id, "audit.key")
        .under(c.claims.chain_to_holder(), Some(c.claims.jti.clone()));
    if st.audit(&ev).await.is_err() {
        return Err(ApiError::unavailable(
            "the audit log could not be written, so its key is not given; retry later",
        ));
    }
    tracing::info!(gateway = %c.claims.client_id, jti = %c.claims.jti, "audit HMAC key read by a gateway");
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.audit_log.hmac_key());
    Ok(Json(json!({ "key": key, "algorithm": "HMAC-SHA256" })))
}

/// Whether the log takes new events, without writing one (not even for a 503: the answer is
/// marked as already audited, so the refusal layer records nothing for it).
async fn health(State(st): St, AuditCaller(_): AuditCaller) -> Response {
    match st.audit_health() {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(why) => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "audit_unavailable", "reason": why })),
            )
                .into_response();
            r.extensions_mut().insert(crate::refusals::Audited);
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::claims::{Audience, MandateInfo};

    fn gateway_claims() -> MandateClaims {
        MandateClaims {
            iss: "http://a".into(),
            sub: "agent:gateway".into(),
            aud: Audience::One("http://a".into()),
            scope: "mandate:audit".into(),
            iat: 0,
            nbf: 0,
            exp: 10,
            jti: "gw-jti".into(),
            client_id: "agent:gateway".into(),
            act: None,
            may_act: None,
            cnf: None,
            authorization_details: None,
            mandate: MandateInfo {
                depth: 0,
                parents: vec![],
                max_depth: 0,
                forwarded: false,
            },
        }
    }

    fn call(kind: &str, action: &str) -> Value {
        let ev = Event::new(kind, "agent:coder", action, 1_000, [7; 16])
            .under(
                vec!["user:alice".into(), "agent:coder".into()],
                Some("coder-jti".into()),
            )
            .on("demo/read_note");
        serde_json::to_value(ev).unwrap()
    }

    #[test]
    fn a_batch_is_an_array_of_gateway_tool_calls_within_its_bound() {
        let ok = json!([call("tool.call", "mcp.tools/call")]);
        assert_eq!(parse_batch(ok.to_string().as_bytes()).unwrap().len(), 1);
        for (body, why) in [
            (json!([call("token.issued", "mcp.tools/call")]), "kind"),
            (json!([call("tool.call", "token.exchange")]), "action"),
            (json!(call("tool.call", "mcp.tools/call")), "array"),
            (json!([]), "no events"),
            (json!([{"id": "x"}]), "not an audit event"),
        ] {
            let e = parse_batch(body.to_string().as_bytes()).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut asserted = call("tool.call", "mcp.tools/call");
        asserted["asserted"] = json!({"by": "agent:someone"});
        assert!(parse_batch(json!([asserted]).to_string().as_bytes())
            .unwrap_err()
            .contains("asserted"));
        let many: Vec<Value> = (0..=MAX_APPEND_EVENTS)
            .map(|_| call("tool.call", "mcp.tools/call"))
            .collect();
        assert!(parse_batch(json!(many).to_string().as_bytes())
            .unwrap_err()
            .contains("at most 64"));
    }

    #[test]
    fn secrets_a_gateway_sends_in_the_clear_are_stored_as_hmacs_and_its_hmacs_are_kept() {
        let key = [3u8; 32];
        let mut ev: Event = serde_json::from_value(call("tool.call", "mcp.tools/call")).unwrap();
        let hashed = mandate_audit::event::redact_value(&key, &json!("hunter2"));
        ev.details.insert(
            "action".into(),
            json!({"arguments": {"password": "hunter2", "api_key": hashed, "note": "hello",
                   "url": "https://u:p4ssw0rd@example.com/x"}}),
        );
        redact_details(&key, &mut ev);
        let args = &ev.details["action"]["arguments"];
        assert_eq!(args["password"], json!(hashed));
        assert_eq!(args["api_key"], json!(hashed), "already redacted: kept");
        assert_eq!(args["note"], "hello");
        assert!(args["url"].as_str().unwrap().starts_with("hmac-sha256:"));
    }

    #[test]
    fn an_appended_event_names_the_gateway_as_verified_and_keeps_its_word_as_asserted() {
        let sent: Event = serde_json::from_value(call("tool.call", "mcp.tools/call")).unwrap();
        let sent_id = sent.id.clone();
        let fresh = Event::new(
            "tool.call",
            "agent:gateway",
            "mcp.tools/call",
            2_000,
            [9; 16],
        );
        let ev = as_appended(&gateway_claims(), sent, &fresh);
        assert_eq!(ev.principal, "agent:gateway");
        assert_eq!(ev.chain, ["agent:gateway"]);
        assert_eq!(ev.jti.as_deref(), Some("gw-jti"));
        assert_eq!(ev.id, fresh.id);
        assert_eq!(ev.time, fresh.time);
        assert_eq!(ev.details["gateway_event"], json!(sent_id));
        let a = ev.asserted.as_ref().unwrap();
        assert_eq!(a.by, "agent:gateway");
        assert_eq!(a.principal.as_deref(), Some("agent:coder"));
        assert_eq!(a.chain, ["user:alice", "agent:coder"]);
        assert_eq!(a.jti.as_deref(), Some("coder-jti"));
        // The parties the log verified are the gateway only; the caller is asserted.
        assert_eq!(ev.parties(), ["agent:gateway"]);
        assert_eq!(ev.asserted_parties(), ["agent:coder", "user:alice"]);
        assert_eq!(ev.resource.as_deref(), Some("demo/read_note"));
    }
}
