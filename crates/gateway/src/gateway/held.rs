//! Calls the policy sends to humans (`Verdict::NeedsApproval`), and calls made with a mandate a
//! CIBA approval bought: bound to their exact arguments, released once through the
//! [`Approvals`](crate::approvals::Approvals) hook, or refused with the request's state.

use std::time::Duration;

use mandate_audit::event::Event;
use mandate_core::refusal::jsonrpc as codes;
use mandate_core::MandateClaims;
use mandate_policy::Decision;
use serde_json::{Map, Value};

use super::{refusal, Gateway, Judgement};
use crate::jsonrpc::RpcError;
use crate::upstream::Upstream;

impl Gateway {
    /// A call the policy sends to humans: bound to its exact arguments, held up to
    /// `approval_hold` for the quorum, made once when approved; otherwise refused with the
    /// request's state. Any failure to consult the approvals refuses the call (fail closed).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn held_for_approval(
        &self,
        up: &Upstream,
        claims: &MandateClaims,
        tool: &str,
        input: &Value,
        body: &[u8],
        approval: &mandate_policy::Approval,
        decision: &Decision,
        ev: &mut Event,
        scope: String,
    ) -> Judgement {
        use crate::approvals::{told, Ask, Held, Release};
        let mut refuse = |code: &str, e: RpcError| {
            ev.result = "refused".into();
            ev.error = Some(code.to_string());
            Judgement::Refused(e)
        };
        let Some(desk) = &self.approvals else {
            return refuse(
                "approval_required",
                refusal(
                    codes::APPROVAL_REQUIRED,
                    "needs approval, which this gateway was built without (no approval desk)",
                    decision,
                    tool,
                    &up.name,
                ),
            );
        };
        let arguments = input
            .pointer("/action/arguments")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        // A batch is forwarded whole or not at all, so an approval spent on one of its messages
        // could buy nothing: a call needing approval is made alone.
        if body.trim_ascii_start().first() == Some(&b'[') {
            return refuse(
                "approval_required",
                RpcError::new(
                    codes::APPROVAL_REQUIRED,
                    format!("{tool} on {} needs approval, which a call in a batch cannot wait for: send it alone", up.name),
                ),
            );
        }
        // The binding is the canonical form: a literal that means another number than the one
        // it is written as (which an upstream reading decimals exactly would see) is refused.
        if let Some(lit) = mandate_audit::event::first_inexact_literal(body) {
            return refuse(
                "approval_required",
                RpcError::new(
                    codes::APPROVAL_REQUIRED,
                    format!("needs approval, but the number {lit} in the request cannot be bound exactly (RFC 8785 reads it as a different double): send it as a string or in its shortest form"),
                ),
            );
        }
        let canonical = match mandate_audit::event::rfc8785(&arguments) {
            Ok(c) => c,
            Err(e) => {
                return refuse(
                    "approval_required",
                    RpcError::new(
                        codes::APPROVAL_REQUIRED,
                        format!("needs approval, but its arguments cannot be bound to one: {e}"),
                    ),
                )
            }
        };
        let digest = mandate_core::approval::sha256_hex(canonical.as_bytes());
        let unavailable = |why: String| {
            tracing::error!(upstream = %up.name, jti = %claims.jti, error = %why, "approvals could not be consulted");
            RpcError::new(
                codes::APPROVAL_REQUIRED,
                format!("{tool} on {} needs approval and the approvals could not be consulted, so the call was not made; retry later", up.name),
            )
        };
        // A mandate bought by a CIBA approval carries it: exactly this call, once.
        let carried = claims.authorization_details.iter().flatten().find_map(|d| {
            let is = |k: &str, v: &str| d.get(k).and_then(Value::as_str) == Some(v);
            (is("type", "tool_call")
                && is("server", &up.name)
                && is("tool", tool)
                && is("arguments_sha256", &digest))
            .then(|| d.get("approval_id").and_then(Value::as_str))
            .flatten()
        });
        if let Some(id) = carried {
            ev.approval_id = Some(id.to_string());
            ev.details.insert("approved_through".into(), "ciba".into());
            // The approval was not opened here: it must meet what this gateway's policy asks of
            // the call now (its approvers and quorum), whatever was asked when it was opened.
            let required = (!approval.approvers.is_empty()).then_some(approval);
            return match desk.release(id, &claims.jti, required).await {
                Ok(Release::Released) => Judgement::Allowed { scope },
                Ok(Release::Short(why)) => refuse(
                    "approval_insufficient",
                    RpcError::new(
                        codes::APPROVAL_REQUIRED,
                        format!("the approval this mandate carries (request {id}) does not meet what the policy asks of {tool} on {} ({why}): make the call without it to ask the approvers the policy names", up.name),
                    ),
                ),
                Ok(Release::Unavailable) => refuse(
                    "approval_spent",
                    RpcError::new(
                        codes::APPROVAL_REQUIRED,
                        format!("the approval this mandate carries (request {id}) was already used for one call, or has expired: ask again"),
                    ),
                ),
                Err(why) => refuse("approvals_unavailable", unavailable(why)),
            };
        }
        if claims.authorization_details.is_some() {
            return refuse(
                "authorization_details_mismatch",
                RpcError::new(
                    codes::FORBIDDEN,
                    format!("this mandate was issued for the one call its authorization_details name, not for {tool} on {} with these arguments: ask for another approval", up.name),
                ),
            );
        }
        let ask = Ask {
            binding: mandate_core::approval::Binding {
                chain: claims.chain_to_holder(),
                upstream: up.name.clone(),
                tool: tool.to_string(),
                arguments_sha256: digest,
                policy_version: decision.policy_version().to_string(),
            },
            requested_by: claims.client_id.clone(),
            jti: claims.jti.clone(),
            approval: approval.clone(),
            decision_id: decision.decision_id().to_string(),
            call: ev.details.get("action").cloned().unwrap_or(Value::Null),
        };
        // An approval spent by a concurrent identical call leaves this one to a new request,
        // which is then only looked at (not waited for again).
        // A principal's held calls are bounded (each keeps a connection open); past the bound a
        // call is answered at once with its request's state.
        let counted = self.held_calls.enter(&claims.client_id);
        let hold = if counted.is_some() {
            self.settings.approval_hold
        } else {
            Duration::ZERO
        };
        for wait in [hold, Duration::ZERO, Duration::ZERO] {
            let held = match desk.hold(&ask, wait).await {
                Ok(h) => h,
                Err(why) => return refuse("approvals_unavailable", unavailable(why)),
            };
            ev.approval_id = match &held {
                Held::Approved(t)
                | Held::Pending(t)
                | Held::Denied(t)
                | Held::Expired(t)
                | Held::Cancelled(t) => Some(t.id.clone()),
                Held::Refused(_) => None,
            };
            if let Held::Approved(t) = &held {
                match desk.release(&t.id, &claims.jti, None).await {
                    Ok(Release::Released) => {
                        tracing::info!(upstream = %up.name, tool, approval = %t.id, jti = %claims.jti, "approved call released");
                        return Judgement::Allowed { scope };
                    }
                    Ok(_) => continue,
                    Err(why) => return refuse("approvals_unavailable", unavailable(why)),
                }
            }
            let (code, e) = told(&held, tool, &up.name, decision.decision_id());
            return refuse(code, e);
        }
        refuse(
            "approvals_unavailable",
            unavailable(
                "approved requests for this call kept being spent by identical calls".into(),
            ),
        )
    }
}
