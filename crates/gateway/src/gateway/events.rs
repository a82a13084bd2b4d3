//! The gateway's audit events: how a call, a refusal and an upstream failure are recorded
//! (step 5 of the request path), one builder for every kind.

use mandate_audit::event::{kinds, Event};
use mandate_core::refusal::jsonrpc as codes;
use mandate_core::MandateClaims;
use mandate_policy::Decision;
use serde_json::Value;

use super::{now_ms, Gateway};
use crate::jsonrpc::RpcError;
use crate::upstream::Upstream;

/// What a log line may show of an event's `resource` (built from names the caller chose: a method,
/// a tool): cleaned as the audit log cleans it, so a log line holds no credential the event does
/// not.
pub fn log_resource(ev: &Event) -> std::borrow::Cow<'_, str> {
    mandate_core::secrets::clean_text_with(
        ev.resource.as_deref().unwrap_or(""),
        &mandate_audit::event::is_secret_key,
    )
}

impl Gateway {
    /// The audit event of a call on `up` under `claims`.
    pub(super) fn event(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        method: &str,
        input: Option<&Value>,
    ) -> Event {
        self.event_as(up, claims, &format!("mcp.{method}"), input)
    }

    /// The audit event of a call on `up` under `claims`, recorded as the action `label`.
    pub(super) fn event_as(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        label: &str,
        input: Option<&Value>,
    ) -> Event {
        let random = mandate_audit::event::event_randomness();
        let mut ev = Event::new(kinds::TOOL_CALL, &claims.client_id, label, now_ms(), random)
            .under(claims.chain_to_holder(), Some(claims.jti.clone()));
        ev.details
            .insert("upstream".into(), Value::String(up.name.clone()));
        if let Some(input) = input {
            // Refused before the policy: the arguments are recorded only as their HMAC.
            ev.details.insert(
                "action".into(),
                mandate_audit::event::recorded_action(
                    self.audit.hmac_key(),
                    &input["action"],
                    &[],
                    true,
                    &mandate_core::secrets::looks_like_secret_value,
                ),
            );
        }
        ev
    }

    pub(super) fn recorded_action(&self, input: &Value, d: &Decision) -> Value {
        mandate_audit::event::recorded_action(
            self.audit.hmac_key(),
            &input["action"],
            d.redact(),
            d.error().is_some(),
            &mandate_core::secrets::looks_like_secret_value,
        )
    }

    /// The event of an authenticated request refused before any policy question could be asked
    /// (malformed JSON-RPC, a method or notification the gateway does not know, an HTTP request
    /// no route maps or whose arguments could be read two ways): every refused call of an
    /// authenticated caller is on record, bounded by its call rate.
    pub fn refused_request(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        label: &str,
        resource: &str,
        code: &str,
        why: &str,
    ) -> Event {
        self.event_as(up, claims, label, None)
            .on(resource.to_string())
            .refused(code, why)
    }

    /// [`Gateway::refused_request`], recorded. The request is refused either way: an audit log
    /// that cannot be written changes nothing but the log line.
    pub async fn record_refused_request(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        label: &str,
        resource: &str,
        code: &str,
        why: &str,
    ) {
        let ev = self.refused_request(up, claims, label, resource, code, why);
        if self.audit.append(&ev).await.is_err() {
            tracing::warn!(upstream = %up.name, event = %ev.id, "the audit log could not record a refused request");
        }
    }

    /// Step 5: makes `event` durable; an error means the call must not go ahead.
    pub async fn record(&self, event: &Event) -> Result<i64, RpcError> {
        self.audit.append(event).await.map_err(|_| {
            RpcError::new(
                codes::UNAVAILABLE,
                "the audit log cannot be written, so the call was not forwarded; retry later",
            )
        })
    }

    /// Records, best effort, that an allowed call failed at the upstream.
    pub async fn record_failure(&self, allowed: &Event, why: &str) {
        let mut ev = allowed.clone();
        let random = mandate_audit::event::event_randomness();
        let fresh = Event::new(&ev.kind, &ev.principal, &ev.action, now_ms(), random);
        ev.id = fresh.id;
        ev.time = fresh.time;
        ev.result = "failed".into();
        ev.error = Some("upstream_failed".into());
        ev.reasons = vec![why.to_string()];
        ev.details
            .insert("call_event".into(), Value::String(allowed.id.clone()));
        if self.audit.append(&ev).await.is_err() {
            tracing::error!(event = %allowed.id, "could not record that an allowed call failed at its upstream");
        }
    }
}
