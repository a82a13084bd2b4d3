//! The approval desk for gateways run apart from the authority (`mandate gateway --authority`),
//! the far end of `mandate_gateway::remote::approvals`:
//!
//! - `POST /approvals/v1/holds` with `{"ask": Ask, "wait_ms": N}`: finds or opens the request
//!   for the ask's binding (as the authority's own gateway does) and waits up to `N` ms, at most
//!   [`crate::policy_hook::request_hold`] (20 s by default, within the request deadline), for it
//!   to be decided; answers a `HoldAnswer` (`{"state", "request"}` or `{"state": "refused",
//!   "reason"}`).
//! - `POST /approvals/v1/releases` with `{"id", "jti", "required"}`: spends an approved,
//!   unexpired request for one call: `{"released": true}` exactly once, and only a request this
//!   gateway opened or a CIBA approval (with the jti of the mandate minted for it); with
//!   `required` (the approval the gateway's policy asks of the call now), only when the
//!   request's votes meet it (`{"released": false, "short": why}` otherwise). Each try is an
//!   `approval.released` event (refused ones say why).
//!
//! A gateway's requests are stored under a key that includes its name
//! (`Binding::key_for`): the authority's own gateway, and every other gateway, never find,
//! release or are blocked by them. Every principal an ask names must be one the authority
//! knows, and a gateway may have at most [`crate::approvals::MAX_OPEN_PER_GATEWAY`] requests
//! waiting (32 per caller, counted apart from the caller's own at the authority).
//!
//! Both authenticate through [`AuditCaller`] (`mandate:audit`, DPoP-bound), like the audit
//! appends. Everything an ask says (the caller, its chain, its mandate, the call) is the
//! gateway's word: it is bounded (`Ask::check`, a 64 KiB body), its recorded call redacted as an
//! appended event's details are, and the request stores and logs it as asserted by that gateway
//! (`asserted_by`, the event's `asserted`). A caller's open requests count against the same
//! bound (32) whichever gateway opened them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use mandate_gateway::approvals::{Ask, HoldAnswer};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::approvals::Desk;
use crate::auth::AuditCaller;
use crate::state::{now, AppState};

/// The routes (under `/approvals/v1`).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/holds", post(hold))
        .route("/releases", post(release))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    ask: Ask,
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    id: String,
    jti: String,
    /// What the gateway's policy asks of the call now (for an approval it did not open).
    #[serde(default)]
    required: Option<Value>,
}

/// A JSON body of type `T`, or a 400 saying what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {shape}: {}",
            e.to_string().split(" at line").next().unwrap_or("")
        ))
    })
}

async fn hold(
    State(st): State<Arc<AppState>>,
    AuditCaller(gateway): AuditCaller,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let HoldBody { mut ask, wait_ms } = body(&bytes, "{\"ask\": {...}, \"wait_ms\": N}")?;
    ask.check()
        .map_err(|e| ApiError::bad_request(format!("ask: {e}")))?;
    crate::audit_api::redact_value(st.audit_log.hmac_key(), &mut ask.call);
    // Redaction replaces short values with longer digests: the stored call is bounded as sent.
    if ask.call.to_string().len() > mandate_audit::event::MAX_EVENT_BYTES {
        return Err(ApiError::bad_request(format!(
            "ask: call is larger than {} bytes once its secrets are redacted",
            mandate_audit::event::MAX_EVENT_BYTES
        )));
    }
    // A gateway can only name principals the authority knows (it verified their mandates).
    for p in &ask.binding.chain {
        if st.store.principal(p).await?.is_none() {
            return Err(ApiError::bad_request(format!(
                "ask: binding.chain names {p}, which this authority does not know"
            )));
        }
    }
    let wait = Duration::from_millis(wait_ms).min(crate::policy_hook::request_hold(&st));
    let held = Desk::asserted_by(st.clone(), gateway.claims.clone())
        .hold_inner(&ask, wait)
        .await
        .map_err(|e| {
            tracing::error!(gateway = %gateway.claims.client_id, error = %e, "a gateway's held call could not be consulted");
            ApiError::unavailable("the approval desk could not be consulted; the gateway must refuse the call (retry later)")
        })?;
    Ok(Json(json!(HoldAnswer::from(&held))))
}

async fn release(
    State(st): State<Arc<AppState>>,
    AuditCaller(gateway): AuditCaller,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let ReleaseBody { id, jti, required } = body(
        &bytes,
        "{\"id\": \"apr_...\", \"jti\": \"...\", \"required\": null or an approval}",
    )?;
    let required = match required {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            mandate_policy::decision::parse_approval("required", &v)
                .map_err(ApiError::bad_request)?,
        ),
    };
    if !mandate_core::approval::is_id(&id) {
        return Err(ApiError::bad_request(
            "id is not an approval request id (apr_ and 22 characters)",
        ));
    }
    if jti.is_empty() || jti.len() > mandate_gateway::approvals::MAX_ASK_NAME {
        return Err(ApiError::bad_request(format!(
            "jti must be 1 to {} bytes",
            mandate_gateway::approvals::MAX_ASK_NAME
        )));
    }
    let me = gateway.claims.client_id.as_str();
    let now = now();
    let Some(a) = st.store.approval(&id).await? else {
        return Ok(Json(json!({ "released": false })));
    };
    // A gateway spends only what it asked for itself, or a CIBA approval (whose mandate it
    // verified, and which names the one call it buys): never another gateway's, nor one the
    // authority's own gateway holds.
    let ciba = a.asserted_by.is_none() && a.decision_id == crate::ciba::POLICY_VERSION;
    // A CIBA approval is spent only with the mandate the authority issued for it (its jti was
    // recorded when it was minted): a gateway that never saw that mandate cannot burn it.
    let its_own = a.asserted_by.as_deref() == Some(me)
        || (ciba
            && st
                .store
                .first_used_jti(&[&crate::ciba::minted_key(&a.id, &jti)])
                .await?
                .is_some());
    let releasable = its_own
        && a.state == mandate_core::approval::State::Approved.as_str()
        && a.released_at.is_none()
        && a.expires_at > now;
    let mut ev = crate::audit::new_event(
        mandate_audit::event::kinds::APPROVAL,
        me,
        "approval.released",
    )
    .under(
        gateway.claims.chain_to_holder(),
        Some(gateway.claims.jti.clone()),
    )
    .on(format!("{}/{}", a.upstream, a.tool));
    ev.approval_id = Some(a.id.clone());
    ev.details.insert("asserted_jti".into(), jti.clone().into());
    if !releasable {
        let why = if its_own {
            "not approved, already spent, or expired"
        } else {
            "another gateway's request, or a CIBA approval without its mandate"
        };
        let ev = ev.refused("release_refused", why);
        if st.audit(&ev).await.is_err() {
            return Err(ApiError::unavailable(
                "the audit log could not be written; retry later",
            ));
        }
        return Ok(Json(json!({ "released": false })));
    }
    if let Some(required) = &required {
        let short = crate::approvals::votes_short_of(&st, &a, required)
            .await
            .map_err(|e| ApiError::internal("approval check failed", e))?;
        if let Some(why) = short {
            let ev = ev.refused("approval_insufficient", &why);
            if st.audit(&ev).await.is_err() {
                return Err(ApiError::unavailable(
                    "the audit log could not be written; retry later",
                ));
            }
            return Ok(Json(json!({ "released": false, "short": why })));
        }
    }
    // Its event first: a release the log cannot take is not made (the call is then refused).
    if st.audit(&ev).await.is_err() {
        return Err(ApiError::unavailable(
            "the audit log could not be written, so the approval was not spent; the gateway must refuse the call",
        ));
    }
    let released = st
        .store
        .release_approval(&id, &jti, now, a.asserted_by.as_deref())
        .await?;
    if released {
        tracing::info!(approval = %id, jti = %jti, gateway = me, "approved call released at a gateway run apart");
    } else {
        let lost = ev.refused("release_refused", "spent by a concurrent call");
        let _ = st.audit(&lost).await;
    }
    Ok(Json(json!({ "released": released })))
}
