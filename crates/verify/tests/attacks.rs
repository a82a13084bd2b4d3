//! The attack suite: every way of presenting a forged, misused, stale or revoked mandate that we
//! know of, each pinned to the exact refusal code `check` must answer with, plus the honest
//! presentations that must pass (so the suite fails if `check` simply refused everything).

mod common;

use common::*;
use mandate_core::claims::{Act, MandateClaims};
use mandate_core::dpop::{make_proof, MAX_AGE, MAX_FUTURE};
use mandate_core::jws::MAX_TOKEN_LEN;
use mandate_core::revocation::{RevocationEntry, RevocationSet, RevokedKind};
use mandate_verify::{check, Expectations, Presentation, ReplayCache};

/// One presentation and the verdict it must get.
struct Case {
    name: &'static str,
    authorization: String,
    dpop: Option<String>,
    revoked: Vec<RevocationEntry>,
    /// Present the same thing once before (that first time must pass).
    replay: bool,
    /// `None`: must pass. `Some(code)`: must be refused with exactly this code.
    want: Option<&'static str>,
}

fn dpop_case(name: &'static str, token: String, want: Option<&'static str>) -> Case {
    let p = proof(&token, "p1");
    Case {
        name,
        authorization: format!("DPoP {token}"),
        dpop: Some(p),
        revoked: vec![],
        replay: false,
        want,
    }
}

fn with_proof(name: &'static str, token: &str, p: String, want: &'static str) -> Case {
    Case {
        dpop: Some(p),
        ..dpop_case(name, token.to_string(), Some(want))
    }
}

fn revoked(
    name: &'static str,
    kind: RevokedKind,
    value: &str,
    at: i64,
    want: Option<&'static str>,
) -> Case {
    Case {
        revoked: vec![RevocationEntry {
            seq: 1,
            kind,
            value: value.into(),
            revoked_at: at,
        }],
        ..dpop_case(name, mandate(&chain_claims()), want)
    }
}

#[path = "attacks/presentations.rs"]
mod presentations;
#[path = "attacks/tokens.rs"]
mod tokens;

fn cases() -> Vec<Case> {
    let mut v = tokens::cases();
    v.extend(presentations::cases());
    v
}

fn run(c: &Case) -> Result<String, &'static str> {
    let mut set = RevocationSet::default();
    for e in &c.revoked {
        set.apply(e);
    }
    let mut replay = ReplayCache::default();
    let p = Presentation {
        authorization: &c.authorization,
        dpop: c.dpop.as_deref(),
        method: METHOD,
        url: URL,
    };
    let e = Expectations {
        issuer: ISSUER,
        audience: AUD,
        now: NOW,
        skew: SKEW,
    };
    if c.replay {
        check(&p, &keys(), &set, &mut replay, e).expect("the first presentation passes");
    }
    check(&p, &keys(), &set, &mut replay, e)
        .map(|m| m.claims().jti.clone())
        .map_err(|r| r.code)
}

#[test]
fn every_attack_is_refused_with_its_exact_code_and_honest_presentations_pass() {
    let mut failures = Vec::new();
    let all = cases();
    for c in &all {
        let got = run(c);
        let ok = match (c.want, &got) {
            (None, Ok(_)) => true,
            (Some(want), Err(code)) => want == *code,
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: want {:?}, got {:?}", c.name, c.want, got));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    assert!(all.len() >= 50, "the table shrank to {} cases", all.len());
}

#[test]
fn a_refused_presentation_does_not_burn_its_proof() {
    // A request refused for another reason (here: the wrong method) must not record the proof's
    // jti; otherwise an attacker who sees a proof could spend it before the client does.
    let token = mandate(&chain_claims());
    let p = proof(&token, "p1");
    let auth = format!("DPoP {token}");
    let e = Expectations {
        issuer: ISSUER,
        audience: AUD,
        now: NOW,
        skew: SKEW,
    };
    let set = RevocationSet::default();
    let mut replay = ReplayCache::default();
    let wrong = Presentation {
        authorization: &auth,
        dpop: Some(&p),
        method: "GET",
        url: URL,
    };
    assert_eq!(
        check(&wrong, &keys(), &set, &mut replay, e)
            .unwrap_err()
            .code,
        "dpop_wrong_method"
    );
    assert!(replay.is_empty());
    let right = Presentation {
        method: METHOD,
        ..wrong
    };
    check(&right, &keys(), &set, &mut replay, e).unwrap();
    assert_eq!(replay.len(), 1);
}

#[test]
fn a_full_replay_cache_refuses_new_proofs() {
    let token = mandate(&chain_claims());
    let auth = format!("DPoP {token}");
    let e = Expectations {
        issuer: ISSUER,
        audience: AUD,
        now: NOW,
        skew: SKEW,
    };
    let set = RevocationSet::default();
    let mut replay = ReplayCache::new(1);
    let p1 = proof(&token, "p1");
    let p2 = proof(&token, "p2");
    let pres = |dpop| Presentation {
        authorization: &auth,
        dpop: Some(dpop),
        method: METHOD,
        url: URL,
    };
    check(&pres(&p1), &keys(), &set, &mut replay, e).unwrap();
    assert_eq!(
        check(&pres(&p2), &keys(), &set, &mut replay, e)
            .unwrap_err()
            .code,
        "replay_cache_full"
    );
}
