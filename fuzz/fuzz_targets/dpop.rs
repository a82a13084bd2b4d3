//! The DPoP proof checker (RFC 9449).
//!
//! Every input is tried as raw text and, when it holds a newline, as `header \n payload` JSON
//! signed with the fuzzing key (whose JWK the seeds put in the header), so the checks after the
//! signature (claims, htm, htu, iat window, ath) are reached. Whatever is accepted must match
//! the request it was checked against.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::dpop::{ath, check_proof, same_htu, ProofCheck, MAX_AGE, MAX_FUTURE};
use mandate_fuzz::{signed, text};

fn exercise(proof: &str) {
    let check = ProofCheck {
        method: "POST",
        url: "http://i/t",
        now: 100,
        access_token: Some("tok"),
    };
    if let Ok(p) = check_proof(proof, check) {
        assert_eq!(p.claims.htm, "POST");
        assert!(same_htu(&p.claims.htu, "http://i/t"));
        assert!(p.claims.iat >= 100 - MAX_AGE && p.claims.iat <= 100 + MAX_FUTURE);
        assert_eq!(p.claims.ath.as_deref(), Some(ath("tok").as_str()));
        assert!(!p.claims.jti.is_empty() && p.claims.jti.len() <= 256);
        assert_eq!(p.jkt, p.key.thumbprint());
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(&text(data));
    if let Some(proof) = signed(data) {
        exercise(&proof);
    }
});
