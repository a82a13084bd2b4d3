//! Unit and property tests of the scope algebra.

use super::*;
use proptest::prelude::*;

fn s(x: &str) -> Scope {
    Scope::parse(x).unwrap()
}

#[test]
fn coverage_table() {
    let cases = [
        ("github:*", "github:pulls.write", true),
        ("github:*", "github:*", true),
        ("github:*", "gitlab:read", false),
        ("github:pulls.*", "github:pulls.write", true),
        ("github:pulls.*", "github:*", false),
        ("github:pulls.write", "github:pulls.write", true),
        ("github:pulls.write", "github:pulls.writer", false),
        ("github:pulls.write", "github:pulls.*", false),
        ("*", "anything:at.all", true),
        ("*", "*", true),
        ("github:pulls.read", "*", false),
        // Mandate's own privileges are covered only by themselves.
        ("*", "mandate:pdp", false),
        ("*", "mandate:admin", false),
        ("mandate:*", "mandate:pdp", false),
        ("*", "mandate:*", false),
        ("mandate:pdp", "mandate:pdp", true),
        ("mandate:admin", "mandate:pdp", false),
        ("mandate:p*", "mandate:pdp", false),
        ("*", "mandate:audit", false),
        ("mandate:*", "mandate:audit", false),
        ("mandate:a*", "mandate:audit", false),
        ("mandate:admin", "mandate:audit", false),
        ("mandate:pdp", "mandate:audit", false),
        ("mandate:audit", "mandate:audit", true),
    ];
    for (held, req, want) in cases {
        assert_eq!(s(held).covers(&s(req)), want, "{held} covers {req}");
    }
}

#[test]
fn refuses_bad_scopes() {
    for bad in [
        "", "nocolon", ":x", "a:*b", "a:b*c*", "*a:b", "a:\"b", "a:b\\c", "a:é",
    ] {
        assert!(Scope::parse(bad).is_err(), "{bad}");
    }
    assert!(ScopeSet::parse("github:read  ci:run\t").is_ok());
    assert_eq!(
        ScopeSet::parse("b:x a:y b:x").unwrap().to_string(),
        "a:y b:x"
    );
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    // A small alphabet makes prefixes collide often, which is where the algebra can go wrong.
    (
        prop::sample::select(vec!["gh", "ci", "db", "g", "mandate", "m"]),
        "[ab.]{0,4}",
        any::<bool>(),
    )
        .prop_map(|(r, a, star)| s(&format!("{r}:{a}{}", if star { "*" } else { "" })))
}

fn arb_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(arb_scope(), 0..5).prop_map(ScopeSet::from_scopes)
}

proptest! {
    #[test]
    fn coverage_is_reflexive_and_transitive(a in arb_scope(), b in arb_scope(), c in arb_scope()) {
        prop_assert!(a.covers(&a));
        if a.covers(&b) && b.covers(&c) {
            prop_assert!(a.covers(&c));
        }
    }

    #[test]
    fn anything_covered_by_a_narrower_grant_is_covered_by_the_wider(
        parent in arb_set(), ceiling in arb_set(), req in arb_set(), probe in arb_scope()
    ) {
        // A grant only succeeds when both cover it; anything the child could then present
        // (probe covered by the child's scopes) is covered by both the parent and the ceiling.
        if parent.covers_all(&req) && ceiling.covers_all(&req) && req.covers(&probe) {
            prop_assert!(parent.covers(&probe));
            prop_assert!(ceiling.covers(&probe));
        }
    }

    #[test]
    fn no_wildcard_covers_a_reserved_scope(held in arb_scope(), probe in arb_scope()) {
        if probe.is_reserved() && held.covers(&probe) {
            prop_assert_eq!(held, probe);
        }
    }

    #[test]
    fn parse_display_round_trips(set in arb_set()) {
        prop_assert_eq!(ScopeSet::parse(&set.to_string()).unwrap(), set);
    }

    #[test]
    fn scope_parser_never_panics(input in "\\PC{0,40}") {
        let _ = ScopeSet::parse(&input);
    }
}
