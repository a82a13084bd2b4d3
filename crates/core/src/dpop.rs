//! DPoP proofs (RFC 9449): making them (clients) and checking them (the authority and resources).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jws::{self, Jws, JwsError};
use crate::keys::{PublicKey, SecretKey};
use crate::refusal::RefusalCode;

/// The `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";
/// How old a proof's `iat` may be, in seconds.
pub const MAX_AGE: i64 = 60;
/// How far in the future a proof's `iat` may be, in seconds (clock skew).
pub const MAX_FUTURE: i64 = 5;

/// Why a DPoP proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a well-formed Ed25519 JWS.
    #[error("DPoP proof: {0}")]
    Jws(#[from] JwsError),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be \"dpop+jwt\"")]
    Typ,
    /// The header has no usable Ed25519 `jwk`.
    #[error("DPoP proof header must carry the public Ed25519 key as \"jwk\": {0}")]
    Jwk(String),
    /// The claims are missing or malformed.
    #[error("DPoP proof claims are invalid: {0}")]
    Claims(String),
    /// `htm` is not the request's method.
    #[error("DPoP proof is for method {0:?}, not this request's")]
    Method(String),
    /// `htu` is not the request's URL.
    #[error("DPoP proof is for URL {0:?}, not this request's")]
    Url(String),
    /// `iat` is outside the acceptance window.
    #[error("DPoP proof iat is outside the {MAX_AGE}s window: check the client's clock")]
    Stale,
    /// `ath` is missing or does not match the access token.
    #[error("DPoP proof ath does not match the access token (or is missing)")]
    Ath,
    /// The proof key is not the one the token is bound to.
    #[error("DPoP proof is signed by a key other than the one the token is bound to")]
    KeyMismatch,
}

impl DpopError {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> RefusalCode {
        match self {
            DpopError::Jws(_) | DpopError::Typ | DpopError::Jwk(_) | DpopError::Claims(_) => {
                RefusalCode::DpopMalformed
            }
            DpopError::Method(_) => RefusalCode::DpopWrongMethod,
            DpopError::Url(_) => RefusalCode::DpopWrongUrl,
            DpopError::Stale => RefusalCode::DpopStale,
            DpopError::Ath => RefusalCode::DpopBadAth,
            DpopError::KeyMismatch => RefusalCode::DpopWrongKey,
        }
    }
}

/// The claims of a DPoP proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofClaims {
    /// Unique id, single-use.
    pub jti: String,
    /// HTTP method.
    pub htm: String,
    /// HTTP target URI without query and fragment.
    pub htu: String,
    /// Creation time.
    pub iat: i64,
    /// Hash of the access token, when presenting one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ath: Option<String>,
}

/// A proof that passed every stateless check. The caller must still enforce `jti` single use.
#[derive(Debug, Clone)]
pub struct CheckedProof {
    /// The proof's key.
    pub key: PublicKey,
    /// Its RFC 7638 thumbprint.
    pub jkt: String,
    /// The claims.
    pub claims: ProofClaims,
}

/// What a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's HTTP method.
    pub method: &'a str,
    /// The request's full URL as the server is reached (query and fragment are ignored).
    pub url: &'a str,
    /// Current time.
    pub now: i64,
    /// When presenting a token: the token, whose hash must be in `ath`.
    pub access_token: Option<&'a str>,
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Compares two HTTP URIs per RFC 9449 §4.3: scheme, host, port and path, without query/fragment;
/// a URI without a host (`mailto:`, `urn:`) matches nothing.
pub fn same_htu(a: &str, b: &str) -> bool {
    // The usual case, a proof made for exactly the URL it is sent to: one parse, which a valid
    // URL needs all the same.
    if a == b {
        return url::Url::parse(a).is_ok_and(|u| u.has_host());
    }
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.has_host()
                && a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
        }
        _ => false,
    }
}

/// JWK members that hold private key material (RFC 7517 / 7518 / 8037).
const PRIVATE_JWK_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Checks a proof's signature, shape, method, URL, age and `ath`.
pub fn check_proof(proof: &str, check: ProofCheck<'_>) -> Result<CheckedProof, DpopError> {
    check_proof_with(proof, check, |jwk| {
        PublicKey::from_jwk_for_signature(jwk).map_err(|e| DpopError::Jwk(e.to_string()))
    })
}

/// Like [`check_proof`], but the proof's `jwk` is turned into a key by `resolve`: a verifier that
/// only accepts known keys (the token endpoint: the caller's registered keys) refuses the others
/// there and reuses keys it has already decoded.
pub fn check_proof_with(
    proof: &str,
    check: ProofCheck<'_>,
    resolve: impl FnOnce(&serde_json::Value) -> Result<PublicKey, DpopError>,
) -> Result<CheckedProof, DpopError> {
    let jws = Jws::decode(proof)?;
    if jws.header.typ.as_deref() != Some(DPOP_TYP) {
        return Err(DpopError::Typ);
    }
    let jwk = jws
        .header
        .jwk
        .as_ref()
        .ok_or_else(|| DpopError::Jwk("missing".into()))?;
    // RFC 9449 §4.3: the jwk must not contain a private key. Checked here, before any resolver,
    // so that no caller can accept one.
    if let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
        return Err(DpopError::Jwk(format!(
            "the proof's jwk carries the private member {m:?}: send only the public key (RFC 9449 4.3)"
        )));
    }
    let key = resolve(jwk)?;
    jws.verify(&key)?;
    let claims: ProofClaims = jws
        .unverified_claims()
        .map_err(|e| DpopError::Claims(e.to_string()))?;
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(DpopError::Claims("jti must be 1-256 characters".into()));
    }
    if claims.htm != check.method {
        return Err(DpopError::Method(claims.htm));
    }
    if !same_htu(&claims.htu, check.url) {
        return Err(DpopError::Url(claims.htu));
    }
    if claims.iat < check.now - MAX_AGE || claims.iat > check.now + MAX_FUTURE {
        return Err(DpopError::Stale);
    }
    if let Some(tok) = check.access_token {
        if claims.ath.as_deref() != Some(ath(tok).as_str()) {
            return Err(DpopError::Ath);
        }
    }
    Ok(CheckedProof {
        jkt: key.thumbprint(),
        key,
        claims,
    })
}

/// Makes a proof (what a client does before each request).
pub fn make_proof(
    key: &SecretKey,
    method: &str,
    url: &str,
    iat: i64,
    jti: &str,
    access_token: Option<&str>,
) -> String {
    let header = jws::header(DPOP_TYP, None, Some(key.public().to_jwk()));
    let claims = ProofClaims {
        jti: jti.to_string(),
        htm: method.to_string(),
        htu: url.to_string(),
        iat,
        ath: access_token.map(ath),
    };
    jws::sign(&header, &claims, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://as.example/token";

    fn check(now: i64) -> ProofCheck<'static> {
        ProofCheck {
            method: "POST",
            url: URL,
            now,
            access_token: None,
        }
    }

    #[test]
    fn accepts_a_fresh_proof_and_reports_its_thumbprint() {
        let k = SecretKey::from_seed(&[3; 32]);
        let p = make_proof(&k, "POST", URL, 1000, "j1", None);
        let c = check_proof(&p, check(1010)).unwrap();
        assert_eq!(c.jkt, k.public().thumbprint());
    }

    #[test]
    fn refuses_wrong_method_url_age_and_ath() {
        let k = SecretKey::from_seed(&[3; 32]);
        let p = make_proof(&k, "GET", URL, 1000, "j", None);
        assert!(matches!(
            check_proof(&p, check(1000)),
            Err(DpopError::Method(_))
        ));
        let p = make_proof(&k, "POST", "https://as.example/other", 1000, "j", None);
        assert!(matches!(
            check_proof(&p, check(1000)),
            Err(DpopError::Url(_))
        ));
        let p = make_proof(&k, "POST", URL, 1000, "j", None);
        assert_eq!(
            check_proof(&p, check(1000 + MAX_AGE + 1)).unwrap_err(),
            DpopError::Stale
        );
        assert_eq!(
            check_proof(&p, check(1000 - MAX_FUTURE - 1)).unwrap_err(),
            DpopError::Stale
        );
        let with_tok = ProofCheck {
            access_token: Some("tok"),
            ..check(1000)
        };
        assert_eq!(check_proof(&p, with_tok).unwrap_err(), DpopError::Ath);
        let p = make_proof(&k, "POST", URL, 1000, "j", Some("tok"));
        assert!(check_proof(&p, with_tok).is_ok());
    }

    #[test]
    fn htu_comparison_ignores_query_default_port_and_case() {
        assert!(same_htu("https://AS.example:443/token?x=1", URL));
        assert!(same_htu(URL, URL));
        // Equal strings are still parsed: neither garbage nor a URL without a host matches.
        assert!(!same_htu("not a url", "not a url"));
        assert!(!same_htu("mailto:a@b.example", "mailto:a@b.example"));
        assert!(!same_htu("mailto:a@b.example?x", "mailto:a@b.example"));
        assert!(!same_htu("http://as.example/token", URL));
        assert!(!same_htu("https://as.example/token/", URL));
    }

    #[test]
    fn a_proof_with_a_swapped_jwk_fails_its_signature() {
        let k = SecretKey::from_seed(&[3; 32]);
        let other = SecretKey::from_seed(&[4; 32]);
        let p = make_proof(&k, "POST", URL, 1000, "j", None);
        let parts: Vec<&str> = p.split('.').collect();
        let header = jws::header(DPOP_TYP, None, Some(other.public().to_jwk()));
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let forged = format!("{h}.{}.{}", parts[1], parts[2]);
        assert!(matches!(
            check_proof(&forged, check(1000)),
            Err(DpopError::Jws(JwsError::Signature))
        ));
    }

    #[test]
    fn a_proof_whose_jwk_carries_the_private_key_is_refused_whatever_the_resolver() {
        let k = SecretKey::from_seed(&[3; 32]);
        let mut jwk = k.public().to_jwk();
        jwk["d"] = serde_json::json!(URL_SAFE_NO_PAD.encode([3u8; 32]));
        let header = jws::header(DPOP_TYP, None, Some(jwk));
        let claims = ProofClaims {
            jti: "j".into(),
            htm: "POST".into(),
            htu: URL.into(),
            iat: 1000,
            ath: None,
        };
        let p = jws::sign(&header, &claims, &k);
        // Even a resolver that accepts any key (the token endpoint's finds the caller's
        // registered key by `x`) never sees it.
        let err = check_proof_with(&p, check(1000), |_| Ok(k.public())).unwrap_err();
        assert!(
            matches!(&err, DpopError::Jwk(m) if m.contains("private")),
            "{err}"
        );
    }
}
