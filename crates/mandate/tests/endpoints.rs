//! The standard endpoints: RFC 8414 metadata, the JWKS, and the token endpoint's response shape.

mod common;

use common::{jwt_header, jwt_payload, Proof, Server, GITHUB};
use serde_json::{json, Value};

#[test]
fn metadata_advertises_what_the_spec_lists() {
    let s = Server::start(false);
    let (status, body) = s.get("/.well-known/oauth-authorization-server");
    assert_eq!(status, 200);
    let m: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(m["issuer"], s.url.as_str());
    assert_eq!(m["token_endpoint"], s.token_url().as_str());
    assert_eq!(m["jwks_uri"], format!("{}/oauth2/jwks", s.url).as_str());
    for field in ["introspection_endpoint", "revocation_endpoint"] {
        assert!(
            m[field].as_str().is_some_and(|u| u.starts_with(&s.url)),
            "{field}: {m}"
        );
    }
    let grants = m["grant_types_supported"].as_array().expect("grants");
    assert!(grants.contains(&json!("client_credentials")), "{m}");
    assert!(
        grants.contains(&json!("urn:ietf:params:oauth:grant-type:token-exchange")),
        "{m}"
    );
    assert!(m["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("auth methods")
        .contains(&json!("private_key_jwt")));
    assert!(m["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("dpop algs")
        .contains(&json!("EdDSA")));
}

#[test]
fn jwks_holds_the_public_ed25519_key_that_signs_mandates() {
    let s = Server::demo();
    let (status, body) = s.get("/oauth2/jwks");
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&body).expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let k = &keys[0];
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["crv"], "Ed25519");
    assert!(k.get("d").is_none(), "private member in the JWKS: {jwks}");
    let public = mandate_core::PublicKey::from_jwk(k).expect("usable JWK");
    assert_eq!(k["kid"], public.thumbprint().as_str());

    // A mandate carries that kid and verifies with that key.
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    assert_eq!(jwt_header(&t)["kid"], k["kid"]);
    let jws = mandate_core::jws::Jws::decode(&t).expect("compact JWS");
    jws.verify(&public)
        .expect("signature verifies with the JWKS key");
}

#[test]
fn a_token_response_describes_the_mandate_it_carries() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let assertion = s.assertion(&key, "agent:planner");
    let form = [
        (
            "client_assertion_type",
            mandate_core::assertion::ASSERTION_TYPE,
        ),
        ("client_assertion", assertion.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", "github:pulls.read"),
        ("audience", GITHUB),
    ];
    // Without a proof this agent is refused; the answer is still a proper OAuth error.
    let (status, headers, body) = s.post_form("/oauth2/token", &form);
    assert_eq!(status, 400, "{body}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["error"],
        "invalid_request"
    );

    let r = s.as_client(
        "agent:planner",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "github:pulls.read"),
            ("audience", GITHUB),
        ],
        Proof::Own,
    );
    assert_eq!(r.0, 200, "{}", r.1);
    let b = &r.1;
    assert_eq!(b["token_type"], "DPoP");
    assert_eq!(b["scope"], "github:pulls.read");
    let c = jwt_payload(b["access_token"].as_str().expect("token"));
    assert_eq!(
        b["expires_in"],
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat")
    );
    assert_eq!(c["iss"], s.url.as_str());
    assert_eq!(c["sub"], "agent:planner");
    assert_eq!(c["client_id"], "agent:planner");
    assert_eq!(c["aud"], GITHUB);
    assert_eq!(c["mandate"]["depth"], 0);
    assert_eq!(c["mandate"]["parents"], json!([]));
    assert!(c.get("act").is_none(), "{c}");
    assert_eq!(
        jwt_header(b["access_token"].as_str().expect("token"))["typ"],
        "at+jwt"
    );
}

#[test]
fn token_responses_and_errors_are_not_cacheable() {
    let s = Server::demo();
    s.ok(&[
        "agent",
        "create",
        "bot",
        "--scopes",
        "ci:read",
        "--audiences",
        common::CI,
        "--allow-bearer",
    ]);
    let key = s.key("agent:bot");
    let assertion = s.assertion(&key, "agent:bot");
    let mut form = vec![
        (
            "client_assertion_type",
            mandate_core::assertion::ASSERTION_TYPE,
        ),
        ("client_assertion", assertion.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", "ci:read"),
        ("audience", common::CI),
    ];
    let (status, headers, body) = s.post_form("/oauth2/token", &form);
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["token_type"],
        "Bearer"
    );
    // RFC 6749 §5.2 errors too.
    form[3].1 = "ci:write";
    let assertion = s.assertion(&key, "agent:bot");
    form[1].1 = assertion.as_str();
    let (status, headers, body) = s.post_form("/oauth2/token", &form);
    assert_eq!(status, 400, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
}
