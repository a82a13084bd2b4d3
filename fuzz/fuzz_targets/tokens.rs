//! Token parsers: compact JWS decoding, mandate verification and RFC 7523 client assertions.
//!
//! Every input is tried as raw text and, when it holds a newline, as `header \n payload` JSON
//! signed with the trusted key (see `mandate_fuzz::signed`), so the claim checks are reached.
//! Besides "no panic", it checks that whatever `verify_mandate` accepts is self-consistent (its
//! chain names only principals, each once), that every JWS `Jws::decode` accepts is recognised by
//! `looks_like_compact_jws`, and that `scrub_tokens` leaves no such token in a text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::verify::{check_chain, verify_mandate, Expect};
use mandate_core::{assertion, jws};
use mandate_fuzz::{keys, public, signed, text};

const EXPECT: Expect<'static> = Expect {
    issuer: "http://i",
    audience: Some("a"),
    now: 100,
    skew: 30,
};

fn exercise(token: &str) {
    if let Ok(j) = jws::Jws::decode(token) {
        let _ = j.unverified_claims::<serde_json::Value>();
        let _ = j.verify(&public());
        assert!(jws::looks_like_compact_jws(token), "a JWS not recognised as one");
        let wrapped = format!("error: {token} was refused");
        assert!(
            !jws::scrub_tokens(&wrapped).contains(token.trim()),
            "a token survived scrubbing"
        );
    }
    let _ = jws::scrub_tokens(token);
    if let Ok(m) = verify_mandate(token, keys(), EXPECT) {
        // Accepted means: issued here, for "a", in its time window, with a consistent chain.
        let c = m.claims();
        assert_eq!(c.iss, "http://i");
        assert!(c.aud.contains("a"));
        assert!(c.exp > EXPECT.now - EXPECT.skew);
        assert!(c.nbf <= EXPECT.now + EXPECT.skew && c.iat <= EXPECT.now + EXPECT.skew);
        assert!(check_chain(c).is_ok());
        assert_eq!(m.kid(), public().thumbprint());
        assert_eq!(c.chain().len(), c.mandate.depth as usize + 1);
        for p in c.chain() {
            assert!(p.parse::<mandate_core::PrincipalName>().is_ok(), "{p:?} in a chain");
        }
    }
    if let Ok(u) = assertion::decode(token) {
        if let Ok((_, c)) = u.check(&[public()], &["http://i"], 100) {
            assert_eq!(c.iss, c.sub);
            assert!(c.aud.contains("http://i"));
            assert!(
                c.exp > 100 - assertion::SKEW
                    && c.exp <= 100 + assertion::MAX_LIFETIME + assertion::SKEW
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(&text(data));
    if let Some(token) = signed(data) {
        exercise(&token);
    }
});
