//! The pure verification of one presentation: the `Authorization` scheme, the mandate
//! (signature, `typ`, `iss`, `aud`, time, chain shape), revocation, the DPoP binding and the
//! single use of the proof's `jti`.
//!
//! Nothing here reads a clock or the network: the caller passes the time, the issuer's keys, the
//! revocation view and the replay cache, so every refusal can be pinned by a test. Every failure
//! is a [`Refusal`] with a stable code; there is no "soft" outcome, so a caller that forgets to
//! handle a case still denies.

use std::future::Future;
use std::pin::Pin;

use mandate_core::dpop::{self, ProofCheck};
use mandate_core::revocation::RevocationSet;
use mandate_core::verify::{self, Expect, KeyLookup, VerifiedMandate};
pub use mandate_core::RefusalCode;

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
    /// The reason, e.g. `expired`, `dpop_replayed`, `revocations_stale`; it knows its HTTP
    /// status, OAuth and JSON-RPC codes.
    pub code: RefusalCode,
    /// What went wrong, in words. It never contains the token or a key.
    pub message: String,
}

impl Refusal {
    /// Builds a refusal.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
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

/// A DPoP proof that checked out (signature, `htm`, `htu`, `iat`, `ath`, bound to the mandate's
/// `cnf.jkt`): what its single use is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key (the mandate's `cnf.jkt`).
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
}

impl CheckedProof {
    /// Until when a proof with this `iat` could still be accepted by some verifier (so until
    /// when its use must be remembered).
    pub fn remember_until(&self) -> i64 {
        self.iat
            .saturating_add(dpop::MAX_AGE)
            .saturating_add(dpop::MAX_FUTURE)
    }
}

/// A presentation that passed every check, with its proof.
#[derive(Debug)]
pub struct Presented {
    /// The verified mandate.
    pub mandate: VerifiedMandate,
    /// The DPoP proof it came with (`None` for a bearer mandate).
    pub proof: Option<CheckedProof>,
}

/// A presentation that passed every check except the single use of its proof: spend it with
/// [`Unspent::spend`] before acting on it.
#[derive(Debug)]
#[must_use = "an unspent presentation has not been checked for replay"]
pub struct Unspent(Presented);

impl Unspent {
    /// Records the proof as used in `guard` (refusing a replay), then hands over the presentation.
    pub async fn spend(self, guard: &dyn ReplayGuard, now: i64) -> Result<Presented, Refusal> {
        if let Some(proof) = &self.0.proof {
            guard.use_once(proof, now).await?;
        }
        Ok(self.0)
    }

    /// [`Unspent::spend`] with an in-memory cache, without a runtime.
    pub fn spend_in(self, cache: &mut ReplayCache, now: i64) -> Result<Presented, Refusal> {
        if let Some(p) = &self.0.proof {
            cache.use_once(&p.jkt, &p.jti, p.iat, now)?;
        }
        Ok(self.0)
    }
}

/// A boxed future, as [`ReplayGuard`] returns (object-safe without a macro crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the single use of DPoP proofs is enforced: the in-memory [`MemoryReplay`] of one
/// process, or a durable store shared by every node (the authority's database).
pub trait ReplayGuard: Send + Sync {
    /// Records `proof` as used at `now`; refuses it (`dpop_replayed`) if it was used before, and
    /// fails closed on any error of its own.
    fn use_once<'a>(
        &'a self,
        proof: &'a CheckedProof,
        now: i64,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// A process's own replay memory behind a lock.
///
/// It starts empty, so on its own it would accept again, after a restart, a proof spent just
/// before it. [`MemoryReplay::started_at`] closes that window: proofs made before the memory
/// started are refused, as their single use cannot be known (a client makes a new proof per
/// request anyway; one whose clock runs behind is refused for that long after a restart).
#[derive(Debug, Default)]
pub struct MemoryReplay {
    cache: std::sync::Mutex<ReplayCache>,
    /// Proofs issued (`iat`) before this unix time are refused; 0 for none.
    started: i64,
}

impl MemoryReplay {
    /// A memory that holds at most `capacity` live proofs, with no start time (for tests and
    /// callers that keep their memory across restarts some other way).
    pub fn new(capacity: usize) -> Self {
        MemoryReplay {
            cache: std::sync::Mutex::new(ReplayCache::new(capacity)),
            started: 0,
        }
    }

    /// A memory started at `now` (unix seconds) that refuses proofs made before then: what a
    /// process whose memory is lost on restart uses.
    pub fn started_at(capacity: usize, now: i64) -> Self {
        MemoryReplay {
            started: now,
            ..Self::new(capacity)
        }
    }

    /// Records a proof as used, synchronously.
    pub fn use_now(&self, proof: &CheckedProof, now: i64) -> Result<(), Refusal> {
        if proof.iat < self.started {
            return Err(Refusal::new(
                RefusalCode::DpopReplayed,
                "this DPoP proof was made before this server started, so whether it was used cannot be known: make a new proof for every request",
            ));
        }
        // Every critical section leaves the cache consistent, so a poisoned lock is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.use_once(&proof.jkt, &proof.jti, proof.iat, now)
    }
}

impl ReplayGuard for MemoryReplay {
    fn use_once<'a>(
        &'a self,
        proof: &'a CheckedProof,
        now: i64,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(std::future::ready(self.use_now(proof, now)))
    }
}

/// Checks a presentation completely, recording the proof's `jti` as used only when everything
/// else passed (so a refused request cannot burn a legitimate client's proof).
pub fn check(
    p: &Presentation<'_>,
    keys: &impl KeyLookup,
    revoked: &RevocationSet,
    replay: &mut ReplayCache,
    e: Expectations<'_>,
) -> Result<Presented, Refusal> {
    check_unspent(p, keys, revoked, e)?.spend_in(replay, e.now)
}

/// Every check but the single use of the proof, so that a caller can run the signature checks
/// concurrently and then spend the proof where it keeps replays ([`Unspent::spend`]).
pub fn check_unspent(
    p: &Presentation<'_>,
    keys: &impl KeyLookup,
    revoked: &RevocationSet,
    e: Expectations<'_>,
) -> Result<Unspent, Refusal> {
    check_unspent_with(p, e, |token, expect| {
        check_mandate(token, keys, revoked, expect)
    })
}

/// [`check_unspent`], with the mandate checked by `mandate_check` (signature, claims against
/// `expect`, revocation): a caller that keeps verified mandates (the authority's cache) answers
/// from it, checking the audience, time and revocation again on every use.
pub fn check_unspent_with(
    p: &Presentation<'_>,
    e: Expectations<'_>,
    mandate_check: impl FnOnce(&str, Expect<'_>) -> Result<VerifiedMandate, Refusal>,
) -> Result<Unspent, Refusal> {
    let (scheme, token) = parse_authorization(p.authorization)?;
    let expect = Expect {
        issuer: e.issuer,
        audience: Some(e.audience),
        now: e.now,
        skew: e.skew,
    };
    let mandate = mandate_check(token, expect)?;
    let Some(cnf) = mandate.claims().cnf.as_ref() else {
        // A bearer mandate sent as DPoP is refused rather than tolerated: the client believes its
        // token is bound, and accepting it would hide a misissued token or a confused client.
        if scheme == Scheme::Dpop {
            return Err(Refusal::new(
                RefusalCode::DpopSchemeForBearerToken,
                "this mandate is not DPoP-bound: present it as \"Authorization: Bearer\"",
            ));
        }
        return Ok(Unspent(Presented {
            mandate,
            proof: None,
        }));
    };
    if scheme == Scheme::Bearer {
        return Err(Refusal::new(
            RefusalCode::BearerUseOfDpopBoundToken,
            "this mandate is DPoP-bound: present it as \"Authorization: DPoP\" with a proof",
        ));
    }
    let proof = p.dpop.ok_or_else(|| {
        Refusal::new(
            RefusalCode::DpopMissing,
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
            RefusalCode::DpopWrongKey,
            "the DPoP proof is signed by a key other than the one the mandate is bound to",
        ));
    }
    let proof = CheckedProof {
        jkt: checked.jkt,
        jti: checked.claims.jti,
        iat: checked.claims.iat,
    };
    Ok(Unspent(Presented {
        mandate,
        proof: Some(proof),
    }))
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
            RefusalCode::MalformedAuthorization,
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
        let r = Refusal::new(RefusalCode::Expired, "token expired");
        assert_eq!(r.to_string(), "expired: token expired");
        let as_error: &dyn std::error::Error = &r;
        assert!(as_error.source().is_none());
    }
}
