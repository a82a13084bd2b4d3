//! Tests of the delegation rules, including property tests that no hop ever widens anything.

use super::*;
use crate::jws;
use crate::keys::SecretKey;
use crate::verify::{verify_mandate, Expect};
use proptest::prelude::*;
use std::collections::HashMap;

const ISS: &str = "http://issuer.test";
const GH: &str = "https://api.github.com";

fn issuer_key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

/// Signs and verifies claims, the only way to obtain a `VerifiedMandate`.
fn verified(c: &MandateClaims, now: i64) -> VerifiedMandate {
    let k = issuer_key();
    let kid = k.public().thumbprint();
    let t = jws::sign(&jws::header("at+jwt", Some(kid.clone()), None), c, &k);
    let keys: HashMap<String, _> = [(kid, k.public())].into();
    verify_mandate(
        &t,
        &keys,
        Expect {
            issuer: ISS,
            audience: None,
            now,
            skew: 0,
        },
    )
    .unwrap()
}

fn ceiling(scopes: &str, auds: &[&str], max_ttl: i64, max_depth: u32) -> Ceiling {
    Ceiling {
        scopes: ScopeSet::parse(scopes).unwrap(),
        audiences: auds.iter().map(|s| s.to_string()).collect(),
        max_ttl,
        max_depth,
    }
}

fn name(s: &str) -> PrincipalName {
    s.parse().unwrap()
}

fn req(scopes: &str, auds: &[&str]) -> Request {
    Request {
        scopes: Some(ScopeSet::parse(scopes).unwrap()),
        audiences: auds.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn mint(jti: &str, now: i64) -> Mint<'_> {
    Mint {
        issuer: ISS,
        jti,
        now,
    }
}

/// alice -> planner -> coder, the chain every test of the product walks.
fn chain() -> (MandateClaims, MandateClaims, MandateClaims) {
    let (alice, planner, coder) = (
        name("user:alice"),
        name("agent:planner"),
        name("agent:coder"),
    );
    let user_ceiling = ceiling("*", &["*"], 3600, 5);
    let planner_ceiling = ceiling("github:* ci:read", &[GH], 3600, 3);
    let coder_ceiling = ceiling("github:pulls.* github:contents.read", &[GH], 1800, 3);
    let a = client_credentials(
        mint("j-alice", 1000),
        Grantee {
            name: &alice,
            ceiling: &user_ceiling,
            admin: false,
            jkt: Some("ka"),
        },
        Request {
            ttl: Some(3600),
            ..req("github:* ci:read", &[GH])
        },
    )
    .unwrap();
    let p = exchange(
        mint("j-planner", 1010),
        &verified(&a, 1010),
        Grantee {
            name: &planner,
            ceiling: &planner_ceiling,
            admin: false,
            jkt: Some("kp"),
        },
        req("github:pulls.write github:contents.read", &[]),
    )
    .unwrap();
    let c = exchange(
        mint("j-coder", 1020),
        &verified(&p, 1020),
        Grantee {
            name: &coder,
            ceiling: &coder_ceiling,
            admin: false,
            jkt: Some("kc"),
        },
        req("github:pulls.write", &[]),
    )
    .unwrap();
    (a, p, c)
}

#[test]
fn alice_planner_coder_chain_carries_act_and_parents() {
    let (a, p, c) = chain();
    assert_eq!(a.mandate.depth, 0);
    assert_eq!(p.sub, "user:alice");
    assert_eq!(p.client_id, "agent:planner");
    assert_eq!(c.client_id, "agent:coder");
    assert_eq!(c.mandate.parents, vec!["j-alice", "j-planner"]);
    assert_eq!(c.mandate.depth, 2);
    assert_eq!(
        c.chain(),
        vec!["user:alice", "agent:planner", "agent:coder"]
    );
    let act = serde_json::to_value(&c.act).unwrap();
    assert_eq!(
        act,
        serde_json::json!({"sub": "agent:coder", "act": {"sub": "agent:planner"}})
    );
    assert_eq!(c.cnf.as_ref().unwrap().jkt, "kc");
    assert_eq!(c.aud, Audience::One(GH.into()));
    // The coder asked for the default 10 minutes but never outlives the planner's mandate.
    assert_eq!(p.exp, 1010 + DEFAULT_TTL);
    assert_eq!(c.exp, p.exp);
    crate::verify::check_chain(&c).unwrap();
}

#[test]
fn escalation_beyond_ceiling_or_parent_is_invalid_scope() {
    let (_, p, _) = chain();
    let coder = name("agent:coder");
    let ceil = ceiling("github:pulls.*", &[GH], 1800, 3);
    let g = Grantee {
        name: &coder,
        ceiling: &ceil,
        admin: false,
        jkt: None,
    };
    let e = exchange(
        mint("x", 1020),
        &verified(&p, 1020),
        g,
        req("github:admin", &[]),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
    let wide = ceiling("github:*", &[GH], 1800, 3);
    let g = Grantee {
        ceiling: &wide,
        ..g
    };
    let e = exchange(
        mint("x", 1020),
        &verified(&p, 1020),
        g,
        req("github:issues.write", &[]),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("does not hold github:issues.write"),
        "{e}"
    );
}

#[test]
fn audience_outside_parent_or_ceiling_is_invalid_target() {
    let (_, p, _) = chain();
    let coder = name("agent:coder");
    let ceil = ceiling("github:*", &["*"], 1800, 3);
    let g = Grantee {
        name: &coder,
        ceiling: &ceil,
        admin: false,
        jkt: None,
    };
    let e = exchange(
        mint("x", 1020),
        &verified(&p, 1020),
        g,
        req("github:pulls.write", &["https://evil"]),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_target");
}

#[test]
fn depth_is_bounded_by_parent_and_ceiling() {
    let (_, _, c) = chain();
    let d = name("agent:deep");
    let shallow = ceiling("github:*", &[GH], 600, 2);
    let g = Grantee {
        name: &d,
        ceiling: &shallow,
        admin: false,
        jkt: None,
    };
    let e = exchange(
        mint("x", 1030),
        &verified(&c, 1030),
        g,
        req("github:pulls.write", &[]),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_grant");
}

#[test]
fn expired_parent_and_over_long_ttl_are_refused() {
    let (_, p, _) = chain();
    let coder = name("agent:coder");
    let ceil = ceiling("github:*", &[GH], 1800, 3);
    let g = Grantee {
        name: &coder,
        ceiling: &ceil,
        admin: false,
        jkt: None,
    };
    let v = verified(&p, 1020);
    assert_eq!(
        exchange(mint("x", p.exp), &v, g, req("github:pulls.write", &[]))
            .unwrap_err()
            .oauth_code(),
        "invalid_grant"
    );
    let long = Request {
        ttl: Some(7200),
        ..req("github:pulls.write", &[])
    };
    assert_eq!(
        exchange(mint("x", 1020), &v, g, long)
            .unwrap_err()
            .oauth_code(),
        "invalid_request"
    );
}

#[test]
fn only_the_holder_or_a_named_actor_may_exchange() {
    let (a, _, _) = chain();
    let v = verified(&a, 1010);
    assert!(authorize_exchange(
        &v,
        Caller::Holder {
            name: "user:alice",
            jkt: "ka"
        }
    )
    .is_ok());
    assert!(authorize_exchange(
        &v,
        Caller::Holder {
            name: "user:alice",
            jkt: "other"
        }
    )
    .is_err());
    assert!(authorize_exchange(
        &v,
        Caller::Holder {
            name: "agent:planner",
            jkt: "kp"
        }
    )
    .is_err());
    assert_eq!(
        authorize_exchange(
            &v,
            Caller::Actor {
                name: "agent:planner"
            }
        )
        .unwrap_err()
        .oauth_code(),
        "unauthorized_client"
    );
    let mut with_may_act = a.clone();
    with_may_act.may_act = Some(MayAct {
        sub: "agent:planner".into(),
    });
    assert!(authorize_exchange(
        &verified(&with_may_act, 1010),
        Caller::Actor {
            name: "agent:planner"
        }
    )
    .is_ok());
}

#[test]
fn admin_scope_only_for_admins_and_never_delegated() {
    let bob = name("user:bob");
    let all = ceiling("*", &["*"], 3600, 3);
    let g = Grantee {
        name: &bob,
        ceiling: &all,
        admin: false,
        jkt: None,
    };
    for s in [
        ADMIN_SCOPE,
        PDP_SCOPE,
        AUDIT_SCOPE,
        "mandate:*",
        "mandate:other",
        "Mandate:pdp",
        "MANDATE:admin",
    ] {
        let e = client_credentials(mint("x", 0), g, req(s, &[ISS])).unwrap_err();
        assert_eq!(e.oauth_code(), "invalid_scope", "{s}");
    }
    // `*` is every ordinary scope, and none of Mandate's privileges.
    let star = client_credentials(mint("x", 0), g, req("*", &[ISS])).unwrap();
    let held = ScopeSet::parse(&star.scope).unwrap();
    for p in RESERVED_SCOPES {
        assert!(
            !held.covers(&Scope::parse(p).unwrap()),
            "* must not cover {p}"
        );
    }
    let admin = Grantee { admin: true, ..g };
    let m = client_credentials(mint("x", 0), admin, req(ADMIN_SCOPE, &[ISS])).unwrap();
    let agent = name("agent:a");
    let e = exchange(
        mint("y", 1),
        &verified(&m, 1),
        Grantee {
            name: &agent,
            ceiling: &all,
            admin: true,
            jkt: None,
        },
        Request::default(),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
}

#[test]
fn client_credentials_needs_scope_and_audience() {
    let a = name("agent:a");
    let c = ceiling("x:y", &["*"], 3600, 3);
    let g = Grantee {
        name: &a,
        ceiling: &c,
        admin: false,
        jkt: None,
    };
    assert_eq!(
        client_credentials(mint("j", 0), g, Request::default())
            .unwrap_err()
            .oauth_code(),
        "invalid_scope"
    );
    assert_eq!(
        client_credentials(mint("j", 0), g, req("x:y", &[]))
            .unwrap_err()
            .oauth_code(),
        "invalid_target"
    );
    let one = ceiling("x:y", &["https://one"], 3600, 3);
    let m = client_credentials(
        mint("j", 0),
        Grantee { ceiling: &one, ..g },
        req("x:y", &[]),
    )
    .unwrap();
    assert_eq!(m.aud, Audience::One("https://one".into()));
}

fn arb_scopes() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["gh", "ci"]),
            "[ab]{0,2}",
            any::<bool>(),
        )
            .prop_map(|(r, a, star)| {
                Scope::parse(&format!("{r}:{a}{}", if star { "*" } else { "" })).unwrap()
            }),
        1..4,
    )
    .prop_map(ScopeSet::from_scopes)
}

fn arb_auds() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 0..3)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A delegation chain of arbitrary length with arbitrary ceilings and requests: whatever is
    /// granted at each hop is covered by its parent and by its holder's ceiling, lives no longer
    /// than its parent, and never goes deeper than any bound on the way.
    #[test]
    fn no_hop_ever_widens(
        root_scopes in arb_scopes(),
        hops in prop::collection::vec((arb_scopes(), arb_auds(), 1i64..4000, 0u32..6, prop::option::of(arb_scopes()), arb_auds(), prop::option::of(1i64..4000)), 1..7),
    ) {
        let root = name("user:root");
        let root_ceiling = ceiling("*", &["*"], 3600, 6);
        let mut parent = client_credentials(
            mint("j0", 0),
            Grantee { name: &root, ceiling: &root_ceiling, admin: false, jkt: None },
            Request { scopes: Some(root_scopes), audiences: vec!["a".into(), "b".into()], ttl: Some(3600), may_act: None },
        ).unwrap();
        let mut now = 0;
        for (i, (c_scopes, c_auds, c_ttl, c_depth, r_scopes, r_auds, r_ttl)) in hops.into_iter().enumerate() {
            now += 7;
            // A parent that has expired cannot be verified, so it is not exchanged: the chain
            // ends there (a short ceiling's child can live less than the 7 s between hops).
            if parent.exp <= now {
                break;
            }
            let who = name(&format!("agent:a{i}"));
            let ceil = Ceiling { scopes: c_scopes, audiences: c_auds, max_ttl: c_ttl, max_depth: c_depth };
            let r = Request { scopes: r_scopes, audiences: r_auds.into_iter().filter(|a| a != "*").collect(), ttl: r_ttl, may_act: None };
            let jti = format!("j{}", i + 1);
            let g = Grantee { name: &who, ceiling: &ceil, admin: false, jkt: None };
            let Ok(child) = exchange(mint(&jti, now), &verified(&parent, now), g, r) else { break };
            let ps = ScopeSet::parse(&parent.scope).unwrap();
            let cs = ScopeSet::parse(&child.scope).unwrap();
            prop_assert!(ps.covers_all(&cs), "parent {} child {}", parent.scope, child.scope);
            prop_assert!(ceil.scopes.covers_all(&cs));
            prop_assert!(child.exp <= parent.exp);
            prop_assert!(child.exp - child.iat <= ceil.max_ttl);
            prop_assert!(child.mandate.depth == parent.mandate.depth + 1);
            prop_assert!(child.mandate.depth <= ceil.max_depth && child.mandate.depth <= parent.mandate.max_depth);
            prop_assert!(child.mandate.max_depth <= parent.mandate.max_depth);
            for a in child.aud.as_slice() {
                prop_assert!(parent.aud.contains(a));
                prop_assert!(ceil.audiences.iter().any(|c| c == a || c == "*"));
            }
            crate::verify::check_chain(&child).unwrap();
            parent = child;
        }
    }
}

#[test]
fn a_principal_appears_at_most_once_in_a_chain() {
    let (_, _, c) = chain();
    for back in ["agent:planner", "user:alice", "agent:coder"] {
        let n = name(back);
        let ceil = ceiling("*", &["*"], 3600, 5);
        let g = Grantee {
            name: &n,
            ceiling: &ceil,
            admin: false,
            jkt: None,
        };
        let e = exchange(
            mint("x", 1030),
            &verified(&c, 1030),
            g,
            req("github:pulls.write", &[]),
        )
        .unwrap_err();
        assert_eq!(e.oauth_code(), "invalid_request", "{back}");
        assert!(
            e.to_string().contains("already in this delegation chain"),
            "{e}"
        );
    }
}

#[test]
fn pdp_scope_comes_from_an_explicit_ceiling_or_the_admin_role_never_from_a_wildcard() {
    let pep = name("agent:pep");
    let explicit = ceiling("mandate:pdp ci:read", &["*"], 3600, 3);
    let wildcard = ceiling("* mandate:*", &["*"], 3600, 3);
    let g = |c| Grantee {
        name: &pep,
        ceiling: c,
        admin: false,
        jkt: None,
    };
    assert!(client_credentials(mint("a", 0), g(&explicit), req(PDP_SCOPE, &[ISS])).is_ok());
    let e = client_credentials(mint("b", 0), g(&wildcard), req(PDP_SCOPE, &[ISS])).unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
    assert!(e.to_string().contains("explicitly"), "{e}");
    let admin = Grantee {
        admin: true,
        ..g(&wildcard)
    };
    assert!(client_credentials(mint("c", 0), admin, req(PDP_SCOPE, &[ISS])).is_ok());
    // Granted explicitly, it is still never delegated.
    let m = client_credentials(mint("d", 0), g(&explicit), req(PDP_SCOPE, &[ISS])).unwrap();
    let other = name("agent:other");
    let e = exchange(
        mint("e", 1),
        &verified(&m, 1),
        Grantee {
            name: &other,
            ceiling: &explicit,
            admin: false,
            jkt: None,
        },
        Request::default(),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
}

#[test]
fn audit_scope_follows_the_pdp_rules_explicit_ceiling_or_admin_role_never_wildcard_never_delegated()
{
    let gw = name("agent:gateway");
    let explicit = ceiling("mandate:audit", &["*"], 3600, 3);
    let wildcard = ceiling("* mandate:*", &["*"], 3600, 3);
    let pdp_only = ceiling("mandate:pdp", &["*"], 3600, 3);
    let g = |c| Grantee {
        name: &gw,
        ceiling: c,
        admin: false,
        jkt: None,
    };
    assert!(client_credentials(mint("a", 0), g(&explicit), req(AUDIT_SCOPE, &[ISS])).is_ok());
    for c in [&wildcard, &pdp_only] {
        let e = client_credentials(mint("b", 0), g(c), req(AUDIT_SCOPE, &[ISS])).unwrap_err();
        assert_eq!(e.oauth_code(), "invalid_scope");
        assert!(e.to_string().contains("explicitly"), "{e}");
    }
    // An explicit grant of one privilege is not another.
    let e = client_credentials(mint("c", 0), g(&explicit), req(PDP_SCOPE, &[ISS])).unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
    let admin = Grantee {
        admin: true,
        ..g(&wildcard)
    };
    assert!(client_credentials(mint("d", 0), admin, req(AUDIT_SCOPE, &[ISS])).is_ok());
    let m = client_credentials(mint("e", 0), g(&explicit), req(AUDIT_SCOPE, &[ISS])).unwrap();
    let other = name("agent:other");
    let e = exchange(
        mint("f", 1),
        &verified(&m, 1),
        Grantee {
            name: &other,
            ceiling: &explicit,
            admin: false,
            jkt: None,
        },
        Request::default(),
    )
    .unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
    let ok = |s: &str| check_ceiling(&ScopeSet::parse(s).unwrap(), false).is_ok();
    assert!(ok("* mandate:audit"));
    assert!(!ok("mandate:aud*"));
}

#[test]
fn a_ceiling_names_privileges_exactly_and_never_grants_administration() {
    let ok = |s: &str, admin: bool| check_ceiling(&ScopeSet::parse(s).unwrap(), admin).is_ok();
    assert!(ok("* mandate:pdp", false));
    assert!(ok("*", false));
    assert!(!ok("mandate:*", false));
    assert!(!ok("mandate:other", true));
    assert!(!ok("mandate:admin", false));
    assert!(ok("mandate:admin", true));
}

#[test]
fn a_mandate_has_bounded_scopes_and_audiences_and_fits_the_verifiers_limit() {
    let a = name("agent:a");
    let all = ceiling("*", &["*"], 3600, 3);
    let g = Grantee {
        name: &a,
        ceiling: &all,
        admin: false,
        jkt: None,
    };
    let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s:{i}")).collect();
    let e = client_credentials(mint("j", 0), g, req(&many.join(" "), &[GH])).unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_scope");
    let auds: Vec<String> = (0..=MAX_AUDIENCES)
        .map(|i| format!("https://a{i}"))
        .collect();
    let auds: Vec<&str> = auds.iter().map(String::as_str).collect();
    let e = client_credentials(mint("j", 0), g, req("s:x", &auds)).unwrap_err();
    assert_eq!(e.oauth_code(), "invalid_target");
    assert!(check_encoded_len(crate::jws::MAX_TOKEN_LEN).is_ok());
    assert_eq!(
        check_encoded_len(crate::jws::MAX_TOKEN_LEN + 1)
            .unwrap_err()
            .oauth_code(),
        "invalid_scope"
    );
}
