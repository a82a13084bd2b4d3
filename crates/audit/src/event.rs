//! The audit event, its canonical bytes and the redaction of argument values.
//!
//! An event's leaf in the Merkle log is the canonical JSON of the event object: keys sorted (by
//! UTF-16 code units, as RFC 8785 JCS sorts them), no insignificant whitespace, strings escaped as
//! JCS escapes them. Anyone holding the event as JSON (an export line, a `show --json`) can
//! recompute the exact leaf bytes with [`canonical_json`], so verification needs no database.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix of a redacted value (the same shape as Vault's audit devices use).
pub const REDACTED_PREFIX: &str = "hmac-sha256:";

mod canonical;

pub use crate::redact::{
    is_secret_key, normalized_key, recorded_action, redact_arguments, redact_secret_keys,
    redact_secret_values, redact_value, SECRET_KEY_FRAGMENTS, SECRET_KEY_NAMES,
};
pub use canonical::{canonical_json, first_inexact_literal, rfc8785, InexactNumber};

/// One audited thing that happened. Field names are the wire names (`mandate audit show --json`,
/// exports). Optional fields are left out of the canonical form when absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Event id, unique (`evt_` + 26 lower-case base32 characters of randomness and time).
    pub id: String,
    /// When, as RFC 3339 UTC with milliseconds (`2026-11-26T01:02:03.456Z`).
    pub time: String,
    /// What kind of event (see [`kinds`]).
    pub kind: String,
    /// Who did it: the authenticated principal, or, for a refusal before authentication, the
    /// principal the request claimed to be (then `details.authenticated` is false).
    pub principal: String,
    /// The delegation chain the action ran under, root first (`user:alice`, `agent:planner`,
    /// `agent:coder`). For a mandate: its subject, every actor, and its holder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The action (`token.client_credentials`, `token.exchange`, `agent.create`, `revoke.token`,
    /// `pdp.evaluation`, ...).
    pub action: String,
    /// What the action was on: an audience, a principal, a kid, a jti, a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The policy decision, when one was taken: `allow`, `deny` or `approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Why (the policy's reasons, or the refusal's description).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Version of the policy that decided (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Id of the policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Approval request id, when the action waited for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// `ok`, or `refused` with `error` the reason code (`invalid_scope`, `unauthorized_client`...),
    /// or `failed` when the server could not complete it.
    pub result: String,
    /// The reason code of a refusal or failure (RFC 6749 error codes at the token endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The mandate the event is about (issued, exchanged from, presented, revoked): only its jti.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Everything else, per kind (scopes, audiences, lifetime, delegation reason, arguments...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    /// What the caller asserted but Mandate did not verify (for a decision asked by another
    /// enforcement point: the principal, chain and mandate it says the call runs under). Never
    /// merged into `principal` or `chain`, which hold only what was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserted: Option<Asserted>,
}

impl Event {
    /// A new event at `unix_millis`, its id made from the time and `random` (16 bytes from a
    /// CSPRNG, [`event_randomness`]): result `ok`, everything else empty.
    pub fn new(
        kind: &str,
        principal: &str,
        action: &str,
        unix_millis: i64,
        random: [u8; 16],
    ) -> Self {
        Event {
            id: new_event_id(unix_millis.max(0) as u64, random),
            time: rfc3339_millis(unix_millis),
            kind: kind.to_string(),
            principal: principal.to_string(),
            action: action.to_string(),
            result: "ok".to_string(),
            ..Event::default()
        }
    }

    /// Run under this verified chain and mandate.
    pub fn under(mut self, chain: Vec<String>, jti: Option<String>) -> Self {
        self.chain = chain;
        self.jti = jti;
        self
    }

    /// About this resource.
    pub fn on(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Refused, with its reason code and description.
    pub fn refused(mut self, code: &str, reason: &str) -> Self {
        self.result = "refused".into();
        self.error = Some(code.to_string());
        self.reasons = vec![reason.to_string()];
        self
    }

    /// Decided by a policy: the outcome (`allow`, `deny`, `approval`), the decision's id, the
    /// policy's version and its reasons.
    pub fn decided(
        mut self,
        outcome: &str,
        decision_id: &str,
        policy_version: &str,
        reasons: &[String],
    ) -> Self {
        self.decision = Some(outcome.to_string());
        self.decision_id = Some(decision_id.to_string());
        self.policy_version = Some(policy_version.to_string());
        self.reasons = reasons.to_vec();
        self
    }
}

/// Attribution a caller asserted. `by` is the authenticated caller that asserted it; the rest is
/// its word only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asserted {
    /// The authenticated principal that made the assertion.
    pub by: String,
    /// The principal the caller says acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The delegation chain the caller says the action runs under, root first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The mandate id the caller says the action was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Largest canonical size of one event. [`Event::bound`] enforces it, so that no request can
/// make the log grow by more than a few of these.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;
/// Most reasons one event keeps, and the longest each may be (in characters).
pub const MAX_REASONS: usize = 16;
/// Longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most entries a chain (verified or asserted) keeps.
pub const MAX_CHAIN: usize = 32;

/// Event kinds written by Mandate.
pub mod kinds {
    /// A mandate was issued to a principal for itself (`client_credentials`).
    pub const TOKEN_ISSUED: &str = "token.issued";
    /// A mandate was delegated (RFC 8693 token exchange).
    pub const TOKEN_EXCHANGED: &str = "token.exchanged";
    /// The token endpoint refused a request.
    pub const TOKEN_REFUSED: &str = "token.refused";
    /// A principal asked the introspection endpoint about a token (RFC 7662).
    pub const TOKEN_INTROSPECTED: &str = "token.introspected";
    /// A policy decision asked by another enforcement point (AuthZEN, OPA data API).
    pub const POLICY_DECISION: &str = "policy.decision";
    /// A revocation (agent, key, token).
    pub const REVOCATION: &str = "revocation";
    /// A principal, key, enrollment or issuer-key change through the admin API.
    pub const ADMIN_CHANGE: &str = "admin.change";
    /// An enrollment code was redeemed (an agent registered its key).
    pub const ENROLLMENT: &str = "enrollment";
    /// An admin API call was refused.
    pub const ADMIN_REFUSED: &str = "admin.refused";
    /// Another API call was refused (decision point, enrollment, revocation endpoint).
    pub const REQUEST_REFUSED: &str = "request.refused";
    /// A call through the gateway (an MCP method or an HTTP route): allowed, refused, or failed
    /// at its upstream.
    pub const TOOL_CALL: &str = "tool.call";
    /// A gateway run apart from the authority read the installation's audit HMAC key.
    pub const AUDIT_KEY_READ: &str = "audit.key_read";
    /// An approval request changed: made (`approval.requested`), voted on (`approval.vote`),
    /// decided (`approval.approved`, `approval.denied`) or expired (`approval.expired`); the
    /// call it released is the `tool.call` event with the same `approval_id`.
    pub const APPROVAL: &str = "approval";
}

/// Why an event could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The bytes are not an event.
    #[error("not an audit event: {0}")]
    Malformed(String),
}

impl Event {
    /// Reads an event from JSON (a stored body or an export line's `event`).
    pub fn parse(text: &str) -> Result<Event, EventError> {
        serde_json::from_str(text).map_err(|e| EventError::Malformed(e.to_string()))
    }

    /// Everyone the event names as verified: the principal and the whole chain, deduplicated,
    /// in order.
    pub fn parties(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::with_capacity(self.chain.len() + 1);
        std::iter::once(&self.principal)
            .chain(self.chain.iter())
            .filter(|p| !p.is_empty() && seen.insert(p.as_str()))
            .cloned()
            .collect()
    }

    /// Everyone the event names only on a caller's word (see [`Asserted`]) and not as verified,
    /// deduplicated, in order.
    pub fn asserted_parties(&self) -> Vec<String> {
        let Some(a) = &self.asserted else {
            return vec![];
        };
        let mut seen: std::collections::HashSet<&str> = std::iter::once(self.principal.as_str())
            .chain(self.chain.iter().map(String::as_str))
            .collect();
        a.principal
            .iter()
            .chain(a.chain.iter())
            .filter(|p| !p.is_empty() && seen.insert(p.as_str()))
            .cloned()
            .collect()
    }

    /// Whether every bound but the total size already holds (the common case, checked without
    /// copying anything): reasons, chains and the short fields within their limits.
    pub fn within_field_bounds(&self) -> bool {
        let short = |s: &str, max: usize| s.len() <= max || s.chars().count() <= max;
        self.reasons.len() <= MAX_REASONS
            && self.reasons.iter().all(|r| short(r, MAX_REASON_CHARS))
            && [&self.resource, &self.error, &self.jti]
                .into_iter()
                .flatten()
                .all(|s| short(s, 512))
            && short(&self.principal, 200)
            && short(&self.action, 100)
            && self.chain.len() <= MAX_CHAIN
            && self.chain.iter().all(|p| short(p, 200))
            && self.asserted.as_ref().is_none_or(|a| {
                a.chain.len() <= MAX_CHAIN
                    && a.chain
                        .iter()
                        .chain(a.principal.iter())
                        .chain(a.jti.iter())
                        .all(|p| short(p, 200))
            })
    }

    /// Enforces [`MAX_EVENT_BYTES`] and the other bounds: reasons are capped in number and length,
    /// chains in length, and, while the event is still too large, its largest `details` values
    /// are replaced by `{"omitted": ..., "bytes": n, "hmac": ...}` (their HMAC under `key`, so a
    /// known value can still be matched). Returns whether anything was cut; if so,
    /// `details.bounded` says how large the event was.
    pub fn bound(&mut self, key: &[u8]) -> bool {
        let before = self.canonical().len();
        let mut cut = false;
        if self.reasons.len() > MAX_REASONS {
            self.reasons.truncate(MAX_REASONS);
            cut = true;
        }
        for r in &mut self.reasons {
            cut |= truncate_chars(r, MAX_REASON_CHARS);
        }
        for s in [
            &mut self.resource,
            &mut self.error,
            &mut self.jti,
            &mut self.decision,
            &mut self.policy_version,
            &mut self.decision_id,
            &mut self.approval_id,
        ]
        .into_iter()
        .flatten()
        {
            cut |= truncate_chars(s, 512);
        }
        cut |= truncate_chars(&mut self.result, 64);
        cut |= truncate_chars(&mut self.principal, 200);
        cut |= truncate_chars(&mut self.action, 100);
        if self.chain.len() > MAX_CHAIN {
            self.chain.truncate(MAX_CHAIN);
            cut = true;
        }
        if let Some(a) = &mut self.asserted {
            if a.chain.len() > MAX_CHAIN {
                a.chain.truncate(MAX_CHAIN);
                cut = true;
            }
            for p in a
                .chain
                .iter_mut()
                .chain(a.principal.iter_mut())
                .chain(a.jti.iter_mut())
            {
                cut |= truncate_chars(p, 200);
            }
        }
        for p in &mut self.chain {
            cut |= truncate_chars(p, 200);
        }
        // The mark goes in first, so that what it adds counts below.
        if cut || self.canonical().len() > MAX_EVENT_BYTES {
            cut = true;
            self.details.insert(
                "bounded".into(),
                serde_json::json!({ "original_bytes": before }),
            );
        }
        // Still too large: the largest `details` values go first (replaced by their size and
        // HMAC), each measured once, largest first, as long as replacing one makes it smaller.
        // Linear in the event's size: a caller who can write many members (a gateway appending
        // events) must not be able to make this quadratic.
        let mut size = self.canonical().len();
        if size > MAX_EVENT_BYTES {
            let mut members: Vec<(String, usize)> = self
                .details
                .iter()
                .filter(|(k, v)| !is_omitted(v) && k.as_str() != "bounded")
                .map(|(k, v)| (k.clone(), canonical_json(v).len()))
                .collect();
            members.sort_by_key(|m| std::cmp::Reverse(m.1));
            for (k, n) in members {
                if size <= MAX_EVENT_BYTES || n <= OMITTED_BYTES {
                    break;
                }
                let omitted = omitted(key, &self.details[&k], n);
                size = (size + canonical_json(&omitted).len()).saturating_sub(n);
                self.details.insert(k, omitted);
            }
            size = self.canonical().len();
        }
        // Still too large (many small members, or long keys): the details are kept as one HMAC.
        if size > MAX_EVENT_BYTES {
            let mut rest = std::mem::take(&mut self.details);
            rest.remove("bounded");
            let all = Value::Object(rest);
            let n = canonical_json(&all).len();
            let members = all.as_object().map_or(0, |o| o.len());
            let mut whole = omitted(key, &all, n);
            whole["members"] = members.into();
            self.details.insert(
                "bounded".into(),
                serde_json::json!({ "original_bytes": before }),
            );
            self.details.insert("omitted_details".into(), whole);
            size = self.canonical().len();
        }
        // Then the reasons and the chains are shortened (each bounded in number and length
        // above, so this ends within a few dozen steps), until it fits.
        while size > MAX_EVENT_BYTES {
            if let Some(r) = self
                .reasons
                .iter_mut()
                .max_by_key(|r| r.len())
                .filter(|r| r.len() > 64)
            {
                let half = r.chars().count() / 2;
                truncate_chars(r, half);
            } else {
                let asserted = self.asserted.as_mut().map(|a| &mut a.chain);
                let longest = [Some(&mut self.chain), asserted]
                    .into_iter()
                    .flatten()
                    .max_by_key(|c| c.len())
                    .filter(|c| c.len() > 1);
                match longest {
                    Some(c) => {
                        let keep = c.len() / 2;
                        c.truncate(keep);
                    }
                    None => break,
                }
            }
            size = self.canonical().len();
        }
        cut
    }
}

/// About the size of an `omitted` stand-in: values no larger are kept (replacing them would not
/// make the event smaller).
const OMITTED_BYTES: usize = 192;

/// The stand-in for a value left out of an event: its size and its HMAC.
fn omitted(key: &[u8], v: &Value, bytes: usize) -> Value {
    serde_json::json!({
        "omitted": "over the audit event size limit",
        "bytes": bytes,
        "hmac": redact_value(key, v),
    })
}

fn is_omitted(v: &Value) -> bool {
    v.get("omitted").is_some() && v.get("hmac").is_some()
}

/// Cuts `s` to at most `max` characters (marking the cut with `…`); returns whether it did.
fn truncate_chars(s: &mut String, max: usize) -> bool {
    match s.char_indices().nth(max) {
        Some((i, _)) => {
            s.truncate(i);
            s.push('…');
            true
        }
        None => false,
    }
}

/// 16 bytes for [`Event::new`] from the thread's CSPRNG (ChaCha, seeded and periodically reseeded
/// from the operating system): an id needs unpredictable bits, not a system call per event.
pub fn event_randomness() -> [u8; 16] {
    rand::Rng::gen(&mut rand::thread_rng())
}

/// A new event id: `evt_` + 26 base32 characters (48 bits of milliseconds, then 82 random bits),
/// so ids sort roughly by time. `random` must come from a CSPRNG.
pub fn new_event_id(unix_millis: u64, random: [u8; 16]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bits: u128 = u128::from(unix_millis & 0xffff_ffff_ffff) << 80;
    bits |= u128::from_be_bytes(random) >> 48;
    let mut out = String::with_capacity(30);
    out.push_str("evt_");
    for i in (0..26).rev() {
        let idx = ((bits >> (i * 5)) & 31) as usize;
        out.push(ALPHABET[idx] as char);
    }
    out
}

/// RFC 3339 UTC time with milliseconds from unix milliseconds (civil-from-days, no clock read).
pub fn rfc3339_millis(unix_millis: i64) -> String {
    let secs = unix_millis.div_euclid(1000);
    let ms = unix_millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn sample() -> Event {
        Event {
            id: "evt_1".into(),
            time: "2026-11-26T01:02:03.456Z".into(),
            kind: kinds::TOKEN_EXCHANGED.into(),
            principal: "agent:planner".into(),
            chain: vec![
                "user:alice".into(),
                "agent:planner".into(),
                "agent:coder".into(),
            ],
            action: "token.exchange".into(),
            resource: Some("github".into()),
            decision: Some("allow".into()),
            result: "ok".into(),
            jti: Some("j1".into()),
            ..Event::default()
        }
    }

    #[test]
    fn unknown_fields_are_refused_when_reading_an_event_back() {
        let mut v: Value = serde_json::from_str(&sample().canonical()).unwrap();
        v["extra"] = json!(1);
        assert!(Event::parse(&v.to_string()).is_err());
    }

    #[test]
    fn parties_are_the_principal_and_the_chain_without_repeats() {
        assert_eq!(
            sample().parties(),
            ["agent:planner", "user:alice", "agent:coder"]
        );
    }

    #[test]
    fn redaction_is_a_keyed_hmac_that_matches_a_known_value() {
        let key = b"installation key";
        let a = redact_value(key, &json!("hunter2"));
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 64, "{a}");
        assert_eq!(a, redact_value(key, &json!("hunter2")));
        assert_ne!(a, redact_value(b"other key", &json!("hunter2")));
        assert_ne!(a, redact_value(key, &json!("hunter3")));
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        assert_eq!(
            redact_value(b"Jefe", &json!("what do ya want for nothing?")),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn redaction_replaces_exactly_the_policy_paths_under_the_arguments() {
        let key = b"k";
        let mut args = json!({"repo": "x", "api~token": "s1", "a/b": {"password": "s2"}});
        redact_arguments(
            key,
            &mut args,
            &[
                "/action/arguments/api~0token".into(),
                "/action/arguments/a~1b/password".into(),
                "/action/arguments/missing".into(),
                "/principal".into(),
            ],
        );
        assert_eq!(args["repo"], "x");
        assert_eq!(args["api~token"], redact_value(key, &json!("s1")));
        assert_eq!(args["a/b"]["password"], redact_value(key, &json!("s2")));
    }

    #[test]
    fn redaction_fails_closed_on_the_whole_arguments_or_a_bad_pointer() {
        let key = b"k";
        for path in [
            "/action/arguments",
            "/action/arguments/bad~2",
            "not a pointer",
        ] {
            let mut args = json!({"password": "s"});
            redact_arguments(key, &mut args, &[path.to_string()]);
            assert!(
                args.as_str()
                    .is_some_and(|s| s.starts_with(REDACTED_PREFIX)),
                "{path}: {args}"
            );
        }
        let mut args = json!({"password": "s"});
        redact_arguments(key, &mut args, &["/action/argumentsX".into()]);
        assert_eq!(args, json!({"password": "s"}));
    }

    #[test]
    fn a_path_above_the_arguments_redacts_them_whole() {
        // Found by the `audit` fuzz target (FUZZING.md): the policy input's `/action` holds
        // the arguments, but redacting it left them in the clear.
        let key = b"k";
        for path in ["/action", ""] {
            let mut args = json!({"password": "s"});
            redact_arguments(key, &mut args, &[path.to_string()]);
            assert_eq!(
                args,
                json!(redact_value(key, &json!({"password": "s"}))),
                "{path:?}"
            );
        }
        // Not above them: other members of the action, or a key that merely starts the same.
        for path in ["/act", "/action/tool", "/actionX", "/"] {
            let mut args = json!({"password": "s"});
            redact_arguments(key, &mut args, &[path.to_string()]);
            assert_eq!(args, json!({"password": "s"}), "{path:?}");
        }
    }

    #[test]
    fn asserted_parties_are_kept_apart_from_verified_ones() {
        let mut e = sample();
        e.asserted = Some(Asserted {
            by: "agent:pep".into(),
            principal: Some("agent:coder".into()),
            chain: vec!["user:admin".into(), "agent:coder".into(), "agent:x".into()],
            jti: Some("j9".into()),
        });
        assert_eq!(e.parties(), ["agent:planner", "user:alice", "agent:coder"]);
        assert_eq!(e.asserted_parties(), ["user:admin", "agent:x"]);
        let c = e.canonical();
        assert_eq!(Event::parse(&c).unwrap(), e);
        // Without an assertion the canonical form is what it always was.
        assert!(!sample().canonical().contains("asserted"));
    }

    #[test]
    fn parties_of_a_long_chain_are_found_in_linear_time() {
        let mut e = sample();
        e.chain = (0..200_000).map(|i| format!("agent:a{i}")).collect();
        let t = std::time::Instant::now();
        assert_eq!(e.parties().len(), 200_001);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn an_oversized_event_is_bounded_and_says_so() {
        let key = b"k";
        let mut e = sample();
        e.reasons = vec!["r".repeat(10_000); 100];
        e.chain = (0..1_000).map(|i| format!("agent:a{i}")).collect();
        e.details
            .insert("arguments".into(), json!({"blob": "x".repeat(100_000)}));
        e.details.insert("small".into(), json!("kept"));
        assert!(e.bound(key));
        let c = e.canonical();
        assert!(c.len() <= MAX_EVENT_BYTES, "{}", c.len());
        assert_eq!(e.reasons.len(), MAX_REASONS);
        assert_eq!(e.chain.len(), MAX_CHAIN);
        assert_eq!(e.details["small"], "kept");
        assert_eq!(
            e.details["arguments"]["hmac"],
            redact_value(key, &json!({"blob": "x".repeat(100_000)}))
        );
        assert!(e.details["bounded"]["original_bytes"].as_u64().unwrap() > 1_000_000);
        // A small event is left exactly as it was.
        let mut s = sample();
        assert!(!s.bound(key));
        assert_eq!(s, sample());
    }

    #[test]
    fn many_small_or_middling_details_members_are_bounded_too() {
        // A gateway appending events writes `details` itself: thousands of members each under
        // the size a stand-in takes (64 bytes), or just over it (65 to 130), must still fit.
        let key = b"k";
        for width in [10, 70, 120] {
            let mut e = sample();
            for i in 0..13_000 {
                e.details.insert(format!("m{i}"), json!("v".repeat(width)));
            }
            assert!(e.bound(key));
            let c = e.canonical();
            assert!(c.len() <= MAX_EVENT_BYTES, "width {width}: {}", c.len());
            assert!(e.details["bounded"]["original_bytes"].as_u64().unwrap() > 100_000);
            assert_eq!(
                e.details["omitted_details"]["members"], 13_000,
                "width {width}"
            );
        }
    }

    #[test]
    fn caller_written_identifiers_are_bounded() {
        let key = b"k";
        let mut e = sample();
        e.policy_version = Some("p".repeat(100_000));
        e.decision_id = Some("d".repeat(100_000));
        e.approval_id = Some("a".repeat(100_000));
        e.decision = Some("x".repeat(100_000));
        e.result = "r".repeat(1_000);
        assert!(e.bound(key));
        assert!(e.canonical().len() <= MAX_EVENT_BYTES);
        assert!(e.policy_version.unwrap().chars().count() <= 513);
        assert!(e.result.chars().count() <= 65);
    }

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let key = b"k";
        let mut v = json!({
            "repo": "x",
            "nested": {"password": "p1", "deeper": [{"API_KEY": "p2"}, {"ok": 1}]},
            "list": [{"client_secret": {"a": 1}}],
            "headers": {"Authorization": "Bearer a.b.c", "Cookie": "s=1", "x-access-key": "k"},
            "privateKey": "pk",
            "pass_word": "pw",
        });
        redact_secret_keys(key, &mut v, &SECRET_KEY_FRAGMENTS);
        assert_eq!(v["repo"], "x");
        assert_eq!(v["nested"]["password"], redact_value(key, &json!("p1")));
        assert_eq!(
            v["nested"]["deeper"][0]["API_KEY"],
            redact_value(key, &json!("p2"))
        );
        assert_eq!(v["nested"]["deeper"][1]["ok"], 1);
        assert_eq!(
            v["list"][0]["client_secret"],
            redact_value(key, &json!({"a": 1}))
        );
        // Already redacted values are not hashed twice.
        let once = v.clone();
        redact_secret_keys(key, &mut v, &SECRET_KEY_FRAGMENTS);
        assert_eq!(v, once);
    }

    #[test]
    fn event_ids_are_unique_prefixed_and_sort_by_time() {
        let a = new_event_id(1_000, [0xff; 16]);
        let b = new_event_id(1_001, [0; 16]);
        assert!(a.starts_with("evt_") && a.len() == 30, "{a}");
        assert!(a < b);
        assert_ne!(new_event_id(5, [1; 16]), new_event_id(5, [2; 16]));
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_654_923_456),
            "2026-11-26T01:02:03.456Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn secret_keys_match_through_case_separators_compatibility_forms_and_look_alikes() {
        for k in [
            "password",
            "PASS_WORD",
            "x-api-key",
            "p\u{0430}ssword",
            "\u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff57}\u{ff4f}\u{ff52}\u{ff44}",
            "pass\u{200b}word",
            "auth",
            "PIN",
            "ssh_key",
            "card-number",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["author", "spinner", "monkey", "keyboard", "repo", "path"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn secret_values_are_replaced_wherever_they_are_and_only_they() {
        let key = b"k";
        let mut v = json!({"a": ["keep", "SECRET-1"], "b": {"c": "SECRET-2"}, "d": 3});
        redact_secret_values(key, &mut v, &|s: &str| s.starts_with("SECRET"));
        assert_eq!(v["a"][0], "keep");
        assert!(v["a"][1].as_str().unwrap().starts_with(REDACTED_PREFIX));
        assert!(v["b"]["c"].as_str().unwrap().starts_with(REDACTED_PREFIX));
        assert_eq!(v["d"], 3);
        // Idempotent: an HMAC is not redacted again.
        let once = v.clone();
        redact_secret_values(key, &mut v, &|_| true);
        assert_eq!(v["b"]["c"], once["b"]["c"]);
    }

    #[test]
    fn the_builder_fills_identity_and_outcome_fields() {
        let ev = Event::new(
            "request.refused",
            "agent:coder",
            "pdp.data",
            951_782_400_000,
            [7; 16],
        )
        .under(
            vec!["user:alice".into(), "agent:coder".into()],
            Some("j1".into()),
        )
        .on("data/mandate")
        .refused("insufficient_scope", "needs mandate:pdp");
        assert!(ev.id.starts_with("evt_"), "{}", ev.id);
        assert_eq!(ev.time, "2000-02-29T00:00:00.000Z");
        assert_eq!(ev.result, "refused");
        assert_eq!(ev.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(ev.reasons, ["needs mandate:pdp"]);
        assert_eq!(ev.chain.len(), 2);
        let d = Event::new("policy.decision", "agent:pep", "pdp.evaluation", 0, [1; 16]).decided(
            "deny",
            "d-1",
            "sha256:x",
            &["no".to_string()],
        );
        assert_eq!(d.result, "ok");
        assert_eq!(d.decision.as_deref(), Some("deny"));
        assert_eq!(d.decision_id.as_deref(), Some("d-1"));
        assert_eq!(d.reasons, ["no"]);
    }
}
