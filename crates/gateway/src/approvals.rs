//! Calls held for human approval: the hook the gateway asks (the authority's approval desk in
//! one process, or over HTTP for a gateway run apart: [`crate::remote::approvals`]), the wire
//! form both ends of that exchange share ([`Ask`], [`HoldAnswer`]), and what a held call's
//! caller is told.
//!
//! A call whose decision asks for approval is bound to {chain, upstream, tool, arguments digest,
//! policy version}. The gateway asks the desk to find the open request with that binding or to
//! open one, waits up to `approval_hold` for its quorum, then spends the approval for this one
//! call ([`Approvals::release`]) and forwards it. Otherwise the caller is told the request is
//! pending (with its id, approvers and the command to approve), denied (with the approver's
//! reason) or expired. A held call whose client goes away leaves the request pending: the same
//! call retried later finds it.

use std::time::Duration;

use mandate_core::approval::Binding;
use mandate_core::refusal::jsonrpc as codes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::gateway::BoxFuture;
use crate::jsonrpc::RpcError;

/// A call the policy holds for humans. A gateway run apart sends it to the authority as JSON
/// (`POST /approvals/v1/holds`), where every member is the gateway's word: [`Ask::check`] bounds
/// it and the authority records it as asserted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// What the request is bound to.
    pub binding: Binding,
    /// The caller (the mandate's holder).
    pub requested_by: String,
    /// The caller's mandate.
    pub jti: String,
    /// Who may approve, how many, why, and for how long (the decision's `approval`).
    pub approval: mandate_policy::Approval,
    /// The decision that asked.
    pub decision_id: String,
    /// The call as the audit log records it (arguments redacted), shown to approvers.
    pub call: Value,
}

/// A request as its waiting caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// `apr_...`.
    pub id: String,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Approvals so far.
    pub approvals: u32,
    /// Unix seconds.
    pub expires_at: i64,
    /// Who denied (or cancelled) it, when someone did.
    pub denied_by: Option<String>,
    /// Their reason.
    pub denial_reason: Option<String>,
    /// A request with the same binding that expired unanswered, replaced by this one.
    pub replaces_expired: Option<String>,
}

/// Where a held call stands after waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Approved: spend it with [`Approvals::release`] and make the call.
    Approved(Ticket),
    /// Still waiting for votes.
    Pending(Ticket),
    /// Someone denied it.
    Denied(Ticket),
    /// It expired while the call waited.
    Expired(Ticket),
    /// Someone in its chain (or an admin) withdrew it while the call waited.
    Cancelled(Ticket),
    /// No request was opened: the caller has too many waiting (the reason says so).
    Refused(String),
}

/// Longest tool name, chain member, version or id an [`Ask`] may carry, in bytes.
pub const MAX_ASK_NAME: usize = 256;

impl Ask {
    /// Whether the ask is within the bounds a request can be stored under: a chain of at most
    /// `MAX_CHAIN_DEPTH + 1` principals ending with the caller, an upstream name, a tool, a
    /// SHA-256 digest, the approval a decision could have made, and a recorded call no larger
    /// than one audit event. The answer says which member is wrong.
    pub fn check(&self) -> Result<(), String> {
        let b = &self.binding;
        use mandate_core::approval::unfit_for_display;
        // What approvers are shown has no characters that could mislead them.
        let short = |what: &str, s: &str| -> Result<(), String> {
            if s.is_empty() || s.len() > MAX_ASK_NAME || s.chars().any(unfit_for_display) {
                return Err(format!(
                    "{what} must be 1 to {MAX_ASK_NAME} bytes without control, format or bidirectional characters"
                ));
            }
            Ok(())
        };
        let depth = mandate_core::claims::MAX_CHAIN_DEPTH as usize + 1;
        if b.chain.is_empty() || b.chain.len() > depth {
            return Err(format!("binding.chain must name 1 to {depth} principals"));
        }
        for (i, p) in b.chain.iter().enumerate() {
            p.parse::<mandate_core::PrincipalName>()
                .map_err(|e| format!("binding.chain: {e}"))?;
            if b.chain[..i].contains(p) {
                return Err(format!("binding.chain names {p} twice"));
            }
        }
        if b.chain.last() != Some(&self.requested_by) {
            return Err("binding.chain must end with requested_by (the caller)".into());
        }
        if !crate::config::valid_name(&b.upstream) {
            return Err(format!(
                "binding.upstream {:?} is not an upstream name",
                b.upstream
            ));
        }
        short("binding.tool", &b.tool)?;
        short("binding.policy_version", &b.policy_version)?;
        short("decision_id", &self.decision_id)?;
        short("jti", &self.jti)?;
        if b.arguments_sha256.len() != 64
            || !b
                .arguments_sha256
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err("binding.arguments_sha256 must be 64 lowercase hex digits".into());
        }
        let approval = serde_json::to_value(&self.approval).map_err(|e| e.to_string())?;
        mandate_policy::decision::parse_approval("ask", &approval)?;
        for a in &self.approval.approvers {
            short("approval.approvers[]", a)?;
        }
        if let Some(r) = &self.approval.reason {
            if r.chars().count() > mandate_core::approval::MAX_REASON_CHARS
                || r.chars().any(unfit_for_display)
            {
                return Err(format!(
                    "approval.reason must be at most {} characters without control, format or bidirectional characters",
                    mandate_core::approval::MAX_REASON_CHARS
                ));
            }
        }
        if self.call.to_string().len() > mandate_audit::event::MAX_EVENT_BYTES {
            return Err(format!(
                "call is larger than {} bytes",
                mandate_audit::event::MAX_EVENT_BYTES
            ));
        }
        Ok(())
    }
}

/// A [`Held`] on the wire (the answer of `POST /approvals/v1/holds`): `state` is `approved`,
/// `pending`, `denied`, `expired`, `cancelled` or `refused`; `request` is the ticket (absent
/// when refused), `reason` why no request was opened (only when refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldAnswer {
    /// Where the request stands.
    pub state: String,
    /// The request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Ticket>,
    /// Why no request was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&Held> for HoldAnswer {
    fn from(h: &Held) -> Self {
        let (state, t) = match h {
            Held::Refused(why) => {
                return HoldAnswer {
                    state: "refused".into(),
                    request: None,
                    reason: Some(why.clone()),
                }
            }
            Held::Approved(t) => ("approved", t),
            Held::Pending(t) => ("pending", t),
            Held::Denied(t) => ("denied", t),
            Held::Expired(t) => ("expired", t),
            Held::Cancelled(t) => ("cancelled", t),
        };
        HoldAnswer {
            state: state.into(),
            request: Some(t.clone()),
            reason: None,
        }
    }
}

impl TryFrom<HoldAnswer> for Held {
    type Error = String;
    fn try_from(a: HoldAnswer) -> Result<Self, String> {
        if a.state == "refused" {
            return Ok(Held::Refused(a.reason.unwrap_or_default()));
        }
        let t = a
            .request
            .ok_or_else(|| format!("a {} answer without its request", a.state))?;
        Ok(match a.state.as_str() {
            "approved" => Held::Approved(t),
            "pending" => Held::Pending(t),
            "denied" => Held::Denied(t),
            "expired" => Held::Expired(t),
            "cancelled" => Held::Cancelled(t),
            other => return Err(format!("unknown state {other:?}")),
        })
    }
}

/// Most calls one principal may have held waiting at once; more are answered at once with the
/// request's state (a held call keeps its connection, and connections are bounded per source).
pub const MAX_HELD_PER_PRINCIPAL: usize = 8;

/// Counts what each principal holds open (held calls here, approval event streams at the
/// authority), at most `limit` each.
#[derive(Clone)]
pub struct PerPrincipal {
    limit: usize,
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One counted thing, released when dropped.
pub struct Slot {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    principal: String,
}

impl PerPrincipal {
    /// At most `limit` per principal.
    pub fn new(limit: usize) -> Self {
        PerPrincipal {
            limit,
            counts: Default::default(),
        }
    }

    /// Counts one more for `principal`, or `None` when it holds `limit` already.
    pub fn enter(&self, principal: &str) -> Option<Slot> {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(principal.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.counts.clone(),
            principal: principal.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.principal);
            }
        }
    }
}

/// The approval desk: requests, votes and releases, kept by the authority.
pub trait Approvals: Send + Sync {
    /// Finds the request open for `ask`'s binding or opens one, then waits up to `wait` for it
    /// to be decided. An error means approvals cannot be consulted: the call is refused.
    fn hold<'a>(&'a self, ask: &'a Ask, wait: Duration) -> BoxFuture<'a, Result<Held, String>>;

    /// Spends approved request `id` for the call made with mandate `jti`, exactly once (a
    /// second call with the same binding needs its own approval). With `required` (what this
    /// gateway's policy asks of the call now, for an approval it did not open itself: one a
    /// CIBA mandate carries), only when the request's approvals meet it: at least its quorum of
    /// votes by approvers it names.
    fn release<'a>(
        &'a self,
        id: &'a str,
        jti: &'a str,
        required: Option<&'a mandate_policy::Approval>,
    ) -> BoxFuture<'a, Result<Release, String>>;
}

/// What spending an approval came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Spent for this call: make it.
    Released,
    /// Not approved, already spent, or expired.
    Unavailable,
    /// Approved, but not as the policy now requires (the reason says how): not spent.
    Short(String),
}

/// How the caller is told its call waits, was denied, or expired: a JSON-RPC error
/// (`-32004 approval_required`) naming the request, the approvers and the command to approve.
pub fn told(
    held: &Held,
    tool: &str,
    upstream: &str,
    decision_id: &str,
) -> (&'static str, RpcError) {
    let (code, message, t) = match held {
        Held::Refused(why) => {
            return (
                "approval_refused",
                RpcError::new(
                    codes::APPROVAL_REQUIRED,
                    format!("{tool} on {upstream} needs approval and no request was opened: {why} (decision {decision_id})"),
                ),
            )
        }
        Held::Approved(t) | Held::Pending(t) => {
            let mut m = format!(
                "approval pending: {tool} on {upstream} is held for approval as request {id} \
                 (approvers: {approvers}; {got} of {quorum} approvals; expires at {exp} unix); \
                 an approver runs `mandate approvals approve {id} --as user:NAME`, then the same \
                 call goes through once (decision {decision_id})",
                id = t.id,
                approvers = t.approvers.join(", "),
                got = t.approvals,
                quorum = t.quorum,
                exp = t.expires_at,
            );
            if let Some(old) = &t.replaces_expired {
                m.push_str(&format!(
                    "; request {old} for the same call expired unanswered"
                ));
            }
            ("approval_pending", m, t)
        }
        Held::Denied(t) => (
            "approval_denied",
            format!(
                "approval denied: request {id} for {tool} on {upstream} was denied by {by}: {why} \
                 (the same call stays refused until {exp} unix; decision {decision_id})",
                id = t.id,
                by = t.denied_by.as_deref().unwrap_or("an approver"),
                why = t.denial_reason.as_deref().unwrap_or("no reason given"),
                exp = t.expires_at,
            ),
            t,
        ),
        Held::Cancelled(t) => (
            "approval_cancelled",
            format!(
                "approval cancelled: request {id} for {tool} on {upstream} was withdrawn by {by}: {why}; make the call again to ask anew (decision {decision_id})",
                id = t.id,
                by = t.denied_by.as_deref().unwrap_or("its requester"),
                why = t.denial_reason.as_deref().unwrap_or("no reason given"),
            ),
            t,
        ),
        Held::Expired(t) => (
            "approval_expired",
            format!(
                "approval expired: request {id} for {tool} on {upstream} expired before {quorum} \
                 approval(s); make the call again to ask anew (decision {decision_id})",
                id = t.id,
                quorum = t.quorum,
            ),
            t,
        ),
    };
    let data = json!({
        "approval_id": t.id,
        "state": code.trim_start_matches("approval_"),
        "approvers": t.approvers,
        "quorum": t.quorum,
        "approvals": t.approvals,
        "expires_at": t.expires_at,
        "decision_id": decision_id,
        "approve_command": format!("mandate approvals approve {} --as user:NAME", t.id),
    });
    (
        code,
        RpcError::new(codes::APPROVAL_REQUIRED, message).with_data(data),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            id: "apr_x".into(),
            approvers: vec!["role:approver".into()],
            quorum: 2,
            approvals: 1,
            expires_at: 100,
            denied_by: None,
            denial_reason: None,
            replaces_expired: None,
        }
    }

    #[test]
    fn a_pending_call_is_told_the_request_the_approvers_and_the_command() {
        let (code, e) = told(&Held::Pending(ticket()), "delete_note", "demo", "d1");
        assert_eq!(code, "approval_pending");
        assert_eq!(e.code, codes::APPROVAL_REQUIRED);
        assert!(
            e.message
                .starts_with("approval pending: delete_note on demo"),
            "{}",
            e.message
        );
        assert!(e
            .message
            .contains("mandate approvals approve apr_x --as user:NAME"));
        assert!(e.message.contains("1 of 2 approvals"));
        let d = e.data.unwrap();
        assert_eq!(d["approval_id"], "apr_x");
        assert_eq!(d["state"], "pending");
    }

    fn ask() -> Ask {
        Ask {
            binding: Binding {
                chain: vec!["user:alice".into(), "agent:coder".into()],
                upstream: "files".into(),
                tool: "write_file".into(),
                arguments_sha256: "ab".repeat(32),
                policy_version: "v1".into(),
            },
            requested_by: "agent:coder".into(),
            jti: "j".into(),
            approval: mandate_policy::Approval {
                approvers: vec!["role:approver".into()],
                quorum: 1,
                reason: Some("destructive".into()),
                expires_in: None,
            },
            decision_id: "d".into(),
            call: json!({"tool": "write_file"}),
        }
    }

    #[test]
    fn an_ask_from_a_gateway_is_bounded_and_shows_approvers_nothing_misleading() {
        assert_eq!(ask().check(), Ok(()));
        type Spoil = fn(&mut Ask);
        let cases: Vec<(Spoil, &str)> = vec![
            (
                |a| a.binding.chain = vec!["agent:coder".into(), "agent:coder".into()],
                "twice",
            ),
            (
                |a| a.requested_by = "agent:other".into(),
                "end with requested_by",
            ),
            (
                |a| a.approval.approvers = vec!["\u{1b}[31mevil".into()],
                "approvers",
            ),
            (|a| a.approval.approvers = vec![String::new()], "approvers"),
            (|a| a.approval.reason = Some("line\nbreak".into()), "reason"),
            (
                |a| a.binding.tool = "write\u{202e}elif".into(),
                "binding.tool",
            ),
            (
                |a| a.binding.arguments_sha256 = "AB".repeat(32),
                "64 lowercase hex",
            ),
            (|a| a.approval.quorum = 0, "quorum"),
            (|a| a.call = json!("x".repeat(17 * 1024)), "call is larger"),
        ];
        for (spoil, why) in cases {
            let mut a = ask();
            spoil(&mut a);
            let e = a.check().unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn a_hold_answer_round_trips_every_state() {
        for h in [
            Held::Approved(ticket()),
            Held::Pending(ticket()),
            Held::Denied(ticket()),
            Held::Expired(ticket()),
            Held::Cancelled(ticket()),
            Held::Refused("too many".into()),
        ] {
            let wire = serde_json::to_value(HoldAnswer::from(&h)).unwrap();
            let back: HoldAnswer = serde_json::from_value(wire).unwrap();
            assert_eq!(Held::try_from(back).unwrap(), h);
        }
        let odd = HoldAnswer {
            state: "maybe".into(),
            request: Some(ticket()),
            reason: None,
        };
        assert!(Held::try_from(odd).is_err());
    }

    #[test]
    fn a_principal_has_at_most_eight_calls_held_at_once() {
        let calls = PerPrincipal::new(MAX_HELD_PER_PRINCIPAL);
        let held: Vec<_> = (0..MAX_HELD_PER_PRINCIPAL)
            .map(|_| calls.enter("agent:a").unwrap())
            .collect();
        assert!(calls.enter("agent:a").is_none());
        assert!(calls.enter("agent:b").is_some(), "others are not affected");
        drop(held);
        assert!(calls.enter("agent:a").is_some());
        assert!(
            calls.counts.lock().unwrap().len() <= 1,
            "released slots are forgotten"
        );
    }

    #[test]
    fn a_denied_call_is_told_who_denied_it_and_why() {
        let mut t = ticket();
        t.denied_by = Some("user:bob".into());
        t.denial_reason = Some("not on a Friday".into());
        let (code, e) = told(&Held::Denied(t), "delete_note", "demo", "d1");
        assert_eq!(code, "approval_denied");
        assert!(
            e.message.contains("denied by user:bob: not on a Friday"),
            "{}",
            e.message
        );
        assert_eq!(e.data.unwrap()["state"], "denied");
    }
}
