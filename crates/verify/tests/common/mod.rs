//! Hand-built mandates and proofs for the tests: an issuer key, a holder key, a delegated chain
//! `user:alice -> agent:planner -> agent:coder`, and compact JWS built by hand where the
//! attack needs bytes that `mandate_core::jws::sign` would never produce.
#![allow(dead_code)]

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mandate_core::claims::{Act, Audience, Cnf, MandateClaims, MandateInfo};
use mandate_core::jws;
use mandate_core::keys::{PublicKey, SecretKey};
use mandate_verify::Expectations;

pub const ISSUER: &str = "https://mandate.example";
pub const AUD: &str = "https://api.github.com";
pub const NOW: i64 = 1_750_000_000;
pub const SKEW: i64 = 30;
pub const METHOD: &str = "POST";
pub const URL: &str = "https://gateway.example/mcp";

/// What the verifier expects in these tests: this issuer, this audience, at `NOW`.
pub fn expectations() -> Expectations<'static> {
    Expectations {
        issuer: ISSUER,
        audience: AUD,
        now: NOW,
        skew: SKEW,
    }
}

pub fn issuer_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

pub fn holder_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&[3; 32])
}

pub fn kid(k: &SecretKey) -> String {
    k.public().thumbprint()
}

/// The issuer's JWKS as a verifier holds it.
pub fn keys() -> HashMap<String, PublicKey> {
    HashMap::from([(kid(&issuer_key()), issuer_key().public())])
}

/// A depth-2 mandate held by `agent:coder`, bound to the holder key.
pub fn chain_claims() -> MandateClaims {
    MandateClaims {
        iss: ISSUER.into(),
        sub: "user:alice".into(),
        aud: Audience::One(AUD.into()),
        scope: "github:pulls.read".into(),
        iat: NOW - 60,
        nbf: NOW - 60,
        exp: NOW + 540,
        jti: "j-coder".into(),
        client_id: "agent:coder".into(),
        act: Some(Act {
            sub: "agent:coder".into(),
            act: Some(Box::new(Act {
                sub: "agent:planner".into(),
                act: None,
            })),
        }),
        may_act: None,
        cnf: Some(Cnf {
            jkt: kid(&holder_key()),
        }),
        authorization_details: None,
        mandate: MandateInfo {
            depth: 2,
            parents: vec!["j-alice".into(), "j-planner".into()],
            max_depth: 5,
            forwarded: false,
        },
    }
}

/// A depth-0 bearer mandate (no `cnf`) that `agent:fetcher` got for itself.
pub fn bearer_claims() -> MandateClaims {
    MandateClaims {
        sub: "agent:fetcher".into(),
        client_id: "agent:fetcher".into(),
        jti: "j-fetcher".into(),
        act: None,
        cnf: None,
        authorization_details: None,
        mandate: MandateInfo {
            depth: 0,
            parents: vec![],
            max_depth: 0,
            forwarded: false,
        },
        ..chain_claims()
    }
}

/// Signs claims as a mandate with the issuer key and its kid.
pub fn mandate(c: &MandateClaims) -> String {
    signed_by(c, &issuer_key(), Some(kid(&issuer_key())))
}

pub fn signed_by(c: &MandateClaims, key: &SecretKey, kid: Option<String>) -> String {
    jws::sign(&jws::header("at+jwt", kid, None), c, key)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `base64url(header).base64url(payload)` signed with `key`: any header, any payload bytes.
pub fn sign_raw(header: &str, payload: &str, key: &SecretKey) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// `base64url(header).base64url(payload).base64url(signature)` with a signature of our choice.
pub fn with_signature(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(sig)
    )
}

/// A proof by the holder for the standard request, presenting `token`.
pub fn proof(token: &str, jti: &str) -> String {
    mandate_core::dpop::make_proof(&holder_key(), METHOD, URL, NOW, jti, Some(token))
}
