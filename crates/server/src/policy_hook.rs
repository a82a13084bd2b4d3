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

/// Asks the delegation policy; anything but an outright allow refuses the request with the
/// policy's reasons in `error_description`.
pub async fn check_delegation(
    st: &AppState,
    input: Value,
    trail: &mut crate::token::Trail,
) -> Result<Decision, OAuthError> {
    let d = st.policy.decide(Query::Delegation, &input).await;
    trail.decision = Some(d.clone());
    match d.outcome() {
        Outcome::Allow => Ok(d),
        Outcome::Approval => Err(OAuthError::unauthorized_client(format!(
            "refused by policy: delegation needs approval ({}), which the token endpoint cannot wait for; ask an admin to change the delegation policy [decision {}, policy {}]",
            d.reasons_line(), d.decision_id(), d.policy_version()
        ))),
        Outcome::Deny => Err(OAuthError::unauthorized_client(format!(
            "refused by policy: {} [decision {}, policy {}]",
            d.reasons_line(),
            d.decision_id(),
            d.policy_version()
        ))),
    }
}
