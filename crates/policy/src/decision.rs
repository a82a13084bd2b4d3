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
pub struct Approval {
    /// Principals (`user:bob`) or roles (`role:approver`) who may approve.
    pub approvers: Vec<String>,
    /// How many distinct approvers are needed.
    pub quorum: u32,
    /// Why approval is needed, for the approver (always written, `null` when the policy gave none).
    #[serde(default)]
    pub reason: Option<String>,
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

/// One decision, as returned by the policy plus its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the policy allows the action outright.
    pub allow: bool,
    /// Set when the action needs human approval; it then overrides `allow`.
    pub approval: Option<Approval>,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
    /// JSON pointers into the input whose values must not be logged.
    pub redact: Vec<String>,
    /// Unique id of this decision (logged, and named in refusals).
    pub decision_id: String,
    /// Content hash of the policy that decided (or the external PDP's name).
    pub policy_version: String,
    /// Set when the decision is a deny because evaluation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decision {
    /// The outcome: approval wins over `allow`, and anything else that is not `allow: true` denies.
    pub fn outcome(&self) -> Outcome {
        if self.approval.is_some() {
            Outcome::Approval
        } else if self.allow && self.error.is_none() {
            Outcome::Allow
        } else {
            Outcome::Deny
        }
    }

    /// A deny that did not come from the policy (evaluation error, timeout, bad result).
    pub fn failed(error: impl Into<String>, policy_version: &str) -> Self {
        let error = error.into();
        Decision {
            allow: false,
            approval: None,
            reasons: vec![format!(
                "denied because the policy could not decide: {error}"
            )],
            redact: vec![],
            decision_id: new_decision_id(),
            policy_version: policy_version.to_string(),
            error: Some(error),
        }
    }

    /// Reads what `query` evaluated to (`None` = undefined) into a decision; any deviation from
    /// the documented shape is a deny naming the problem.
    pub fn from_result(query: Query, result: Option<&Value>, policy_version: &str) -> Self {
        match parse(query, result) {
            Ok((allow, approval, reasons, redact)) => Decision {
                allow,
                approval,
                reasons,
                redact,
                decision_id: new_decision_id(),
                policy_version: policy_version.to_string(),
                error: None,
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

fn parse_approval(path: &str, a: &Value) -> Result<Approval, String> {
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
    Ok(Approval {
        approvers,
        quorum,
        reason,
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
        assert_eq!(d.reasons, ["read within scope"]);
        assert_eq!(d.policy_version, "v1");
    }

    #[test]
    fn approval_overrides_allow_true() {
        let d = decide(
            json!({"allow": true, "approval": {"approvers": ["user:bob"], "quorum": 2, "reason": "deploy"}}),
        );
        assert_eq!(d.outcome(), Outcome::Approval);
        assert_eq!(d.approval.unwrap().quorum, 2);
    }

    #[test]
    fn approval_quorum_defaults_to_one() {
        let d = decide(json!({"allow": false, "approval": {"approvers": ["role:approver"]}}));
        assert_eq!(d.approval.unwrap().quorum, 1);
    }

    #[test]
    fn undefined_denies_and_says_how_to_fix() {
        let d = Decision::from_result(Query::Delegation, None, "v1");
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(d.error.unwrap().contains("default"));
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
            assert!(!d.allow, "{v}");
            let e = d.error.expect("error");
            assert!(e.contains(needle), "{v}: {e}");
        }
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
