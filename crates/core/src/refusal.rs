//! Why a presented mandate is refused, as one enum every enforcement point shares: the
//! authority's own APIs, the gateway, `mandate verify`. Each code knows how it goes on the wire
//! (its HTTP status, its RFC 6750 / RFC 9449 error code, its JSON-RPC error code), so handlers
//! map refusals by calling these methods, never by comparing strings.
//!
//! The string forms ([`RefusalCode::as_str`]) are stable: they appear in `mandate verify`'s
//! verdicts, in audit events and in error descriptions.

use serde::{Serialize, Serializer};

/// JSON-RPC error codes Mandate answers with (JSON-RPC 2.0 §5.1: -32000 to -32099 are the
/// server's own).
pub mod jsonrpc {
    /// The message is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist (or is hidden from this caller).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid parameters (MCP: an unknown tool).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Something failed on Mandate's side; the call was not forwarded.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The caller is not authenticated (no mandate, or a mandate that does not verify).
    pub const UNAUTHENTICATED: i64 = -32001;
    /// The caller is authenticated but not allowed this call (scope or policy).
    pub const FORBIDDEN: i64 = -32003;
    /// The call needs human approval first.
    pub const APPROVAL_REQUIRED: i64 = -32004;
    /// Too many requests; retry later.
    pub const RATE_LIMITED: i64 = -32029;
    /// A dependency (audit log, revocation view, upstream) is unavailable; retry later.
    pub const UNAVAILABLE: i64 = -32050;

    /// The stable name of `code`, as audit events record a refusal (`invalid` for others).
    pub fn name(code: i64) -> &'static str {
        match code {
            PARSE_ERROR => "parse_error",
            INVALID_REQUEST => "invalid_request",
            METHOD_NOT_FOUND => "method_not_found",
            INVALID_PARAMS => "invalid_params",
            INTERNAL_ERROR => "internal_error",
            UNAUTHENTICATED => "unauthenticated",
            FORBIDDEN => "forbidden",
            APPROVAL_REQUIRED => "approval_required",
            RATE_LIMITED => "rate_limited",
            UNAVAILABLE => "unavailable",
            _ => "invalid",
        }
    }
}

/// `s` within RFC 6749 §5.2's `error_description` characters (%x20-21 / %x23-5B / %x5D-7E), which
/// RFC 6750 §3 also uses inside `WWW-Authenticate`: quotes become apostrophes, backslashes
/// slashes, anything else outside the set `?`. Safe inside a quoted-string.
pub fn error_description_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Why a presentation (an `Authorization` header, a mandate and its DPoP proof) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalCode {
    /// The `Authorization` header is missing.
    MissingAuthorization,
    /// The `Authorization` header is not `DPoP <token>` or `Bearer <token>`.
    MalformedAuthorization,
    /// A bearer mandate presented under the `DPoP` scheme.
    DpopSchemeForBearerToken,
    /// A DPoP-bound mandate presented as a bearer token.
    BearerUseOfDpopBoundToken,
    /// A DPoP-bound mandate without a `DPoP` header.
    DpopMissing,
    /// The DPoP proof does not parse or has the wrong shape.
    DpopMalformed,
    /// The DPoP proof is for another HTTP method.
    DpopWrongMethod,
    /// The DPoP proof is for another URL.
    DpopWrongUrl,
    /// The DPoP proof is too old or from the future.
    DpopStale,
    /// The DPoP proof's `ath` is not this mandate's hash.
    DpopBadAth,
    /// The DPoP proof is signed by a key other than the mandate's `cnf.jkt`.
    DpopWrongKey,
    /// The DPoP proof was already used.
    DpopReplayed,
    /// The replay memory is full of live proofs; refusing rather than forgetting.
    ReplayCacheFull,
    /// The store that remembers used proofs failed; refusing rather than risking a replay.
    ReplayCheckFailed,
    /// The mandate is larger than verifiers read.
    TokenTooLarge,
    /// The mandate's `alg` is not EdDSA.
    AlgNotAllowed,
    /// The signature does not verify.
    BadSignature,
    /// The mandate is not a compact JWS.
    Malformed,
    /// The mandate's `typ` is not Mandate's.
    WrongTyp,
    /// The signing key is not one of the issuer's.
    UnknownKid,
    /// The claims do not parse.
    MalformedClaims,
    /// Another issuer.
    WrongIss,
    /// Not for this audience.
    WrongAud,
    /// Past `exp`.
    Expired,
    /// Before `nbf` or `iat`.
    NotYetValid,
    /// The delegation chain does not add up.
    BadChain,
    /// The mandate itself was revoked.
    Revoked,
    /// A mandate it was delegated from was revoked.
    AncestorRevoked,
    /// A principal in its chain was revoked.
    PrincipalRevoked,
    /// Its signing key or its holder's key was revoked.
    KeyRevoked,
    /// The revocation view is older than allowed: everything is refused until it is current.
    RevocationsStale,
    /// The holder no longer exists or is disabled.
    PrincipalInactive,
    /// The holder could not be looked up (Mandate's store failed); retry later.
    LookupFailed,
}

impl RefusalCode {
    /// Every code, for tests and documentation.
    pub const ALL: [RefusalCode; 33] = [
        RefusalCode::MissingAuthorization,
        RefusalCode::MalformedAuthorization,
        RefusalCode::DpopSchemeForBearerToken,
        RefusalCode::BearerUseOfDpopBoundToken,
        RefusalCode::DpopMissing,
        RefusalCode::DpopMalformed,
        RefusalCode::DpopWrongMethod,
        RefusalCode::DpopWrongUrl,
        RefusalCode::DpopStale,
        RefusalCode::DpopBadAth,
        RefusalCode::DpopWrongKey,
        RefusalCode::DpopReplayed,
        RefusalCode::ReplayCacheFull,
        RefusalCode::ReplayCheckFailed,
        RefusalCode::TokenTooLarge,
        RefusalCode::AlgNotAllowed,
        RefusalCode::BadSignature,
        RefusalCode::Malformed,
        RefusalCode::WrongTyp,
        RefusalCode::UnknownKid,
        RefusalCode::MalformedClaims,
        RefusalCode::WrongIss,
        RefusalCode::WrongAud,
        RefusalCode::Expired,
        RefusalCode::NotYetValid,
        RefusalCode::BadChain,
        RefusalCode::Revoked,
        RefusalCode::AncestorRevoked,
        RefusalCode::PrincipalRevoked,
        RefusalCode::KeyRevoked,
        RefusalCode::RevocationsStale,
        RefusalCode::PrincipalInactive,
        RefusalCode::LookupFailed,
    ];

    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        use RefusalCode::*;
        match self {
            MissingAuthorization => "missing_authorization",
            MalformedAuthorization => "malformed_authorization",
            DpopSchemeForBearerToken => "dpop_scheme_for_bearer_token",
            BearerUseOfDpopBoundToken => "bearer_use_of_dpop_bound_token",
            DpopMissing => "dpop_missing",
            DpopMalformed => "dpop_malformed",
            DpopWrongMethod => "dpop_wrong_method",
            DpopWrongUrl => "dpop_wrong_url",
            DpopStale => "dpop_stale",
            DpopBadAth => "dpop_bad_ath",
            DpopWrongKey => "dpop_wrong_key",
            DpopReplayed => "dpop_replayed",
            ReplayCacheFull => "replay_cache_full",
            ReplayCheckFailed => "replay_check_failed",
            TokenTooLarge => "token_too_large",
            AlgNotAllowed => "alg_not_allowed",
            BadSignature => "bad_signature",
            Malformed => "malformed",
            WrongTyp => "wrong_typ",
            UnknownKid => "unknown_kid",
            MalformedClaims => "malformed_claims",
            WrongIss => "wrong_iss",
            WrongAud => "wrong_aud",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            BadChain => "bad_chain",
            Revoked => "revoked",
            AncestorRevoked => "ancestor_revoked",
            PrincipalRevoked => "principal_revoked",
            KeyRevoked => "key_revoked",
            RevocationsStale => "revocations_stale",
            PrincipalInactive => "principal_inactive",
            LookupFailed => "lookup_failed",
        }
    }

    /// The code whose string form is `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the refusal is about the DPoP proof (RFC 9449 §7.1: `invalid_dpop_proof`) rather
    /// than the mandate.
    pub fn is_about_the_proof(self) -> bool {
        use RefusalCode::*;
        matches!(
            self,
            DpopMissing
                | DpopMalformed
                | DpopWrongMethod
                | DpopWrongUrl
                | DpopStale
                | DpopBadAth
                | DpopWrongKey
                | DpopReplayed
        )
    }

    /// Whether the refusal is Mandate's own state, not the caller's fault: the caller may retry
    /// the same presentation later.
    pub fn is_unavailable(self) -> bool {
        matches!(
            self,
            RefusalCode::RevocationsStale
                | RefusalCode::ReplayCacheFull
                | RefusalCode::ReplayCheckFailed
                | RefusalCode::LookupFailed
        )
    }

    /// The HTTP status of a resource server's answer (RFC 6750 §3.1, RFC 9449 §7.1): 400 for a
    /// request that is malformed, 503 when Mandate's own state refuses, 401 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalCode::MalformedAuthorization => 400,
            c if c.is_unavailable() => 503,
            _ => 401,
        }
    }

    /// The error code in the `WWW-Authenticate` challenge (RFC 6750 §3.1, RFC 9449 §7.1), or
    /// `None` when RFC 6750 §3.1 says a request without credentials gets no error code.
    pub fn oauth_code(self) -> Option<&'static str> {
        match self {
            RefusalCode::MissingAuthorization => None,
            RefusalCode::MalformedAuthorization => Some("invalid_request"),
            c if c.is_about_the_proof() => Some("invalid_dpop_proof"),
            c if c.is_unavailable() => Some("temporarily_unavailable"),
            _ => Some("invalid_token"),
        }
    }

    /// The JSON-RPC error code of the refusal (see [`jsonrpc`]).
    pub fn jsonrpc_code(self) -> i64 {
        if self.is_unavailable() {
            jsonrpc::UNAVAILABLE
        } else {
            jsonrpc::UNAUTHENTICATED
        }
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Comparisons with the string form, for tests and logs that read codes as text.
impl PartialEq<&str> for RefusalCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for RefusalCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_are_distinct_snake_case_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for c in RefusalCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(RefusalCode::parse(s), Some(c));
        }
        assert_eq!(RefusalCode::parse("nope"), None);
    }

    #[test]
    fn wire_mappings_follow_rfc_6750_and_rfc_9449() {
        use RefusalCode::*;
        assert_eq!(MissingAuthorization.http_status(), 401);
        assert_eq!(MissingAuthorization.oauth_code(), None);
        assert_eq!(MalformedAuthorization.http_status(), 400);
        assert_eq!(MalformedAuthorization.oauth_code(), Some("invalid_request"));
        assert_eq!(Expired.http_status(), 401);
        assert_eq!(Expired.oauth_code(), Some("invalid_token"));
        assert_eq!(DpopReplayed.oauth_code(), Some("invalid_dpop_proof"));
        assert_eq!(RevocationsStale.http_status(), 503);
        assert_eq!(RevocationsStale.jsonrpc_code(), jsonrpc::UNAVAILABLE);
        assert_eq!(Revoked.jsonrpc_code(), jsonrpc::UNAUTHENTICATED);
        for c in RefusalCode::ALL {
            assert!(matches!(c.http_status(), 400 | 401 | 503), "{c}");
            assert!((-32099..=-32000).contains(&c.jsonrpc_code()), "{c}");
        }
    }

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let t = error_description_text("scope \"a\\b\" \u{e9}\n");
        assert_eq!(t, "scope 'a/b' ??");
        assert!(t.bytes().all(|b| b == 0x20
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)));
    }

    #[test]
    fn codes_compare_with_their_string_form_and_serialize_as_it() {
        assert!(RefusalCode::DpopReplayed == "dpop_replayed");
        assert_eq!(
            serde_json::to_string(&RefusalCode::KeyRevoked).unwrap(),
            "\"key_revoked\""
        );
    }
}
