//! Writes the committed seed corpora under `fuzz/corpus/<target>/seed-*`.
//!
//! Run from the repository root (stable toolchain, no fuzzing flags needed):
//!     CARGO_TARGET_DIR=/work/fuzz-target cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//!
//! All tokens are signed by the fuzzing key (seed `[5; 32]`), whose thumbprint is the `kid` the
//! targets trust, with `now = 100`, so the raw seeds are accepted and mutations start from there.

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use mandate_core::verify::{verify_mandate, Expect};
use mandate_core::{assertion, dpop, jws};
use mandate_fuzz::{keys, public, secret, sign_raw, signed};
use serde_json::json;

fn write(target: &str, name: &str, body: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), body).unwrap();
}

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

/// `header \n payload`: the form the token targets sign themselves before parsing.
fn structured(header: &serde_json::Value, payload: &serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(header).unwrap();
    v.push(b'\n');
    v.extend(serde_json::to_vec(payload).unwrap());
    v
}

fn main() {
    let k = secret();
    let p = public();
    let kid = p.thumbprint();

    // --- tokens ---
    let at = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
    let delegated = json!({
        "iss": "http://i", "sub": "user:alice", "aud": "a", "scope": "github:pulls.write",
        "iat": 90, "nbf": 90, "exp": 700, "jti": "j3", "client_id": "agent:coder",
        "act": {"sub": "agent:coder", "act": {"sub": "agent:planner"}},
        "may_act": {"sub": "agent:reviewer"},
        "cnf": {"jkt": kid},
        "mandate": {"depth": 2, "parents": ["j1", "j2"], "max_depth": 5}
    });
    let root = json!({
        "iss": "http://i", "sub": "agent:a", "aud": ["a", "b"], "scope": "ci:read",
        "iat": 100, "nbf": 100, "exp": 160, "jti": "j1", "client_id": "agent:a",
        "mandate": {"depth": 0, "parents": [], "max_depth": 1}
    });
    let header: jws::Header = serde_json::from_value(at.clone()).unwrap();
    write(
        "tokens",
        "mandate",
        jws::sign(&header, &delegated, k).as_bytes(),
    );
    write(
        "tokens",
        "mandate-root",
        jws::sign(&header, &root, k).as_bytes(),
    );
    write(
        "tokens",
        "assertion",
        assertion::make(k, "agent:a", "http://i", 100, "x").as_bytes(),
    );
    write("tokens", "none", b"eyJhbGciOiJub25lIn0.e30.");
    // RFC 8037 A.4 (valid JWS, unknown key).
    write("tokens", "rfc8037", b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg");
    write("tokens", "signed-mandate", &structured(&at, &delegated));
    write("tokens", "signed-mandate-root", &structured(&at, &root));
    // Sanity: the targets' signing path turns the structured seeds into accepted mandates.
    let expect = Expect {
        issuer: "http://i",
        audience: Some("a"),
        now: 100,
        skew: 30,
    };
    for claims in [&delegated, &root] {
        let token = signed(&structured(&at, claims)).unwrap();
        verify_mandate(&token, keys(), expect).expect("structured seed verifies");
        verify_mandate(&jws::sign(&header, claims, k), keys(), expect).expect("seed verifies");
    }
    let a = assertion::make(k, "agent:a", "http://i", 100, "x");
    let trusted = [p];
    let ok = |t: &str| {
        assertion::decode(t)
            .and_then(|u| u.check(&trusted, &["http://i"], 100))
            .map(|(_, c)| c)
    };
    ok(&a).expect("assertion seed is accepted");
    let sa = structured(
        &json!({"alg": "Ed25519", "typ": "JWT"}),
        &json!({"iss": "agent:a", "sub": "agent:a", "aud": ["http://i/token", "http://i"], "exp": 150, "iat": 100, "nbf": 99, "jti": "x"}),
    );
    ok(&signed(&sa).unwrap()).expect("structured assertion seed is accepted");
    write("tokens", "signed-assertion", &sa);

    // --- dpop ---
    let dh = json!({"alg": "EdDSA", "typ": "dpop+jwt", "jwk": p.to_jwk()});
    let claims = json!({"jti": "p1", "htm": "POST", "htu": "http://i/t", "iat": 100, "ath": dpop::ath("tok")});
    write(
        "dpop",
        "proof",
        dpop::make_proof(k, "POST", "http://i/t", 100, "p1", Some("tok")).as_bytes(),
    );
    write(
        "dpop",
        "proof-no-ath",
        dpop::make_proof(k, "GET", "http://i:80/t?q#f", 40, "p2", None).as_bytes(),
    );
    write("dpop", "signed-proof", &structured(&dh, &claims));
    // Sanity: the structured DPoP seed, signed the way the target signs it, is accepted.
    let h = serde_json::to_vec(&dh).unwrap();
    let c = serde_json::to_vec(&claims).unwrap();
    assert!(dpop::check_proof(
        &sign_raw(&h, &c),
        dpop::ProofCheck {
            method: "POST",
            url: "http://i/t",
            now: 100,
            access_token: Some("tok")
        }
    )
    .is_ok());

    // --- keys: the five public forms, three secret forms, names, scopes, durations ---
    let raw = p.as_bytes();
    let mut spki = hex("302a300506032b6570032100");
    spki.extend_from_slice(raw);
    let mut pkcs8 = hex("302e020100300506032b657004220420");
    pkcs8.extend_from_slice(&mandate_fuzz::SEED);
    let mut nacl = mandate_fuzz::SEED.to_vec();
    nacl.extend_from_slice(raw);
    write("keys", "b64", STANDARD.encode(raw).as_bytes());
    write("keys", "b64url", p.x().as_bytes());
    write("keys", "jwk", p.to_jwk().to_string().as_bytes());
    write(
        "keys",
        "ssh",
        format!("{} me@host\n", p.to_openssh()).as_bytes(),
    );
    write("keys", "pem", pem("PUBLIC KEY", &spki).as_bytes());
    write("keys", "nacl-secret", STANDARD.encode(&nacl).as_bytes());
    write(
        "keys",
        "secret-seed-b64url",
        URL_SAFE_NO_PAD.encode(mandate_fuzz::SEED).as_bytes(),
    );
    write(
        "keys",
        "private-jwk",
        k.to_private_jwk().to_string().as_bytes(),
    );
    write("keys", "pkcs8-pem", pem("PRIVATE KEY", &pkcs8).as_bytes());
    write("keys", "principal", b"agent:planner");
    write("keys", "principal-user", b"user:alice.b-c_9");
    write("keys", "scopes", b"github:* ci:read  github:pulls.write *");
    write("keys", "duration", b"10m");
    write("keys", "duration-bare", b" 86400 ");
    assert!(mandate_core::SecretKey::parse(&pem("PRIVATE KEY", &pkcs8)).is_ok());
    assert_eq!(
        mandate_core::PublicKey::parse(&pem("PUBLIC KEY", &spki)),
        Ok(p)
    );
    eprintln!("seeds written; kid = {kid}");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
