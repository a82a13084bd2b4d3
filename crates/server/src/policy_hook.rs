//! Building the policy input document (docs/policy-input.schema.json) from what the server knows,
//! and asking the delegation policy before a mandate is issued.

use mandate_core::claims::MandateClaims;
use mandate_policy::input::{Action, Context, Delegation, Input};
use mandate_policy::{Decision, Outcome, Query};
use serde_json::Value;

use crate::oauth_error::OAuthError;
use crate::state::AppState;

/// `input.context`: the server's clock, its environment label and the caller's address.
pub fn context(st: &AppState, client_address: Option<String>, now: i64) -> Context {
    Context::at(now, &st.cfg.environment, client_address)
}

/// `input` for the delegation policy: the mandate that would be issued, who asks, from whom to
/// whom.
#[derive(Clone)]
pub struct DelegationFacts<'a> {
    /// The mandate about to be issued.
    pub claims: &'a MandateClaims,
    /// The authenticated caller.
    pub caller: &'a str,
    /// Who authorises this hop: the caller (itself for client_credentials), or for a pull the
    /// principal who named the caller in the subject token's `may_act`.
    pub from: &'a str,
    /// Who will hold the mandate (or, for `may_act`, who could pull it).
    pub to: &'a str,
    /// `grant_type`.
    pub grant_type: &'a str,
    /// `self`, `push`, `pull` or `may_act`.
    pub mode: crate::token::Mode,
    /// For a pull: the holder of the subject token.
    pub holder: Option<&'a str>,
    /// The principal the new mandate's `may_act` names, if any.
    pub may_act: Option<&'a str>,
    /// The caller's address.
    pub client_address: Option<String>,
}

/// The input document for `data.mandate.delegation.decision`. For a `may_act` decision the chain
/// ends with the principal that could pull, as it would after the pull.
pub fn delegation_input(st: &AppState, f: &DelegationFacts<'_>) -> Value {
    let c = f.claims;
    let action = Action::Delegation(Delegation {
        grant_type: f.grant_type.to_string(),
        mode: f.mode,
        from: f.from.to_string(),
        to: f.to.to_string(),
        ttl_seconds: c.exp - c.iat,
        may_act: f.may_act.map(str::to_string),
        holder: f.holder.map(str::to_string),
    });
    let mut input = Input::for_mandate(
        f.caller,
        c,
        action,
        context(st, f.client_address.clone(), c.iat),
    );
    if f.mode == crate::token::Mode::MayAct {
        input.chain.push(f.to.to_string());
    }
    input.to_value()
}

/// Longest one request to the authority is held for an approval (a token request whose
/// delegation needs one, or one wait of a gateway run apart): within the request deadline
/// (30 s by default), so the answer always arrives.
pub fn request_hold(st: &AppState) -> std::time::Duration {
    st.cfg
        .limits
        .request_timeout
        .saturating_sub(std::time::Duration::from_secs(5))
        .min(std::time::Duration::from_secs(20))
}

/// Asks the delegation policy: an outright allow proceeds; a deny refuses with the policy's
/// reasons in `error_description`; a decision needing approval holds the request as an approval
/// request bound to the mandate's chain, scopes, audiences, parties and depth (not its lifetime,
/// which the parent's expiry shortens between tries), and proceeds once, when approved.
pub async fn check_delegation(
    st: &AppState,
    input: Value,
    trail: &mut crate::token::Trail,
) -> Result<Decision, OAuthError> {
    let d = st.policy.decide(Query::Delegation, &input).await;
    trail.decision = Some(d.clone());
    match d.outcome() {
        Outcome::Allow => Ok(d),
        Outcome::Approval => held_for_approval(st, &input, d, trail).await,
        Outcome::Deny => Err(OAuthError::unauthorized_client(format!(
            "refused by policy: {} [decision {}, policy {}]",
            d.reasons_line(),
            d.decision_id(),
            d.policy_version()
        ))),
    }
}

async fn held_for_approval(
    st: &AppState,
    input: &Value,
    d: Decision,
    trail: &mut crate::token::Trail,
) -> Result<Decision, OAuthError> {
    use mandate_gateway::approvals::{Ask, Held};
    let Some(approval) = d.approval().cloned() else {
        return Err(OAuthError::server_error(
            "approval without its terms",
            d.decision_id(),
        ));
    };
    let a = &input["action"];
    let m = &input["mandate"];
    let arguments = serde_json::json!({
        "grant_type": a["grant_type"], "mode": a["mode"], "from": a["from"], "to": a["to"],
        "holder": a["holder"], "may_act": a["may_act"],
        "scopes": input["scopes"], "audiences": input["audience"], "depth": m["depth"],
    });
    let chain: Vec<String> = serde_json::from_value(input["chain"].clone()).unwrap_or_default();
    let canonical = mandate_audit::event::rfc8785(&arguments)
        .map_err(|e| OAuthError::server_error("the delegation cannot be bound", e))?;
    let tool = format!("delegation.{}", a["mode"].as_str().unwrap_or("self"));
    let mut call = arguments.clone();
    call["ttl_seconds"] = a["ttl_seconds"].clone();
    let ask = Ask {
        binding: mandate_core::approval::Binding {
            chain,
            upstream: "mandate".into(),
            tool: tool.clone(),
            arguments_sha256: mandate_core::approval::sha256_hex(canonical.as_bytes()),
            policy_version: d.policy_version().to_string(),
        },
        requested_by: input["principal"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        jti: m["jti"].as_str().unwrap_or_default().to_string(),
        approval,
        decision_id: d.decision_id().to_string(),
        call: serde_json::json!({"kind": "delegation", "server": "mandate", "tool": tool, "arguments": call}),
    };
    let desk = crate::approvals::Desk::new(st);
    let held = desk
        .hold_inner(&ask, request_hold(st))
        .await
        .map_err(|e| OAuthError::server_error("approvals could not be consulted", e))?;
    let refused = |what: String| {
        OAuthError::unauthorized_client(format!(
            "{what} [decision {}, policy {}]",
            d.decision_id(),
            d.policy_version()
        ))
    };
    match held {
        Held::Approved(t) => {
            trail.approval = Some(t.id.clone());
            let jti = ask.jti.clone();
            match st
                .store
                .release_approval(&t.id, &jti, crate::state::now(), None)
                .await {
                Ok(true) => Ok(d),
                Ok(false) => Err(refused(format!(
                    "the approval of this delegation (request {}) was already used: make the request again for a new one",
                    t.id
                ))),
                Err(e) => Err(OAuthError::server_error("approvals could not be consulted", e)),
            }
        }
        Held::Pending(t) => {
            trail.approval = Some(t.id.clone());
            Err(refused(format!(
                "delegation needs approval ({}): pending as request {} (approvers: {}; {} of {} approvals); an approver runs `mandate approvals approve {} --as user:NAME`, then make the same request again",
                d.reasons_line(), t.id, t.approvers.join(", "), t.approvals, t.quorum, t.id
            )))
        }
        Held::Denied(t) => {
            trail.approval = Some(t.id.clone());
            Err(refused(format!(
                "delegation approval denied by {}: {}",
                t.denied_by.as_deref().unwrap_or("an approver"),
                t.denial_reason.as_deref().unwrap_or("no reason given")
            )))
        }
        Held::Expired(t) => {
            trail.approval = Some(t.id.clone());
            Err(refused(format!(
                "the approval request {} for this delegation expired: make the request again",
                t.id
            )))
        }
        Held::Cancelled(t) => {
            trail.approval = Some(t.id.clone());
            Err(refused(format!(
                "the approval request {} for this delegation was withdrawn by {}: {}; make the request again to ask anew",
                t.id,
                t.denied_by.as_deref().unwrap_or("its requester"),
                t.denial_reason.as_deref().unwrap_or("no reason given")
            )))
        }
        Held::Refused(why) => Err(refused(format!("delegation needs approval: {why}"))),
    }
}
