//! Approval requests, as pure rules: what a request is bound to, who may vote on it, and what a
//! vote does to it. Storage, waiting and notification live at the edges (the authority).
//!
//! A request is bound to {chain, upstream, tool, SHA-256 of the RFC 8785 canonical arguments,
//! policy version}; its expiry is its own. An approval releases exactly one call with exactly
//! that binding: a retry with other arguments, another chain or after a policy change is another
//! request.

use sha2::{Digest, Sha256};

/// How long a request waits for its quorum when the policy names no expiry: one hour.
pub const DEFAULT_EXPIRES_IN: i64 = 3600;
/// Shortest expiry a policy may set, in seconds.
pub const MIN_EXPIRES_IN: i64 = 60;
/// Longest expiry a policy may set: one week.
pub const MAX_EXPIRES_IN: i64 = 7 * 24 * 3600;
/// Most characters of a vote's reason.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most approvers one request names.
pub const MAX_APPROVERS: usize = 32;

/// What one request is bound to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The chain of principals, root first, the caller last (`user:alice`, `agent:coder`).
    pub chain: Vec<String>,
    /// The upstream (server) name.
    pub upstream: String,
    /// The tool (or HTTP action) name.
    pub tool: String,
    /// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of the arguments.
    pub arguments_sha256: String,
    /// The version of the policy that asked for approval.
    pub policy_version: String,
}

impl Binding {
    /// The binding's key: lowercase hex SHA-256 over its members, each length-prefixed, so that
    /// no two different bindings share one (a name cannot run into the next).
    pub fn key(&self) -> String {
        self.key_for(None)
    }

    /// The key of a request whose binding `asserted_by` (a gateway run apart from the
    /// authority) asserted: distinct from the key of the same binding verified by the authority
    /// (`None`) and from any other gateway's, so that a request one gateway opened is never found,
    /// voted on as if it were, or spent by another.
    pub fn key_for(&self, asserted_by: Option<&str>) -> String {
        let mut h = Sha256::new();
        let mut put = |s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        put("mandate-approval-binding-v1");
        put(&self.chain.len().to_string());
        for p in &self.chain {
            put(p);
        }
        put(&self.upstream);
        put(&self.tool);
        put(&self.arguments_sha256);
        put(&self.policy_version);
        if let Some(gateway) = asserted_by {
            put("asserted-by");
            put(gateway);
        }
        hex(&h.finalize())
    }
}

/// Characters an approver could be misled by in text shown to them: controls, format
/// characters (zero-width, bidirectional overrides, soft hyphen), line and paragraph separators,
/// and the replacement character (the text was not valid UTF-8).
pub fn unfit_for_display(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFD}')
}

/// Lowercase hex SHA-256 of `bytes` (the arguments' canonical JSON).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for votes.
    Pending,
    /// Quorum reached: releases one call.
    Approved,
    /// Someone denied it.
    Denied,
    /// Its expiry passed before quorum.
    Expired,
    /// Withdrawn.
    Cancelled,
}

impl State {
    /// `pending`, `approved`, `denied`, `expired` or `cancelled` (as stored and shown).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
        }
    }

    /// The state a stored string names (`None` for anything else: corrupt data).
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "denied" => State::Denied,
            "expired" => State::Expired,
            "cancelled" => State::Cancelled,
            _ => return None,
        })
    }
}

/// How long a request lives, from what the policy asked: its `expires_in` within
/// [`MIN_EXPIRES_IN`]..=[`MAX_EXPIRES_IN`], or [`DEFAULT_EXPIRES_IN`].
pub fn expires_in(asked: Option<i64>) -> i64 {
    asked
        .unwrap_or(DEFAULT_EXPIRES_IN)
        .clamp(MIN_EXPIRES_IN, MAX_EXPIRES_IN)
}

/// The facts a vote is judged on.
#[derive(Debug, Clone)]
pub struct Ballot<'a> {
    /// The request's state.
    pub state: State,
    /// When it expires (unix seconds).
    pub expires_at: i64,
    /// Its chain (nobody in it votes).
    pub chain: &'a [String],
    /// Who may vote: `user:NAME` or `role:NAME`.
    pub approvers: &'a [String],
    /// Who has voted already.
    pub voted: &'a [String],
}

/// Why a vote is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteRefusal {
    /// The request is not pending any more.
    #[error("request is already {}: votes are taken only while it is pending", .0.as_str())]
    NotPending(State),
    /// The request expired.
    #[error("request expired before its quorum was reached: the agent must make the call again for a new request")]
    Expired,
    /// Only humans vote.
    #[error("{0} is not a user: only humans approve or deny (sign in as a user: --as user:NAME)")]
    NotHuman(String),
    /// The voter is in the request's chain.
    #[error(
        "{0} is in the chain that made this call and cannot vote on it: another approver must"
    )]
    InChain(String),
    /// The voter is not among the approvers.
    #[error("{voter} is not among this request's approvers ({approvers})")]
    NotNamed {
        /// Who tried.
        voter: String,
        /// Who may.
        approvers: String,
    },
    /// The voter already voted.
    #[error("{0} has already voted on this request: each approver counts once")]
    AlreadyVoted(String),
}

/// Whether `voter` (with role `role`, if any) may vote on the request: pending and not expired,
/// a user, outside the chain, named or holding a named role, not voted yet.
pub fn check_vote(
    b: &Ballot<'_>,
    voter: &str,
    role: Option<&str>,
    now: i64,
) -> Result<(), VoteRefusal> {
    if b.state == State::Expired {
        return Err(VoteRefusal::Expired);
    }
    if b.state != State::Pending {
        return Err(VoteRefusal::NotPending(b.state));
    }
    if now >= b.expires_at {
        return Err(VoteRefusal::Expired);
    }
    if !voter.starts_with("user:") {
        return Err(VoteRefusal::NotHuman(voter.to_string()));
    }
    if b.chain.iter().any(|p| p == voter) {
        return Err(VoteRefusal::InChain(voter.to_string()));
    }
    if !may_vote(b.approvers, voter, role) {
        return Err(VoteRefusal::NotNamed {
            voter: voter.to_string(),
            approvers: b.approvers.join(", "),
        });
    }
    if b.voted.iter().any(|p| p == voter) {
        return Err(VoteRefusal::AlreadyVoted(voter.to_string()));
    }
    Ok(())
}

/// Whether the approvers list names `voter` or its role (`role:admin` matches admins). Other
/// entries (a `group:` Mandate does not know) match nobody.
pub fn may_vote(approvers: &[String], voter: &str, role: Option<&str>) -> bool {
    approvers.iter().any(|a| {
        a == voter || matches!((a.strip_prefix("role:"), role), (Some(r), Some(mine)) if r == mine)
    })
}

/// The state after a vote was taken: any denial ends the request; `approvals` distinct approvals
/// (this one included) reaching `quorum` approve it.
pub fn after_vote(approve: bool, approvals: u32, quorum: u32) -> State {
    if !approve {
        State::Denied
    } else if approvals >= quorum.max(1) {
        State::Approved
    } else {
        State::Pending
    }
}

/// A request id: `apr_` and 128 random bits in base64url.
pub fn new_id(rng: &mut impl rand_core::RngCore) -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    format!(
        "apr_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// Whether `s` has the shape of a request id (what the CLI and API accept).
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("apr_").is_some_and(|r| {
        r.len() == 22
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding() -> Binding {
        Binding {
            chain: vec!["user:alice".into(), "agent:coder".into()],
            upstream: "files".into(),
            tool: "write_file".into(),
            arguments_sha256: sha256_hex(b"{\"path\":\"/repo/a\"}"),
            policy_version: "v1".into(),
        }
    }

    #[test]
    fn a_binding_key_changes_with_every_member() {
        let b = binding();
        let k = b.key();
        assert_eq!(k.len(), 64);
        let mut other = b.clone();
        other.chain.push("agent:x".into());
        assert_ne!(other.key(), k);
        let mut other = b.clone();
        other.upstream = "files2".into();
        assert_ne!(other.key(), k);
        let mut other = b.clone();
        other.tool = "write_files".into();
        assert_ne!(other.key(), k);
        let mut other = b.clone();
        other.arguments_sha256 = sha256_hex(b"{\"path\":\"/repo/b\"}");
        assert_ne!(other.key(), k);
        let mut other = b.clone();
        other.policy_version = "v2".into();
        assert_ne!(other.key(), k);
        assert_eq!(b.key(), k, "the same binding has the same key");
    }

    #[test]
    fn names_cannot_run_into_each_other_in_a_binding_key() {
        let mut a = binding();
        a.upstream = "ab".into();
        a.tool = "c".into();
        let mut b = binding();
        b.upstream = "a".into();
        b.tool = "bc".into();
        assert_ne!(a.key(), b.key());
        let mut a = binding();
        a.chain = vec!["user:a".into(), "agent:b".into()];
        let mut b = binding();
        b.chain = vec!["user:aagent:b".into()];
        assert_ne!(a.key(), b.key());
    }

    fn ballot<'a>(chain: &'a [String], approvers: &'a [String], voted: &'a [String]) -> Ballot<'a> {
        Ballot {
            state: State::Pending,
            expires_at: 1000,
            chain,
            approvers,
            voted,
        }
    }

    #[test]
    fn nobody_in_the_chain_votes_even_when_named() {
        let chain = vec!["user:alice".to_string(), "agent:coder".to_string()];
        let approvers = vec!["user:alice".to_string(), "role:approver".to_string()];
        let b = ballot(&chain, &approvers, &[]);
        assert_eq!(
            check_vote(&b, "user:alice", Some("approver"), 10),
            Err(VoteRefusal::InChain("user:alice".into()))
        );
        assert_eq!(
            check_vote(&b, "agent:coder", None, 10),
            Err(VoteRefusal::NotHuman("agent:coder".into()))
        );
        assert_eq!(check_vote(&b, "user:bob", Some("approver"), 10), Ok(()));
    }

    #[test]
    fn a_voter_is_named_or_holds_a_named_role_and_votes_once() {
        let chain = vec!["agent:coder".to_string()];
        let approvers = vec!["user:carol".to_string(), "role:approver".to_string()];
        let voted = vec!["user:carol".to_string()];
        let b = ballot(&chain, &approvers, &voted);
        assert!(matches!(
            check_vote(&b, "user:dave", None, 10),
            Err(VoteRefusal::NotNamed { .. })
        ));
        assert!(matches!(
            check_vote(&b, "user:dave", Some("admin"), 10),
            Err(VoteRefusal::NotNamed { .. })
        ));
        assert_eq!(
            check_vote(&b, "user:carol", None, 10),
            Err(VoteRefusal::AlreadyVoted("user:carol".into()))
        );
        assert_eq!(check_vote(&b, "user:dave", Some("approver"), 10), Ok(()));
        // `group:` names nobody Mandate knows.
        assert!(!may_vote(&["group:sre".into()], "user:dave", Some("sre")));
    }

    #[test]
    fn only_a_pending_request_before_its_expiry_takes_votes() {
        let chain = vec!["agent:coder".to_string()];
        let approvers = vec!["user:bob".to_string()];
        let mut b = ballot(&chain, &approvers, &[]);
        assert_eq!(
            check_vote(&b, "user:bob", None, 1000),
            Err(VoteRefusal::Expired)
        );
        for s in [State::Approved, State::Denied, State::Cancelled] {
            b.state = s;
            assert_eq!(
                check_vote(&b, "user:bob", None, 10),
                Err(VoteRefusal::NotPending(s))
            );
        }
        // Swept or not, an expired request says it expired (and what the agent must do).
        b.state = State::Expired;
        assert_eq!(
            check_vote(&b, "user:bob", None, 10),
            Err(VoteRefusal::Expired)
        );
    }

    #[test]
    fn a_denial_ends_a_request_and_approvals_count_to_the_quorum() {
        assert_eq!(after_vote(false, 5, 1), State::Denied);
        assert_eq!(after_vote(true, 1, 2), State::Pending);
        assert_eq!(after_vote(true, 2, 2), State::Approved);
        assert_eq!(after_vote(true, 1, 0), State::Approved);
    }

    #[test]
    fn expiry_is_the_policys_within_bounds() {
        assert_eq!(expires_in(None), DEFAULT_EXPIRES_IN);
        assert_eq!(expires_in(Some(5)), MIN_EXPIRES_IN);
        assert_eq!(expires_in(Some(600)), 600);
        assert_eq!(expires_in(Some(i64::MAX)), MAX_EXPIRES_IN);
    }

    #[test]
    fn ids_have_one_shape() {
        let id = new_id(&mut rand::rngs::OsRng);
        assert!(is_id(&id), "{id}");
        assert!(!is_id("apr_"));
        assert!(!is_id("apr_../../etc/passwd/aaaaaaa"));
        assert!(!is_id(&id.replace("apr_", "tok_")));
    }

    proptest! {
        #[test]
        fn states_read_back_as_written(i in 0usize..5) {
            let s = [State::Pending, State::Approved, State::Denied, State::Expired, State::Cancelled][i];
            prop_assert_eq!(State::parse(s.as_str()), Some(s));
        }

        #[test]
        fn distinct_arguments_never_share_a_binding_key(a in ".{0,40}", b in ".{0,40}") {
            prop_assume!(a != b);
            let mut x = binding();
            x.arguments_sha256 = sha256_hex(a.as_bytes());
            let mut y = binding();
            y.arguments_sha256 = sha256_hex(b.as_bytes());
            prop_assert_ne!(x.key(), y.key());
        }
    }
}
