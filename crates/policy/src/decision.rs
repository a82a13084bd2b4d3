//! The decision document every policy query returns, read strictly: anything that is not exactly
//! the documented shape is a deny that says what was wrong (fail closed).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The two questions Mandate asks its policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    /// Tool calls (MCP tools, HTTP routes): `data.mandate.authz.decision`.
    Authz,
    /// Issuance and exchange of mandates: `data.mandate.delegation.decision`.
    Delegation,
}

impl Query {
    /// The Rego reference evaluated for this query.
    pub fn path(self) -> &'static str {
        match self {
            Query::Authz => "data.mandate.authz.decision",
            Query::Delegation => "data.mandate.delegation.decision",
        }
    }

    /// The package the decision lives in.
    pub fn package(self) -> &'static str {
        match self {
            Query::Authz => "data.mandate.authz",
            Query::Delegation => "data.mandate.delegation",
        }
    }
}

/// Who must approve, and how many of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Principals (`user:bob`) or roles (`role:approver`) who may approve.
    pub approvers: Vec<String>,
    /// How many distinct approvers are needed.
    pub quorum: u32,
    /// Why approval is needed, for the approver (always written, `null` when the policy gave none).
    #[serde(default)]
    pub reason: Option<String>,
    /// Seconds the request waits for its quorum (`null`: the default, one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// What the decision means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// Held until humans approve.
    Approval,
    /// Refused.
    Deny,
}

impl Outcome {
    /// `allow`, `approval` or `deny` (as audit events record it).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Approval => "approval",
            Outcome::Deny => "deny",
        }
    }
}

/// What the policy decided. Only this crate's readers build it (from a policy's result, an
/// external PDP's answer, or a failure), so nothing downstream can turn a deny into an allow.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refused; `error` is set when the policy could not decide (evaluation error, time limit,
    /// malformed result), in which case the refusal is the fail-closed default.
    Deny {
        /// Why the policy could not decide, if that is why.
        error: Option<String>,
    },
    /// Held until humans approve (wins over `allow: true`).
    NeedsApproval(Approval),
}

/// One decision: the verdict with its reasons, redactions and identity. Fields are private and
/// there is no public constructor that can allow: see [`Verdict`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    verdict: Verdict,
    reasons: Vec<String>,
    redact: Vec<String>,
    decision_id: String,
    policy_version: String,
}

impl Decision {
    /// The verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The outcome: approval wins over `allow`, and anything else that is not `allow: true` denies.
    pub fn outcome(&self) -> Outcome {
        match self.verdict {
            Verdict::Allow => Outcome::Allow,
            Verdict::Deny { .. } => Outcome::Deny,
            Verdict::NeedsApproval(_) => Outcome::Approval,
        }
    }

    /// True only for an outright allow.
    pub fn is_allow(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// Who must approve, when the verdict is [`Verdict::NeedsApproval`].
    pub fn approval(&self) -> Option<&Approval> {
        match &self.verdict {
            Verdict::NeedsApproval(a) => Some(a),
            _ => None,
        }
    }

    /// Why the policy could not decide, when that is why this is a deny.
    pub fn error(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Deny { error } => error.as_deref(),
            _ => None,
        }
    }

    /// Why, one sentence each.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// JSON pointers into the input whose values must not be logged.
    pub fn redact(&self) -> &[String] {
        &self.redact
    }

    /// Unique id of this decision (logged, and named in refusals).
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// Content hash of the policy that decided (or the external PDP's name).
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// A deny that did not come from the policy (evaluation error, timeout, bad result).
    pub fn failed(error: impl Into<String>, policy_version: &str) -> Self {
        let error = error.into();
        Decision {
            reasons: vec![format!(
                "denied because the policy could not decide: {error}"
            )],
            verdict: Verdict::Deny { error: Some(error) },
            redact: vec![],
            decision_id: new_decision_id(),
            policy_version: policy_version.to_string(),
        }
    }

    /// This decision turned into a deny with `error` (same id and version, so the refusal names
    /// the decision that was made): for a caller that cannot act on it, e.g. because its audit
    /// event could not be written. The only way to change a decision, and it can only deny.
    pub fn denied_because(&self, error: impl Into<String>) -> Self {
        let mut d = Decision::failed(error, &self.policy_version);
        d.decision_id = self.decision_id.clone();
        d
    }

    /// The same decision under the id a remote decision point gave it (OPA's `decision_id`).
    pub(crate) fn with_decision_id(mut self, id: &str) -> Self {
        self.decision_id = id.to_string();
        self
    }

    /// Reads what `query` evaluated to (`None` = undefined) into a decision; any deviation from
    /// the documented shape is a deny naming the problem.
    pub fn from_result(query: Query, result: Option<&Value>, policy_version: &str) -> Self {
        match parse(query, result) {
            Ok((allow, approval, reasons, redact)) => Decision {
                verdict: match approval {
                    Some(a) => Verdict::NeedsApproval(a),
                    None if allow => Verdict::Allow,
                    None => Verdict::Deny { error: None },
                },
                reasons,
                redact,
                decision_id: new_decision_id(),
                policy_version: policy_version.to_string(),
            },
            Err(e) => Decision::failed(e, policy_version),
        }
    }

    /// The reasons as one line, for error descriptions.
    pub fn reasons_line(&self) -> String {
        if self.reasons.is_empty() {
            "no reason given by the policy".into()
        } else {
            self.reasons.join("; ")
        }
    }
}

/// The decision document's shape (`allow`, `approval`, `reasons`, `redact`) plus its identity
/// and any `error`; `allow` is true only for an outright allow.
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("allow", &self.is_allow())?;
        m.serialize_entry("approval", &self.approval())?;
        m.serialize_entry("reasons", &self.reasons)?;
        m.serialize_entry("redact", &self.redact)?;
        m.serialize_entry("decision_id", &self.decision_id)?;
        m.serialize_entry("policy_version", &self.policy_version)?;
        if let Some(e) = self.error() {
            m.serialize_entry("error", e)?;
        }
        m.end()
    }
}

type Parsed = (bool, Option<Approval>, Vec<String>, Vec<String>);

fn parse(query: Query, result: Option<&Value>) -> Result<Parsed, String> {
    let path = query.path();
    let v = result.ok_or_else(|| {
        format!("{path} is undefined for this input (give it a `default` value in the policy)")
    })?;
    let o = v
        .as_object()
        .ok_or_else(|| format!("{path} must be an object, not {}", kind(v)))?;
    let allow = match o.get("allow") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "{path}.allow must be true or false, not {}",
                kind(other)
            ))
        }
        None => return Err(format!("{path} has no `allow` member")),
    };
    let approval = match o.get("approval") {
        None | Some(Value::Null) => None,
        Some(a) => Some(parse_approval(path, a)?),
    };
    let reasons = strings(path, "reasons", o.get("reasons"))?;
    let redact = strings(path, "redact", o.get("redact"))?;
    if let Some(bad) = redact.iter().find(|p| !p.is_empty() && !p.starts_with('/')) {
        return Err(format!(
            "{path}.redact holds {bad:?}: write JSON pointers such as /action/arguments/password"
        ));
    }
    Ok((allow, approval, reasons, redact))
}

/// Reads a decision's `approval` object (found at `path`), with the bounds every approval is
/// held to; also used on approvals a gateway run apart sends with a call it holds.
pub fn parse_approval(path: &str, a: &Value) -> Result<Approval, String> {
    let o = a
        .as_object()
        .ok_or_else(|| format!("{path}.approval must be null or an object, not {}", kind(a)))?;
    let approvers = strings(path, "approval.approvers", o.get("approvers"))?;
    if approvers.is_empty() {
        return Err(format!(
            "{path}.approval.approvers is empty: name who may approve (e.g. [\"role:approver\"])"
        ));
    }
    let quorum = match o.get("quorum") {
        None | Some(Value::Null) => 1,
        Some(q) => q
            .as_u64()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| {
                format!("{path}.approval.quorum must be a whole number from 1 to 100, not {q}")
            })? as u32,
    };
    let reason = match o.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "{path}.approval.reason must be a string, not {}",
                kind(other)
            ))
        }
    };
    let (lo, hi) = (
        mandate_core::approval::MIN_EXPIRES_IN,
        mandate_core::approval::MAX_EXPIRES_IN,
    );
    let expires_in = match o.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(e) => Some(
            e.as_i64()
                .filter(|e| (lo..=hi).contains(e))
                .ok_or_else(|| {
                    format!("{path}.approval.expires_in must be whole seconds from {lo} to {hi}, not {e}")
                })?,
        ),
    };
    if approvers.len() > mandate_core::approval::MAX_APPROVERS {
        return Err(format!(
            "{path}.approval.approvers names {} approvers; at most {} (name a role instead)",
            approvers.len(),
            mandate_core::approval::MAX_APPROVERS
        ));
    }
    Ok(Approval {
        approvers,
        quorum,
        reason,
        expires_in,
    })
}

fn strings(path: &str, member: &str, v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    format!("{path}.{member} must hold only strings, not {}", kind(x))
                })
            })
            .collect(),
        Some(other) => Err(format!(
            "{path}.{member} must be an array of strings, not {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A random UUID (version 4), the form OPA uses for decision ids.
pub fn new_decision_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(x >> 4)] as char);
        out.push(HEX[usize::from(x & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(v: Value) -> Decision {
        Decision::from_result(Query::Authz, Some(&v), "v1")
    }

    #[test]
    fn a_plain_allow_allows() {
        let d = decide(json!({"allow": true, "reasons": ["read within scope"]}));
        assert_eq!(d.outcome(), Outcome::Allow);
        assert_eq!(d.reasons(), ["read within scope"]);
        assert_eq!(d.policy_version(), "v1");
    }

    #[test]
    fn approval_overrides_allow_true() {
        let d = decide(
            json!({"allow": true, "approval": {"approvers": ["user:bob"], "quorum": 2, "reason": "deploy"}}),
        );
        assert_eq!(d.outcome(), Outcome::Approval);
        assert_eq!(d.approval().unwrap().quorum, 2);
    }

    #[test]
    fn approval_quorum_defaults_to_one() {
        let d = decide(json!({"allow": false, "approval": {"approvers": ["role:approver"]}}));
        assert_eq!(d.approval().unwrap().quorum, 1);
    }

    #[test]
    fn undefined_denies_and_says_how_to_fix() {
        let d = Decision::from_result(Query::Delegation, None, "v1");
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(d.error().unwrap().contains("default"));
    }

    #[test]
    fn every_malformed_shape_denies_with_its_reason() {
        for (v, needle) in [
            (json!(true), "must be an object"),
            (json!({}), "no `allow`"),
            (json!({"allow": "yes"}), "true or false"),
            (json!({"allow": 1}), "true or false"),
            (json!({"allow": true, "reasons": "x"}), "array of strings"),
            (json!({"allow": true, "reasons": [1]}), "only strings"),
            (
                json!({"allow": true, "redact": ["password"]}),
                "JSON pointers",
            ),
            (
                json!({"allow": true, "approval": true}),
                "null or an object",
            ),
            (
                json!({"allow": true, "approval": {"approvers": []}}),
                "is empty",
            ),
            (
                json!({"allow": true, "approval": {"approvers": ["a"], "quorum": 0}}),
                "quorum",
            ),
            (
                json!({"allow": true, "approval": {"approvers": ["a"], "quorum": 1.5}}),
                "quorum",
            ),
            (
                json!({"allow": true, "approval": {"approvers": ["a"], "reason": 3}}),
                "reason must be a string",
            ),
        ] {
            let d = decide(v.clone());
            assert_eq!(d.outcome(), Outcome::Deny, "{v}");
            assert!(!d.is_allow(), "{v}");
            let e = d.error().expect("error");
            assert!(e.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn allow_false_without_approval_is_a_deny_that_is_not_a_failure() {
        let d = decide(json!({"allow": false, "reasons": ["no"]}));
        assert_eq!(d.verdict(), &Verdict::Deny { error: None });
    }

    #[test]
    fn a_decision_can_be_turned_only_into_a_deny_keeping_its_id() {
        let d = decide(json!({"allow": true}));
        let denied = d.denied_because("the audit log refused the event");
        assert_eq!(denied.outcome(), Outcome::Deny);
        assert_eq!(denied.decision_id(), d.decision_id());
        assert_eq!(denied.error(), Some("the audit log refused the event"));
    }

    #[test]
    fn serialized_allow_is_the_verdict_not_the_policys_member() {
        let d = decide(json!({"allow": true, "approval": {"approvers": ["user:bob"]}}));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["allow"], json!(false));
        assert_eq!(v["approval"]["quorum"], json!(1));
        assert!(v.get("error").is_none());
    }

    #[test]
    fn decision_ids_are_uuid_v4_and_distinct() {
        let a = new_decision_id();
        let b = new_decision_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
