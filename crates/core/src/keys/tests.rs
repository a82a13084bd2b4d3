//! Tests for key parsing: every accepted form yields the same key and `kid`; everything else is refused.

use super::*;

fn sample() -> SecretKey {
    SecretKey::from_seed(&[7u8; 32])
}

#[test]
fn rfc8037_thumbprint_vector() {
    // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
    let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let k = PublicKey::from_jwk(&jwk).unwrap();
    assert_eq!(
        k.thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn rfc8032_secret_yields_rfc8037_public() {
    // RFC 8037 Appendix A.1/A.2: d -> x.
    let sk = SecretKey::parse(
        r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
    )
    .unwrap();
    assert_eq!(
        sk.public().x(),
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    );
}

#[test]
fn all_five_public_forms_give_the_same_kid() {
    let p = sample().public();
    let pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        VerifyingKey::from_bytes(p.as_bytes())
            .unwrap()
            .to_public_key_pem(Default::default())
            .unwrap()
    };
    let forms = [
        STANDARD.encode(p.as_bytes()),
        URL_SAFE_NO_PAD.encode(p.as_bytes()),
        format!("  {}\n", URL_SAFE.encode(p.as_bytes())),
        p.to_jwk().to_string(),
        format!("{} alice@laptop", p.to_openssh()),
        pem,
    ];
    for f in forms {
        let k = PublicKey::parse(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(k.thumbprint(), p.thumbprint(), "{f}");
    }
}

#[test]
fn malformed_keys_name_the_accepted_forms() {
    for bad in [
        "",
        "hello",
        "AAAA",
        "{\"kty\":\"RSA\"}",
        "{not json",
        "ssh-rsa AAAAB3NzaC1yc2E",
        "ssh-ed25519 !!!",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ] {
        let e = PublicKey::parse(bad).unwrap_err();
        assert!(e.to_string().contains("accepted forms"), "{bad}: {e}");
    }
}

#[test]
fn private_material_is_never_accepted_as_a_public_key() {
    let sk = sample();
    let mut nacl_secret = sk.0.to_bytes().to_vec();
    nacl_secret.extend_from_slice(sk.public().as_bytes());
    assert_eq!(
        PublicKey::parse(&STANDARD.encode(&nacl_secret)),
        Err(KeyError::PrivateGiven)
    );
    assert_eq!(
        PublicKey::parse(&sk.to_private_jwk().to_string()),
        Err(KeyError::PrivateGiven)
    );
}

#[test]
fn weak_points_are_refused() {
    // The identity point (small order) encodes as 0x01 followed by zeros.
    let mut ident = [0u8; 32];
    ident[0] = 1;
    assert!(PublicKey::from_bytes(&ident).is_err());
}

#[test]
fn secret_key_forms_round_trip() {
    let sk = sample();
    let mut nacl_secret = sk.0.to_bytes().to_vec();
    nacl_secret.extend_from_slice(sk.public().as_bytes());
    for f in [
        sk.to_private_jwk().to_string(),
        STANDARD.encode(&nacl_secret),
    ] {
        assert_eq!(SecretKey::parse(&f).unwrap().public(), sk.public());
    }
    let mut wrong = nacl_secret.clone();
    wrong[40] ^= 1;
    assert!(SecretKey::parse(&STANDARD.encode(&wrong)).is_err());
}

#[test]
fn signatures_verify_only_with_the_right_key() {
    let sk = sample();
    let sig = sk.sign(b"msg");
    assert!(sk.public().verify(b"msg", &sig));
    assert!(!sk.public().verify(b"msg2", &sig));
    assert!(!SecretKey::from_seed(&[8; 32]).public().verify(b"msg", &sig));
}

#[test]
fn a_small_order_key_never_verifies_even_when_read_for_one_signature() {
    let mut ident = [0u8; 32];
    ident[0] = 1;
    let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","x": URL_SAFE_NO_PAD.encode(ident)});
    assert!(PublicKey::from_jwk(&jwk).is_err());
    let k = PublicKey::from_jwk_for_signature(&jwk).unwrap();
    // With the identity as key, s=0 and R=identity is a "valid" signature for every message
    // under non-strict verification; strict verification refuses it.
    let mut sig = [0u8; 64];
    sig[0] = 1;
    assert!(!k.verify(b"anything", &sig));
}

#[test]
fn remembered_points_decode_to_the_same_keys_and_bad_ones_stay_refused() {
    // y = 2 is not on the curve (no x satisfies the equation for it).
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let secret = |i: u32| {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        SecretKey::from_seed(&seed)
    };
    let signers: Vec<SecretKey> = (0..8).map(secret).collect();
    // Other keys fill the memo past its bound in between, so that it is emptied on the way.
    let filler: Vec<[u8; 32]> = (0..4100u32)
        .map(|i| *secret(100 + i).public().as_bytes())
        .collect();
    for round in 0..2 {
        for sk in &signers {
            let k = PublicKey::from_bytes(sk.public().as_bytes()).unwrap();
            assert_eq!(k.as_bytes(), sk.public().as_bytes(), "round {round}");
            assert!(k.verify(b"m", &sk.sign(b"m")));
            assert!(!k.verify(b"m", &signers[0].sign(b"other")));
        }
        assert!(PublicKey::from_bytes(&not_a_point).is_err());
        for f in &filler {
            assert_eq!(PublicKey::from_bytes(f).unwrap().as_bytes(), f);
        }
    }
}
