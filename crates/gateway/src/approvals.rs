//! Calls held for human approval: the hook the gateway asks (the authority's approval desk in
//! one process), and what a held call's caller is told.
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
use serde_json::{json, Value};

use crate::gateway::BoxFuture;
use crate::jsonrpc::RpcError;

/// A call the policy holds for humans.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Who denied it, when someone did.
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
    /// No request was opened: the caller has too many waiting (the reason says so).
    Refused(String),
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

    /// Spends approved request `id` for the call made with mandate `jti`: true exactly once
    /// (a second call with the same binding needs its own approval).
    fn release<'a>(&'a self, id: &'a str, jti: &'a str) -> BoxFuture<'a, Result<bool, String>>;
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
