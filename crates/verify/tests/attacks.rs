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
        .map(|m| m.mandate.claims().jti.clone())
        .map_err(|r| r.code.as_str())
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

/// Metadata mix-up (RFC 8414 §3.3): a server answering with another issuer's metadata, or with
/// metadata that sends credentials to another origin, is refused before anything is fetched or
/// posted; the honest documents pass.
#[test]
fn metadata_naming_another_issuer_or_another_origin_is_refused() {
    use mandate_verify::{check_issuer, check_same_origin};
    let asked = "http://127.0.0.1:8700";
    // (issuer the metadata names, its token endpoint, accepted?)
    let rows = [
        (asked, "http://127.0.0.1:8700/oauth2/token", true),
        (
            "http://127.0.0.1:8700/",
            "http://127.0.0.1:8700/oauth2/token",
            true,
        ),
        // An impostor answering with the real issuer's name for a URL it serves.
        (
            "http://127.0.0.1:8701",
            "http://127.0.0.1:8701/oauth2/token",
            false,
        ),
        (
            "http://localhost:8700",
            "http://localhost:8700/oauth2/token",
            false,
        ),
        (
            "https://127.0.0.1:8700",
            "https://127.0.0.1:8700/oauth2/token",
            false,
        ),
        // The right issuer, but the assertions would go elsewhere.
        (asked, "http://127.0.0.1:9999/oauth2/token", false),
        (asked, "http://evil.example/oauth2/token", false),
        (asked, "https://127.0.0.1:8700/oauth2/token", false),
        (asked, "/oauth2/token", false),
    ];
    for (issuer, token_endpoint, ok) in rows {
        let got = check_issuer(asked, issuer)
            .and_then(|_| check_same_origin(asked, "token_endpoint", token_endpoint));
        assert_eq!(got.is_ok(), ok, "{issuer} {token_endpoint}: {got:?}");
    }
}
