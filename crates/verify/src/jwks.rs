//! The issuer's signing keys: discovery through RFC 8414 metadata, the JWKS document and its
//! parsing into a `kid -> key` map.
//!
//! Mandate's `kid` is the RFC 7638 thumbprint of the key, so a JWK whose `kid` is anything else
//! is ignored (and logged): honouring it would let one key answer to a name chosen by whoever
//! wrote the document, which is exactly the confusion key ids exist to prevent.

use std::collections::HashMap;

use mandate_core::keys::PublicKey;
use serde::Deserialize;

use crate::fetch::get_json;
use crate::VerifierError;

/// Where RFC 8414 metadata lives, relative to the issuer.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The RFC 8414 members this crate reads.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

/// A JWK Set (RFC 7517 §5): only `keys` matters.
#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document into the usable Ed25519 signing keys, by `kid`.
///
/// A document that is not a JWK Set is an error. Individual keys that are not Ed25519 signing
/// keys, or whose `kid` is not their thumbprint, are skipped: a JWKS may legitimately carry keys
/// for other uses, and one bad entry must not take the good ones down with it.
pub fn parse_jwks(body: &[u8]) -> Result<HashMap<String, PublicKey>, VerifierError> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| VerifierError::Json("JWKS", e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        match usable_key(jwk) {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(why) => {
                let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap_or("");
                tracing::warn!(kid, why, "ignoring a JWKS key");
            }
        }
    }
    Ok(keys)
}

fn usable_key(jwk: &serde_json::Value) -> Result<(String, PublicKey), &'static str> {
    let member = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    if member("use").is_some_and(|u| u != "sig") {
        return Err("its \"use\" is not \"sig\"");
    }
    if member("alg").is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
        return Err("its \"alg\" is not EdDSA");
    }
    let kid = member("kid").ok_or("it has no \"kid\"")?;
    let key = PublicKey::from_jwk(jwk).map_err(|_| "it is not a public Ed25519 JWK")?;
    if key.thumbprint() != kid {
        return Err("its \"kid\" is not the key's RFC 7638 thumbprint");
    }
    Ok((kid.to_string(), key))
}

/// Fetches the metadata at `{issuer}/.well-known/oauth-authorization-server`, checks that it
/// names this issuer (RFC 8414 §3.3), then fetches and parses its `jwks_uri`.
pub(crate) async fn fetch_keys(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<HashMap<String, PublicKey>, VerifierError> {
    let url = format!("{}{METADATA_PATH}", issuer.trim_end_matches('/'));
    let body = get_json(http, &url, crate::fetch::FETCH_TIMEOUT).await?;
    let meta: Metadata = serde_json::from_slice(&body)
        .map_err(|e| VerifierError::Json("authorization server metadata", e.to_string()))?;
    crate::metadata::check_issuer(issuer, &meta.issuer)?;
    let body = get_json(http, &meta.jwks_uri, crate::fetch::FETCH_TIMEOUT).await?;
    parse_jwks(&body)
}

#[cfg(test)]
mod tests {
    use mandate_core::keys::SecretKey;

    use super::*;

    fn jwk(key: &PublicKey, kid: &str) -> serde_json::Value {
        let mut v = key.to_jwk();
        v["kid"] = kid.into();
        v["alg"] = "EdDSA".into();
        v["use"] = "sig".into();
        v
    }

    #[test]
    fn keys_are_indexed_by_kid_and_a_kid_that_is_not_the_thumbprint_is_ignored() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let b = SecretKey::from_seed(&[2; 32]).public();
        let c = SecretKey::from_seed(&[3; 32]).public();
        let doc = serde_json::json!({"keys": [
            jwk(&a, &a.thumbprint()),
            // b claims a's kid: must not replace a, and must not be reachable at all.
            jwk(&b, &a.thumbprint()),
            jwk(&c, "my-nice-key"),
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.get(&a.thumbprint()), Some(&a));
        assert!(!keys.contains_key("my-nice-key"));
    }

    #[test]
    fn keys_for_other_uses_algorithms_or_types_are_skipped() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let kid = a.thumbprint();
        let mut enc = jwk(&a, &kid);
        enc["use"] = "enc".into();
        let mut rsa = jwk(&a, &kid);
        rsa["alg"] = "RS256".into();
        let private = SecretKey::from_seed(&[1; 32]).to_private_jwk();
        let no_kid = a.to_jwk();
        let doc = serde_json::json!({"keys": [
            enc, rsa, private, no_kid,
            {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
            "not an object",
        ]});
        assert!(parse_jwks(doc.to_string().as_bytes()).unwrap().is_empty());
        // Bare members (no alg, no use) are fine: both are optional in RFC 7517.
        let bare =
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": a.x(), "kid": kid}]});
        assert_eq!(parse_jwks(bare.to_string().as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn a_document_that_is_not_a_jwk_set_is_an_error() {
        for bad in [&b"[]"[..], b"{}", b"{\"keys\": 1}", b"not json"] {
            assert!(
                matches!(parse_jwks(bad), Err(VerifierError::Json(..))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
