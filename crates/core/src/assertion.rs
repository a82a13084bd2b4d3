//! RFC 7523 `private_key_jwt` client assertions: making them (clients) and checking them.
//!
//! The assertion is signed by the principal's own key with `iss` = `sub` = the principal, `aud`
//! the issuer or its token endpoint, `exp` at most five minutes ahead and a `jti` that the caller
//! must record as used until `exp`.

use serde::{Deserialize, Serialize};

use crate::claims::Audience;
use crate::jws::{self, Jws, JwsError};
use crate::keys::{PublicKey, SecretKey};

/// The `client_assertion_type` value for JWT client authentication.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead `exp` may be, in seconds.
pub const MAX_LIFETIME: i64 = 300;
/// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
pub const SKEW: i64 = 10;

/// Why a client assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// Not a well-formed Ed25519 JWS.
    #[error("client_assertion: {0}")]
    Jws(#[from] JwsError),
    /// Claims missing or malformed.
    #[error("client_assertion claims are invalid: {0}")]
    Claims(String),
    /// `iss` and `sub` differ.
    #[error("client_assertion iss and sub must both be the principal's name")]
    IssSub,
    /// `aud` names neither the issuer nor the token endpoint.
    #[error("client_assertion aud must be the issuer ({0}) or the token endpoint")]
    Audience(String),
    /// `exp` has passed.
    #[error("client_assertion has expired: sign a new one for each request")]
    Expired,
    /// `exp` is more than five minutes ahead.
    #[error("client_assertion exp is more than {MAX_LIFETIME}s ahead: use a shorter expiry")]
    TooLong,
    /// `iat` or `nbf` is in the future.
    #[error("client_assertion is not valid yet: check the client's clock")]
    NotYetValid,
    /// None of the principal's registered keys verifies the signature (or the principal is not
    /// registered: strangers get the same answer either way).
    #[error("client_assertion does not verify for {0}: it must be signed with a key registered for that principal")]
    Signature(String),
    /// The JOSE `typ` names another kind of token (a mandate, a DPoP proof...).
    #[error("client_assertion typ {0:?} is not a client assertion: use \"JWT\", \"client-authentication+jwt\" or no typ")]
    Typ(String),
}

/// Whether a JOSE `typ` is acceptable for a client assertion. RFC 7523 sets no `typ`; the
/// explicit type of draft-ietf-oauth-rfc7523bis (`client-authentication+jwt`) and the generic
/// `JWT` are accepted, with or without RFC 7515's `application/` prefix. Anything else (`at+jwt`,
/// `dpop+jwt`...) is another kind of token and refused, so a token minted for one purpose can
/// never authenticate a client (RFC 8725 §3.11).
fn assertion_typ_ok(typ: Option<&str>) -> bool {
    let Some(t) = typ else { return true };
    let t = t.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    matches!(t, "jwt" | "client-authentication+jwt")
}

/// The claims of a client assertion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The principal.
    pub iss: String,
    /// The principal again.
    pub sub: String,
    /// Issuer or token endpoint.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique id, single-use.
    pub jti: String,
}

/// A decoded assertion whose signature is still to be checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    jws: Jws<'a>,
    /// The claims, not yet trusted: use them only to find the principal's keys.
    pub claims: AssertionClaims,
}

/// Decodes an assertion and reads who it claims to be from.
pub fn decode(assertion: &str) -> Result<Unverified<'_>, AssertionError> {
    let jws = Jws::decode(assertion)?;
    if !assertion_typ_ok(jws.header.typ.as_deref()) {
        let typ = jws.header.typ.clone().unwrap_or_default();
        return Err(AssertionError::Typ(typ.chars().take(40).collect()));
    }
    let claims: AssertionClaims = jws
        .unverified_claims()
        .map_err(|e| AssertionError::Claims(e.to_string()))?;
    if claims.iss != claims.sub {
        return Err(AssertionError::IssSub);
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(AssertionError::Claims(
            "jti must be 1-256 characters".into(),
        ));
    }
    Ok(Unverified { jws, claims })
}

impl Unverified<'_> {
    /// Checks audience and time, then the signature against the principal's keys. Returns the
    /// key that verified it.
    pub fn check<'k>(
        self,
        keys: &'k [PublicKey],
        audiences: &[&str],
        now: i64,
    ) -> Result<(&'k PublicKey, AssertionClaims), AssertionError> {
        let c = self.claims;
        if !audiences.iter().any(|a| c.aud.contains(a)) {
            return Err(AssertionError::Audience(
                audiences.first().copied().unwrap_or("").into(),
            ));
        }
        if c.exp <= now - SKEW {
            return Err(AssertionError::Expired);
        }
        if c.exp > now + MAX_LIFETIME + SKEW {
            return Err(AssertionError::TooLong);
        }
        if c.iat.is_some_and(|t| t > now + SKEW) || c.nbf.is_some_and(|t| t > now + SKEW) {
            return Err(AssertionError::NotYetValid);
        }
        // A `kid` narrows the search; without one every registered key is tried.
        let mut candidates = keys
            .iter()
            .filter(|k| {
                self.jws
                    .header
                    .kid
                    .as_deref()
                    .is_none_or(|kid| kid == k.thumbprint())
            })
            .peekable();
        if candidates.peek().is_none() {
            // No key to try (an unknown principal, or a kid it does not have): one verification
            // all the same, so that the answer takes as long as a wrong signature's and timing
            // does not tell a stranger which principals exist.
            let _ = self.jws.verify(&uniform_cost_key());
            return Err(AssertionError::Signature(c.sub.clone()));
        }
        let key = candidates
            .find(|k| self.jws.verify(k).is_ok())
            .ok_or_else(|| AssertionError::Signature(c.sub.clone()))?;
        Ok((key, c))
    }
}

/// A public key no one registers (RFC 8037 A.2's example key), verified against when there is no
/// key to try.
fn uniform_cost_key() -> PublicKey {
    PublicKey::parse("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").expect("a valid constant key")
}

/// Makes an assertion for `principal` addressed to `aud`, valid for 60 seconds.
pub fn make(key: &SecretKey, principal: &str, aud: &str, now: i64, jti: &str) -> String {
    let header = jws::header("JWT", Some(key.public().thumbprint()), None);
    let claims = AssertionClaims {
        iss: principal.into(),
        sub: principal.into(),
        aud: Audience::One(aud.into()),
        exp: now + 60,
        iat: Some(now),
        nbf: None,
        jti: jti.into(),
    };
    jws::sign(&header, &claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "http://127.0.0.1:8700";

    #[test]
    fn accepts_a_good_assertion_and_refuses_each_defect() {
        let k = SecretKey::from_seed(&[9; 32]);
        let keys = [k.public()];
        let auds = [ISS, "http://127.0.0.1:8700/oauth/token"];
        let ok = make(&k, "agent:a", ISS, 1000, "j");
        assert!(decode(&ok).unwrap().check(&keys, &auds, 1000).is_ok());
        assert_eq!(
            decode(&ok).unwrap().check(&keys, &auds, 1100).unwrap_err(),
            AssertionError::Expired
        );
        let other = [SecretKey::from_seed(&[8; 32]).public()];
        assert!(matches!(
            decode(&ok).unwrap().check(&other, &auds, 1000),
            Err(AssertionError::Signature(_))
        ));
        let wrong_aud = make(&k, "agent:a", "http://elsewhere", 1000, "j");
        assert!(matches!(
            decode(&wrong_aud).unwrap().check(&keys, &auds, 1000),
            Err(AssertionError::Audience(_))
        ));
        let long = jws::sign(
            &jws::header("JWT", None, None),
            &serde_json::json!({"iss":"agent:a","sub":"agent:a","aud":ISS,"exp":1000 + 3600,"jti":"x"}),
            &k,
        );
        assert_eq!(
            decode(&long)
                .unwrap()
                .check(&keys, &auds, 1000)
                .unwrap_err(),
            AssertionError::TooLong
        );
        let mixed = jws::sign(
            &jws::header("JWT", None, None),
            &serde_json::json!({"iss":"agent:a","sub":"agent:b","aud":ISS,"exp":1060,"jti":"x"}),
            &k,
        );
        assert_eq!(decode(&mixed).unwrap_err(), AssertionError::IssSub);
    }

    #[test]
    fn only_client_assertion_types_are_accepted() {
        let k = SecretKey::from_seed(&[9; 32]);
        let claims =
            serde_json::json!({"iss":"agent:a","sub":"agent:a","aud":ISS,"exp":1060,"jti":"x"});
        let with = |typ: Option<&str>| {
            let mut h = jws::header("JWT", None, None);
            h.typ = typ.map(str::to_string);
            jws::sign(&h, &claims, &k)
        };
        for ok in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("client-authentication+jwt"),
            Some("application/client-authentication+jwt"),
        ] {
            assert!(decode(&with(ok)).is_ok(), "{ok:?}");
        }
        for bad in ["at+jwt", "dpop+jwt", "application/at+jwt", "JOSE", ""] {
            assert!(
                matches!(decode(&with(Some(bad))), Err(AssertionError::Typ(_))),
                "{bad}"
            );
        }
    }
}
