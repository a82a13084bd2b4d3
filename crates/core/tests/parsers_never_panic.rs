//! Every parser that reads untrusted input (keys, compact JWS, mandates, DPoP proofs, client
//! assertions, principal names, durations) refuses garbage with an error and never panics,
//! including on inputs that are almost valid (mutated real tokens).

use std::collections::HashMap;

use mandate_core::dpop::{self, ProofCheck};
use mandate_core::verify::{verify_mandate, Expect};
use mandate_core::{assertion, duration, jws, PrincipalName, PublicKey, SecretKey};
use proptest::prelude::*;

fn real_tokens() -> Vec<String> {
    let k = SecretKey::from_seed(&[5; 32]);
    vec![
        assertion::make(&k, "agent:a", "http://i", 100, "j"),
        dpop::make_proof(&k, "POST", "http://i/t", 100, "j", Some("tok")),
        jws::sign(
            &jws::header("at+jwt", Some(k.public().thumbprint()), None),
            &serde_json::json!({"iss":"http://i","sub":"user:a","aud":"x","scope":"a:b","iat":1,"nbf":1,"exp":9,"jti":"j","client_id":"user:a","mandate":{"depth":0,"parents":[],"max_depth":1}}),
            &k,
        ),
    ]
}

fn exercise(input: &str) {
    let _ = PublicKey::parse(input);
    let _ = SecretKey::parse(input);
    let _ = input.parse::<PrincipalName>();
    let _ = duration::parse_duration(input);
    let _ = jws::Jws::decode(input);
    let _ = jws::looks_like_compact_jws(input);
    let keys: HashMap<String, PublicKey> = HashMap::new();
    let _ = verify_mandate(
        input,
        &keys,
        Expect {
            issuer: "http://i",
            audience: None,
            now: 5,
            skew: 0,
        },
    );
    let _ = dpop::check_proof(
        input,
        ProofCheck {
            method: "POST",
            url: "http://i/t",
            now: 100,
            access_token: Some("tok"),
        },
    );
    if let Ok(u) = assertion::decode(input) {
        let _ = u.check(
            &[SecretKey::from_seed(&[5; 32]).public()],
            &["http://i"],
            100,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(input in "\\PC{0,300}") {
        exercise(&input);
    }

    #[test]
    fn base64ish_dotted_text_never_panics(input in "[A-Za-z0-9_.={}\":-]{0,300}") {
        exercise(&input);
    }

    #[test]
    fn every_jws_the_decoder_accepts_looks_like_one(which in 0usize..3, pos in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
        let mut t = real_tokens()[which].clone().into_bytes();
        let i = pos.index(t.len());
        t[i] = byte;
        let t = String::from_utf8(t).unwrap();
        if jws::Jws::decode(&t).is_ok() {
            prop_assert!(jws::looks_like_compact_jws(&t), "{}", t);
        }
        prop_assert!(jws::looks_like_compact_jws(&real_tokens()[which]));
    }

    #[test]
    fn mutated_real_tokens_never_panic(which in 0usize..3, pos in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
        let mut t = real_tokens()[which].clone().into_bytes();
        let i = pos.index(t.len());
        t[i] = byte;
        exercise(&String::from_utf8(t).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Free text around a real token: whatever surrounds it, the token never survives scrubbing,
    /// and the text around it does.
    #[test]
    fn a_token_never_survives_scrubbing(which in 0usize..3, before in "\\PC{0,60}", after in "\\PC{0,60}") {
        let t = &real_tokens()[which];
        let text = format!("{before} {t} {after}");
        let clean = jws::scrub_tokens(&text);
        prop_assert!(!clean.contains(t.as_str()), "{}", clean);
        prop_assert!(clean.contains("[token removed]"), "{}", clean);
    }

    #[test]
    fn scrubbing_arbitrary_text_never_panics_and_keeps_text_without_tokens(input in "\\PC{0,300}") {
        let out = jws::scrub_tokens(&input);
        if !out.contains("[token removed]") {
            prop_assert_eq!(out.as_ref(), input.as_str());
        }
    }
}
