//! Properties of `check` over generated input: no change to a valid mandate or proof is ever
//! accepted, and arbitrary header values are refused without panicking.

mod common;

use common::*;
use mandate_core::revocation::RevocationSet;
use mandate_verify::{check, Presentation, ReplayCache};
use proptest::prelude::*;

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn run(authorization: &str, dpop: Option<&str>) -> Result<(), &'static str> {
    let p = Presentation {
        authorization,
        dpop,
        method: METHOD,
        url: URL,
    };
    let set = RevocationSet::default();
    let mut replay = ReplayCache::default();
    check(&p, &keys(), &set, &mut replay, expectations())
        .map(|_| ())
        .map_err(|r| r.code.as_str())
}

/// Replaces the character at `at` (modulo the length) with a different base64url character.
fn mutate(s: &str, at: usize, pick: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    let i = at % b.len();
    let mut c = B64URL[pick % B64URL.len()];
    if c == b[i] {
        c = B64URL[(pick + 1) % B64URL.len()];
    }
    b[i] = c;
    String::from_utf8(b).unwrap()
}

#[test]
fn the_unmutated_presentation_passes() {
    // Without this, the properties below would hold for a `check` that refuses everything.
    let token = mandate(&chain_claims());
    let p = proof(&token, "p1");
    assert_eq!(run(&format!("DPoP {token}"), Some(&p)), Ok(()));
}

proptest! {
    #[test]
    fn no_single_character_change_to_the_mandate_is_accepted(at in any::<usize>(), pick in any::<usize>()) {
        let token = mandate(&chain_claims());
        let forged = mutate(&token, at, pick);
        prop_assume!(forged.matches('.').count() == 2);
        // The proof is made for the forged token, so only the mandate's own integrity is tested.
        let p = proof(&forged, "p1");
        let auth = format!("DPoP {forged}");
        prop_assert!(run(&auth, Some(&p)).is_err());
    }

    #[test]
    fn no_single_character_change_to_the_proof_is_accepted(at in any::<usize>(), pick in any::<usize>()) {
        let token = mandate(&chain_claims());
        let p = proof(&token, "p1");
        let forged = mutate(&p, at, pick);
        prop_assume!(forged.matches('.').count() == 2);
        let auth = format!("DPoP {token}");
        prop_assert!(run(&auth, Some(&forged)).is_err());
    }

    #[test]
    fn arbitrary_header_values_are_refused_without_panicking(auth in ".{0,300}", dpop in proptest::option::of(".{0,300}")) {
        prop_assert!(run(&auth, dpop.as_deref()).is_err());
        let as_dpop = format!("DPoP {auth}");
        prop_assert!(run(&as_dpop, dpop.as_deref()).is_err());
    }
}
