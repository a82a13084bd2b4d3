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
    let k =
        PublicKey::parse(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#)).expect("JWK");
    assert_eq!(
        k.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
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
    assert!(
        keys[0].get("d").is_none(),
        "the JWKS must not carry private keys"
    );

    let args = [
        "token",
        "issue",
        "--as",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.read",
    ];
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
    let c = s.ok(&[
        "delegate",
        "--as",
        "planner",
        "--to",
        "coder",
        "--subject-token",
        &old_token,
    ]);
    assert_eq!(jwt_header(&c)["kid"], new_kid.as_str());
}

/// Writes a public key in one of the accepted forms.
type Encode = fn(&PublicKey) -> String;

#[test]
fn every_accepted_public_key_form_registers_the_same_kid() {
    use base64::engine::general_purpose::STANDARD;
    let s = Server::start(false);
    // SPKI DER prefix of an Ed25519 public key (RFC 8410).
    const SPKI: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let forms: [(&str, Encode); 5] = [
        ("tweetnacl", |k| STANDARD.encode(k.as_bytes())),
        ("base64url", |k| URL_SAFE_NO_PAD.encode(k.as_bytes())),
        ("jwk", |k| k.to_jwk().to_string()),
        ("openssh", |k| k.to_openssh()),
        ("pem", |k| {
            let der = [&SPKI[..], &k.as_bytes()[..]].concat();
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                STANDARD.encode(der)
            )
        }),
    ];
    for (i, (form, encode)) in forms.iter().enumerate() {
        // A key may belong to one principal only, so each form gets its own key.
        let public = SecretKey::from_seed(&[i as u8 + 1; 32]).public();
        let name = format!("via-{form}");
        let out = s.ok_json(&["agent", "create", &name, "--public-key", &encode(&public)]);
        assert_eq!(out["kid"], public.thumbprint().as_str(), "{form}: {out}");
        assert!(!key_path(s.home(), &format!("agent:{name}")).exists());
    }
    // `@FILE` reads the key from a file.
    let public = SecretKey::from_seed(&[42; 32]).public();
    let file = s.home().join("user_dave.pub");
    std::fs::write(&file, public.to_openssh()).expect("write");
    let at = format!("@{}", file.display());
    let out = s.ok_json(&["user", "create", "dave", "--public-key", &at]);
    assert_eq!(out["kid"], public.thumbprint().as_str());
    // A private JWK is refused: only the public half is registered.
    let private = SecretKey::from_seed(&[43; 32]).to_private_jwk().to_string();
    let args = ["agent", "create", "leaky", "--public-key", private.as_str()];
    assert_one_line_error(&args, &s.cli(&args));
}

#[test]
fn the_rotated_issuer_key_and_the_replay_table_survive_a_restart() {
    let mut s = Server::demo();
    for f in std::fs::read_dir(s.home().join("server/issuer-keys")).expect("issuer key dir") {
        let f = f.expect("entry").path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let issue = [
        "token",
        "issue",
        "--as",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.read",
    ];
    let old_token = s.ok(&issue);
    let new_kid = s.ok_json(&["keys", "rotate"])["kid"]
        .as_str()
        .expect("kid")
        .to_string();

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
    common::assert_token(&s.token_request(&form, Some(&s.proof(&key))));

    s.restart();
    assert_eq!(jwt_header(&s.ok(&issue))["kid"], new_kid.as_str());
    assert_eq!(
        s.ok_json(&["keys", "list"])["keys"]
            .as_array()
            .expect("keys")
            .len(),
        2
    );
    assert_eq!(s.ok_json(&["token", "inspect", &old_token])["valid"], true);
    common::assert_oauth_error(
        &s.token_request(&form, Some(&s.proof(&key))),
        "invalid_client",
    );
}
