//! The pure verification of one presentation: the `Authorization` scheme, the mandate
//! (signature, `typ`, `iss`, `aud`, time, chain shape), revocation, the DPoP binding and the
//! single use of the proof's `jti`.
//!
//! Nothing here reads a clock or the network: the caller passes the time, the issuer's keys, the
//! revocation view and the replay cache, so every refusal can be pinned by a test. Every failure
//! is a [`Refusal`] with a stable code; there is no "soft" outcome, so a caller that forgets to
//! handle a case still denies.

use mandate_core::dpop::{self, ProofCheck};
use mandate_core::revocation::RevocationSet;
use mandate_core::verify::{self, Expect, KeyLookup, VerifiedMandate};

pub use crate::replay::ReplayCache;

/// What a client sent: the two headers that carry a mandate, and the request they are for.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The `Authorization` header value: `DPoP <jwt>` or `Bearer <jwt>`.
    pub authorization: &'a str,
    /// The `DPoP` header value, if any.
    pub dpop: Option<&'a str>,
    /// The request's HTTP method.
    pub method: &'a str,
    /// The request's full URL as the client addressed it (query and fragment are ignored).
    pub url: &'a str,
}

/// Why a presentation was refused: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A stable reason code, e.g. `expired`, `dpop_replayed`, `revocations_stale`.
    pub code: &'static str,
    /// What went wrong, in words. It never contains the token or a key.
    pub message: String,
}

impl Refusal {
    /// Builds a refusal.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

/// What the verifier expects of every mandate it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The issuer URL (`iss`).
    pub issuer: &'a str,
    /// The audience this enforcement point serves; the mandate's `aud` must include it.
    pub audience: &'a str,
    /// Current time, Unix seconds.
    pub now: i64,
    /// Allowed clock difference with the issuer, in seconds.
    pub skew: i64,
}

/// The `Authorization` schemes a mandate may arrive under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Dpop,
    Bearer,
}

/// The identity of a checked DPoP proof, whose single use is still to be enforced.
#[derive(Debug, Clone)]
pub(crate) struct ProofUse {
    pub(crate) jkt: String,
    pub(crate) jti: String,
    pub(crate) iat: i64,
}

/// A presentation that passed every check except the single use of its proof.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) mandate: VerifiedMandate,
    pub(crate) proof: Option<ProofUse>,
}

/// Checks a presentation completely, recording the proof's `jti` as used only when everything
/// else passed (so a refused request cannot burn a legitimate client's proof).
pub fn check(
    p: &Presentation<'_>,
    keys: &impl KeyLookup,
    revoked: &RevocationSet,
    replay: &mut ReplayCache,
    e: Expectations<'_>,
) -> Result<VerifiedMandate, Refusal> {
    let checked = check_before_replay(p, keys, revoked, e)?;
    if let Some(proof) = &checked.proof {
        replay.use_once(&proof.jkt, &proof.jti, proof.iat, e.now)?;
    }
    Ok(checked.mandate)
}

/// Every check but the replay cache, so that the [`crate::Verifier`] can run the signature
/// checks concurrently and lock the cache only for the final, cheap insertion.
pub(crate) fn check_before_replay(
    p: &Presentation<'_>,
    keys: &impl KeyLookup,
    revoked: &RevocationSet,
    e: Expectations<'_>,
) -> Result<Checked, Refusal> {
    let (scheme, token) = parse_authorization(p.authorization)?;
    let expect = Expect {
        issuer: e.issuer,
        audience: Some(e.audience),
        now: e.now,
        skew: e.skew,
    };
    let mandate = check_mandate(token, keys, revoked, expect)?;
    let Some(cnf) = mandate.claims().cnf.as_ref() else {
        // A bearer mandate sent as DPoP is refused rather than tolerated: the client believes its
        // token is bound, and accepting it would hide a misissued token or a confused client.
        if scheme == Scheme::Dpop {
            return Err(Refusal::new(
                "dpop_scheme_for_bearer_token",
                "this mandate is not DPoP-bound: present it as \"Authorization: Bearer\"",
            ));
        }
        return Ok(Checked {
            mandate,
            proof: None,
        });
    };
    if scheme == Scheme::Bearer {
        return Err(Refusal::new(
            "bearer_use_of_dpop_bound_token",
            "this mandate is DPoP-bound: present it as \"Authorization: DPoP\" with a proof",
        ));
    }
    let proof = p.dpop.ok_or_else(|| {
        Refusal::new(
            "dpop_missing",
            "a DPoP-bound mandate needs a DPoP proof header",
        )
    })?;
    let checked = dpop::check_proof(
        proof,
        ProofCheck {
            method: p.method,
            url: p.url,
            now: e.now,
            access_token: Some(token),
        },
    )
    .map_err(|err| Refusal::new(err.code(), err.to_string()))?;
    if checked.jkt != cnf.jkt {
        return Err(Refusal::new(
            "dpop_wrong_key",
            "the DPoP proof is signed by a key other than the one the mandate is bound to",
        ));
    }
    let proof = ProofUse {
        jkt: checked.jkt,
        jti: checked.claims.jti,
        iat: checked.claims.iat,
    };
    Ok(Checked {
        mandate,
        proof: Some(proof),
    })
}

/// Checks a mandate on its own, without a presentation: signature, claims and revocation. This is
/// what the authority uses for introspection and for subject and actor tokens, where no DPoP
/// proof is presented (`expect.audience` may be `None` there).
pub fn check_mandate(
    token: &str,
    keys: &impl KeyLookup,
    revoked: &RevocationSet,
    expect: Expect<'_>,
) -> Result<VerifiedMandate, Refusal> {
    let mandate = verify::verify_mandate(token, keys, expect)
        .map_err(|err| Refusal::new(err.code(), err.to_string()))?;
    // The signing kid is part of the revocation check: revoking an issuer key must cut off every
    // mandate it signed, even though the key may still be in a cached JWKS.
    revoked
        .check(mandate.claims(), Some(mandate.kid()))
        .map_err(|r| Refusal::new(r.code(), r.to_string()))?;
    Ok(mandate)
}

/// Splits `Authorization` into its scheme (case-insensitive, RFC 9110 §11.1) and the token.
fn parse_authorization(value: &str) -> Result<(Scheme, &str), Refusal> {
    let malformed = || {
        Refusal::new(
            "malformed_authorization",
            "the Authorization header must be \"DPoP <mandate>\" or \"Bearer <mandate>\"",
        )
    };
    let (scheme, rest) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let scheme = if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else {
        return Err(malformed());
    };
    let token = rest.trim();
    // A token68 has no whitespace: anything else is two values glued together, and guessing
    // which one was meant is how parsers disagree.
    if token.is_empty() || token.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(malformed());
    }
    Ok((scheme, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_schemes_are_case_insensitive_and_strict() {
        assert_eq!(
            parse_authorization("DPoP abc").unwrap(),
            (Scheme::Dpop, "abc")
        );
        assert_eq!(
            parse_authorization("dpop  abc ").unwrap(),
            (Scheme::Dpop, "abc")
        );
        assert_eq!(
            parse_authorization("BEARER abc").unwrap(),
            (Scheme::Bearer, "abc")
        );
        for bad in [
            "",
            "DPoP",
            "DPoP ",
            "Basic abc",
            "abc",
            "DPoP a b",
            "Bearer a,b",
            "Bearerabc",
        ] {
            assert_eq!(
                parse_authorization(bad).unwrap_err().code,
                "malformed_authorization",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refusal_displays_code_then_message() {
        let r = Refusal::new("expired", "token expired");
        assert_eq!(r.to_string(), "expired: token expired");
        let as_error: &dyn std::error::Error = &r;
        assert!(as_error.source().is_none());
    }
}
