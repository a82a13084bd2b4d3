//! Keys: agent keys made locally (0600, kid = RFC 7638 thumbprint), refused key forms, and
//! issuer key rotation with the old key still verifying.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{assert_one_line_error, jwt_header, key_path, mode, Server, GITHUB};
use mandate_core::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};

/// RFC 7638 thumbprint of an OKP key, computed here from its required members.
fn rfc7638(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[test]
fn thumbprint_matches_the_rfc_8037_example() {
    // RFC 8037 Appendix A.3.
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    assert_eq!(rfc7638(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    let k = PublicKey::parse(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#)).expect("JWK");
    assert_eq!(k.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn agent_create_makes_a_private_key_file_whose_thumbprint_is_the_kid() {
    let s = Server::start(false);
    let out = s.ok_json(&["agent", "create", "x", "--scopes", "ci:read"]);
    let file = key_path(s.home(), "agent:x");
    assert!(file.exists(), "{} missing", file.display());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&s.home().join("keys")), 0o700);
    let key = SecretKey::parse(&std::fs::read_to_string(&file).expect("read")).expect("key");
    let kid = out["kid"].as_str().expect("kid in output");
    assert_eq!(kid, key.public().thumbprint());
    assert_eq!(kid, rfc7638(&key.public().x()));
    assert_eq!(out["name"], "agent:x");
    assert_eq!(s.ok_json(&["agent", "show", "x"])["kid"], kid);
}

#[test]
fn agent_create_with_a_public_key_registers_it_without_a_local_file() {
    let s = Server::start(false);
    let k = SecretKey::from_seed(&[7; 32]);
    let openssh = k.public().to_openssh();
    let out = s.ok_json(&["agent", "create", "y", "--public-key", &openssh]);
    assert_eq!(out["kid"], k.public().thumbprint().as_str());
    assert!(!key_path(s.home(), "agent:y").exists());
}

#[test]
fn agent_create_refuses_an_unreadable_public_key_naming_the_accepted_forms() {
    let s = Server::start(false);
    let args = ["agent", "create", "y", "--public-key", "hello"];
    let line = assert_one_line_error(&args, &s.cli(&args));
    assert!(line.contains("accepted forms"), "{line}");
    assert!(!key_path(s.home(), "agent:y").exists());
    let args = ["agent", "show", "y"];
    assert_one_line_error(&args, &s.cli(&args));
}

#[test]
fn keys_rotate_publishes_both_keys_and_old_mandates_still_verify() {
    let s = Server::demo();
    let before = s.ok_json(&["keys", "list"]);
    let keys = before["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{before}");
    let old_kid = keys[0]["kid"].as_str().expect("kid").to_string();
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "the JWKS must not carry private keys");

    let args = ["token", "issue", "--as", "planner", "--aud", GITHUB, "--scope", "github:pulls.read"];
    let old_token = s.ok(&args);
    assert_eq!(jwt_header(&old_token)["kid"], old_kid.as_str());

    let rotated = s.ok_json(&["keys", "rotate"]);
    let new_kid = rotated["kid"].as_str().expect("new kid").to_string();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["retired_kid"], old_kid.as_str());

    let after = s.ok_json(&["keys", "list"]);
    let mut kids: Vec<&str> = after["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    kids.sort_unstable();
    let mut want = vec![old_kid.as_str(), new_kid.as_str()];
    want.sort_unstable();
    assert_eq!(kids, want, "{after}");

    let inspected = s.ok_json(&["token", "inspect", &old_token]);
    assert_eq!(inspected["valid"], true, "{inspected}");

    let new_token = s.ok(&args);
    assert_eq!(jwt_header(&new_token)["kid"], new_kid.as_str());
    assert_eq!(s.ok_json(&["token", "inspect", &new_token])["valid"], true);

    // A mandate signed before rotation can still be delegated from.
    let c = s.ok(&["delegate", "--as", "planner", "--to", "coder", "--subject-token", &old_token]);
    assert_eq!(jwt_header(&c)["kid"], new_kid.as_str());
}
