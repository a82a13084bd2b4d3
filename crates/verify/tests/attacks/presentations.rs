//! Attacks on how a sound mandate is presented: the DPoP proof (replay, method, URL, age, key,
//! `ath`), the `Authorization` scheme, and revocation of the mandate, its ancestors, the
//! principals in its chain and the keys involved.

use super::*;

pub fn cases() -> Vec<Case> {
    let ikid = kid(&issuer_key());
    let token = mandate(&chain_claims());
    let other = other_key();
    vec![
        Case {
            replay: true,
            ..dpop_case("DPoP proof replayed", token.clone(), Some("dpop_replayed"))
        },
        with_proof(
            "proof for another method",
            &token,
            make_proof(&holder_key(), "GET", URL, NOW, "p1", Some(&token)),
            "dpop_wrong_method",
        ),
        with_proof(
            "proof for another URL",
            &token,
            make_proof(
                &holder_key(),
                METHOD,
                "https://gateway.example/admin",
                NOW,
                "p1",
                Some(&token),
            ),
            "dpop_wrong_url",
        ),
        with_proof(
            "proof for another host",
            &token,
            make_proof(
                &holder_key(),
                METHOD,
                "https://evil.example/mcp",
                NOW,
                "p1",
                Some(&token),
            ),
            "dpop_wrong_url",
        ),
        with_proof(
            "stale proof",
            &token,
            make_proof(
                &holder_key(),
                METHOD,
                URL,
                NOW - MAX_AGE - 1,
                "p1",
                Some(&token),
            ),
            "dpop_stale",
        ),
        with_proof(
            "proof from the future",
            &token,
            make_proof(
                &holder_key(),
                METHOD,
                URL,
                NOW + MAX_FUTURE + 1,
                "p1",
                Some(&token),
            ),
            "dpop_stale",
        ),
        with_proof(
            "valid proof by another key",
            &token,
            make_proof(&other, METHOD, URL, NOW, "p1", Some(&token)),
            "dpop_wrong_key",
        ),
        // may_act lets its principal ask the issuer for its own mandate (a pull); the holder's
        // mandate itself stays bound to the holder's key.
        with_proof(
            "the principal may_act names presents the holder's mandate with its own proof",
            &{
                let mut c = chain_claims();
                c.may_act = Some(mandate_core::claims::MayAct {
                    sub: "agent:reviewer".into(),
                });
                mandate(&c)
            },
            {
                let mut c = chain_claims();
                c.may_act = Some(mandate_core::claims::MayAct {
                    sub: "agent:reviewer".into(),
                });
                let t = mandate(&c);
                make_proof(&other, METHOD, URL, NOW, "p1", Some(&t))
            },
            "dpop_wrong_key",
        ),
        with_proof(
            "proof without ath",
            &token,
            make_proof(&holder_key(), METHOD, URL, NOW, "p1", None),
            "dpop_bad_ath",
        ),
        with_proof(
            "proof for another token",
            &token,
            make_proof(&holder_key(), METHOD, URL, NOW, "p1", Some("another")),
            "dpop_bad_ath",
        ),
        with_proof(
            "garbage proof",
            &token,
            "not.a.proof".into(),
            "dpop_malformed",
        ),
        with_proof(
            "the mandate as its own proof",
            &token,
            token.clone(),
            "dpop_malformed",
        ),
        Case {
            dpop: None,
            ..dpop_case(
                "DPoP scheme without a proof",
                token.clone(),
                Some("dpop_missing"),
            )
        },
        Case {
            authorization: format!("Bearer {token}"),
            ..dpop_case(
                "bearer use of a DPoP-bound mandate",
                token.clone(),
                Some("bearer_use_of_dpop_bound_token"),
            )
        },
        Case {
            authorization: format!("DPoP {}", mandate(&bearer_claims())),
            ..dpop_case(
                "DPoP scheme for a bearer mandate",
                token.clone(),
                Some("dpop_scheme_for_bearer_token"),
            )
        },
        Case {
            authorization: format!("Basic {token}"),
            ..dpop_case(
                "Basic scheme",
                token.clone(),
                Some("malformed_authorization"),
            )
        },
        Case {
            authorization: "DPoP".into(),
            ..dpop_case(
                "scheme without token",
                token.clone(),
                Some("malformed_authorization"),
            )
        },
        Case {
            authorization: token.clone(),
            ..dpop_case(
                "token without scheme",
                token.clone(),
                Some("malformed_authorization"),
            )
        },
        revoked(
            "the mandate itself revoked",
            RevokedKind::Jti,
            "j-coder",
            0,
            Some("revoked"),
        ),
        revoked(
            "root ancestor revoked",
            RevokedKind::Jti,
            "j-alice",
            0,
            Some("ancestor_revoked"),
        ),
        revoked(
            "parent revoked",
            RevokedKind::Jti,
            "j-planner",
            0,
            Some("ancestor_revoked"),
        ),
        revoked(
            "principal in the middle of the chain revoked",
            RevokedKind::Principal,
            "agent:planner",
            NOW - 60,
            Some("principal_revoked"),
        ),
        revoked(
            "root principal revoked",
            RevokedKind::Principal,
            "user:alice",
            NOW,
            Some("principal_revoked"),
        ),
        revoked(
            "principal revoked before this mandate was issued",
            RevokedKind::Principal,
            "agent:planner",
            NOW - 61,
            None,
        ),
        revoked(
            "issuer signing key revoked",
            RevokedKind::Key,
            &ikid,
            0,
            Some("key_revoked"),
        ),
        revoked(
            "holder key revoked",
            RevokedKind::Key,
            &kid(&holder_key()),
            0,
            Some("key_revoked"),
        ),
        revoked(
            "unrelated jti revoked",
            RevokedKind::Jti,
            "j-other",
            0,
            None,
        ),
    ]
}
