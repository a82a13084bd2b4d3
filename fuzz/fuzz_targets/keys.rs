//! Key, principal name, scope and duration parsers.
//!
//! Besides "no panic", everything a parser accepts must survive a round trip through the
//! project's own encoders (OpenSSH line, base64url, JWK, private JWK, names, scope strings,
//! durations), so an accepted value is never one the system cannot write back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::duration::{format_duration, parse_duration};
use mandate_core::{PrincipalName, PublicKey, ScopeSet, SecretKey};
use mandate_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let input = input.as_ref();

    if let Ok(k) = PublicKey::parse(input) {
        assert_eq!(PublicKey::parse(&k.to_openssh()), Ok(k));
        assert_eq!(PublicKey::parse(&k.x()), Ok(k));
        assert_eq!(PublicKey::from_jwk(&k.to_jwk()), Ok(k));
    }
    if let Ok(s) = SecretKey::parse(input) {
        let again = SecretKey::parse(&s.to_private_jwk().to_string()).expect("own private JWK");
        assert_eq!(again.public(), s.public());
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(input) {
        if let Ok(k) = PublicKey::from_jwk(&v) {
            assert_eq!(PublicKey::parse(&k.to_openssh()), Ok(k));
        }
        let _ = PublicKey::from_jwk_for_signature(&v);
    }
    if let Ok(p) = input.parse::<PrincipalName>() {
        assert_eq!(p.as_str(), input);
        assert_eq!(p.as_str().parse::<PrincipalName>().as_ref(), Ok(&p));
        assert_eq!(format!("{}:{}", p.kind().as_str(), p.bare()), input);
    }
    let _ = PrincipalName::parse_cli(input);
    if let Ok(set) = ScopeSet::parse(input) {
        let joined = set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        assert_eq!(ScopeSet::parse(&joined).as_ref(), Ok(&set));
    }
    if let Ok(n) = parse_duration(input) {
        assert!(n > 0);
        assert_eq!(parse_duration(&format_duration(n)), Ok(n));
    }
});
