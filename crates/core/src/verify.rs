//! Verification of mandates: signature by a known issuer key, `typ`, `iss`, `aud`, time window
//! and the internal consistency of the delegation chain.
//!
//! A [`VerifiedMandate`] can only be obtained from [`verify_mandate`], so any function that takes
//! one knows these checks passed. Revocation is not checked here: it needs state, and is layered
//! on top by the verifier crate.

use std::collections::HashMap;

use crate::claims::{MandateClaims, MANDATE_TYP, MAX_CHAIN_DEPTH};
use crate::jws::{Jws, JwsError};
use crate::keys::PublicKey;
use crate::refusal::RefusalCode;

/// Allowed clock difference between issuer and verifier, in seconds.
pub const DEFAULT_SKEW: i64 = 30;

/// Why a mandate was refused. Each variant has a stable reason code ([`VerifyError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed Ed25519 compact JWS.
    #[error("{0}")]
    Jws(#[from] JwsError),
    /// The header `typ` is not `at+jwt`.
    #[error("token type {0:?} is not a mandate (expected \"at+jwt\")")]
    Typ(String),
    /// No `kid` in the header.
    #[error("token header has no kid")]
    MissingKid,
    /// The `kid` is not one of the issuer's keys.
    #[error("token is signed by an unknown key (kid not in the issuer's JWKS)")]
    UnknownKid,
    /// The claims are not a mandate's.
    #[error("token claims are not a mandate's: {0}")]
    Claims(String),
    /// `iss` is not the expected issuer.
    #[error("token was issued by {0:?}, not by this issuer")]
    Issuer(String),
    /// `aud` does not include the expected audience.
    #[error("token is not meant for audience {0:?}")]
    Audience(String),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// The chain is longer than allowed or does not add up.
    #[error("token delegation chain is invalid: {0}")]
    Chain(String),
}

impl VerifyError {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> RefusalCode {
        match self {
            VerifyError::Jws(JwsError::TooLarge(_)) => RefusalCode::TokenTooLarge,
            VerifyError::Jws(JwsError::Algorithm(_)) => RefusalCode::AlgNotAllowed,
            VerifyError::Jws(JwsError::Signature) => RefusalCode::BadSignature,
            VerifyError::Jws(_) => RefusalCode::Malformed,
            VerifyError::Typ(_) => RefusalCode::WrongTyp,
            VerifyError::MissingKid | VerifyError::UnknownKid => RefusalCode::UnknownKid,
            VerifyError::Claims(_) => RefusalCode::MalformedClaims,
            VerifyError::Issuer(_) => RefusalCode::WrongIss,
            VerifyError::Audience(_) => RefusalCode::WrongAud,
            VerifyError::Expired => RefusalCode::Expired,
            VerifyError::NotYetValid => RefusalCode::NotYetValid,
            VerifyError::Chain(_) => RefusalCode::BadChain,
        }
    }
}

/// Looks up an issuer key by `kid`.
pub trait KeyLookup {
    /// The key with this id, if known.
    fn key(&self, kid: &str) -> Option<&PublicKey>;
}

impl KeyLookup for HashMap<String, PublicKey> {
    fn key(&self, kid: &str) -> Option<&PublicKey> {
        self.get(kid)
    }
}

/// What the verifier expects of a mandate.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The issuer URL.
    pub issuer: &'a str,
    /// The audience the verifier serves; `None` skips the check (the issuer reading its own tokens).
    pub audience: Option<&'a str>,
    /// Current time.
    pub now: i64,
    /// Allowed clock skew in seconds.
    pub skew: i64,
}

/// A mandate whose signature, issuer, audience, lifetime and chain shape have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedMandate {
    claims: MandateClaims,
    kid: String,
}

impl VerifiedMandate {
    /// The verified claims.
    pub fn claims(&self) -> &MandateClaims {
        &self.claims
    }

    /// The issuer key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Takes the claims out.
    pub fn into_claims(self) -> MandateClaims {
        self.claims
    }
}

/// Verifies a mandate against the issuer's keys.
pub fn verify_mandate(
    token: &str,
    keys: &impl KeyLookup,
    expect: Expect<'_>,
) -> Result<VerifiedMandate, VerifyError> {
    let jws = Jws::decode(token)?;
    match jws.header.typ.as_deref() {
        Some(t)
            if t.eq_ignore_ascii_case(MANDATE_TYP)
                || t.eq_ignore_ascii_case("application/at+jwt") => {}
        other => return Err(VerifyError::Typ(other.unwrap_or("").to_string())),
    }
    let kid = jws.header.kid.as_deref().ok_or(VerifyError::MissingKid)?;
    let key = keys.key(kid).ok_or(VerifyError::UnknownKid)?;
    jws.verify(key)?;
    let claims: MandateClaims = serde_json::from_slice(jws.unverified_payload())
        .map_err(|e| VerifyError::Claims(e.to_string()))?;
    check_claims(&claims, expect)?;
    Ok(VerifiedMandate {
        claims,
        kid: kid.to_string(),
    })
}

fn check_claims(c: &MandateClaims, expect: Expect<'_>) -> Result<(), VerifyError> {
    if c.iss != expect.issuer {
        return Err(VerifyError::Issuer(c.iss.clone()));
    }
    if let Some(aud) = expect.audience {
        if !c.aud.contains(aud) {
            return Err(VerifyError::Audience(aud.to_string()));
        }
    }
    if c.exp <= expect.now - expect.skew {
        return Err(VerifyError::Expired);
    }
    if c.nbf > expect.now + expect.skew || c.iat > expect.now + expect.skew {
        return Err(VerifyError::NotYetValid);
    }
    check_chain(c)
}

/// Checks that `mandate`, `act` and `client_id` tell the same story.
pub fn check_chain(c: &MandateClaims) -> Result<(), VerifyError> {
    let m = &c.mandate;
    let bad = |why: &str| Err(VerifyError::Chain(why.to_string()));
    if m.depth > MAX_CHAIN_DEPTH || m.max_depth > MAX_CHAIN_DEPTH {
        return bad("deeper than the hard limit");
    }
    if m.depth > m.max_depth {
        return bad("depth exceeds max_depth");
    }
    // A forwarded mandate also names the mandate it was minted under (see `MandateInfo`).
    if m.parents.len() != m.depth as usize + usize::from(m.forwarded) {
        return bad("parents do not match depth");
    }
    let actors = c.act.as_ref().map_or(0, |a| a.len());
    if actors != m.depth as usize {
        return bad("act nesting does not match depth");
    }
    let holder = c.act.as_ref().map_or(c.sub.as_str(), |a| a.sub.as_str());
    if holder != c.client_id {
        return bad("client_id is not the current actor");
    }
    // Everyone the chain names is a principal (`user:NAME` / `agent:NAME`, printable by
    // construction), and appears once: the issuer never makes anything else, so anything else
    // was not made by it and must not reach a policy, a log or an operator's terminal.
    let chain = c.chain();
    let may_act = c.may_act.as_ref().map(|m| m.sub.as_str());
    if chain
        .iter()
        .copied()
        .chain(may_act)
        .any(|p| p.parse::<crate::principal::PrincipalName>().is_err())
    {
        return bad("a name in the chain is not a principal");
    }
    let mut seen = std::collections::HashSet::with_capacity(chain.len());
    if !chain.iter().all(|p| seen.insert(*p)) {
        return bad("a principal appears twice in the chain");
    }
    Ok(())
}
