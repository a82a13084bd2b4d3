//! The mandate a gateway forwards to a Mandate-aware upstream for one call.
//!
//! The agent's own mandate is never forwarded (it is DPoP-bound to the agent's key and valid at
//! the gateway). Instead the gateway has the issuer mint, per forwarded request, a short mandate
//! that says the same thing about who is behind the call (same `sub`, same `act` chain, same
//! holder in `client_id`, every ancestor's `jti` in `mandate.parents` so revoking any of them
//! revokes it), narrowed to what this one request needs: the audience is the upstream's own
//! (never the gateway's, so an upstream cannot replay it at the gateway), the scope is the
//! call's, the lifetime at most [`FORWARD_TTL`] and never past the parent's, and it cannot be
//! delegated further (`max_depth` is its own depth) nor forwarded again. It is marked
//! `mandate.forwarded`, which is how a verifier knows that `parents` holds one more `jti` than
//! `depth` (the mandate it was minted under).
//!
//! It carries no `cnf`: the gateway cannot prove possession of the agent's key, and binding it to
//! the gateway's key would tell the upstream nothing it could check. It is a bearer mandate for
//! one audience, one request and at most a minute.

use super::{check_bounds, DelegationError, Mint};
use crate::claims::{Audience, MandateClaims, MandateInfo};
use crate::scope::ScopeSet;

/// Longest life of a forwarded mandate, in seconds.
pub const FORWARD_TTL: i64 = 60;

/// The claims of the mandate forwarded to `audience` for a request needing `scope`, made under
/// the verified `parent`. The scope must be covered by the parent's (the gateway only forwards
/// what the parent allowed), and reserved `mandate:*` scopes are never forwarded.
pub fn for_upstream_call(
    mint: Mint<'_>,
    parent: &MandateClaims,
    audience: &str,
    scope: &ScopeSet,
) -> Result<MandateClaims, DelegationError> {
    if scope.is_empty() {
        return Err(DelegationError::InvalidScope(
            "a forwarded mandate names at least one scope".into(),
        ));
    }
    let held = ScopeSet::parse(&parent.scope)
        .map_err(|e| DelegationError::InvalidScope(format!("the parent's scope: {e}")))?;
    if let Some(s) = scope.iter().find(|s| s.is_reserved() || !held.covers(s)) {
        return Err(DelegationError::InvalidScope(format!(
            "{s} is not forwarded: the parent mandate does not cover it or it is Mandate's own"
        )));
    }
    if audience.is_empty() || audience == super::ANY_AUDIENCE || parent.aud.contains(audience) {
        return Err(DelegationError::InvalidTarget(format!(
            "a forwarded mandate's audience must be the upstream's own, not {audience:?}"
        )));
    }
    let audiences = vec![audience.to_string()];
    check_bounds(scope, &audiences)?;
    if parent.mandate.forwarded {
        return Err(DelegationError::InvalidGrant(
            "a forwarded mandate is for its upstream alone and is not forwarded again".into(),
        ));
    }
    if parent.exp <= mint.now {
        return Err(DelegationError::InvalidGrant(
            "the parent mandate has expired".into(),
        ));
    }
    let mut parents = parent.mandate.parents.clone();
    parents.push(parent.jti.clone());
    Ok(MandateClaims {
        iss: mint.issuer.to_string(),
        sub: parent.sub.clone(),
        aud: Audience::from_vec(audiences),
        scope: scope.to_string(),
        iat: mint.now,
        nbf: mint.now,
        exp: (mint.now + FORWARD_TTL).min(parent.exp),
        jti: mint.jti.to_string(),
        client_id: parent.client_id.clone(),
        act: parent.act.clone(),
        may_act: None,
        cnf: None,
        authorization_details: None,
        mandate: MandateInfo {
            depth: parent.mandate.depth,
            parents,
            max_depth: parent.mandate.depth,
            forwarded: true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Act, Cnf};

    fn parent() -> MandateClaims {
        MandateClaims {
            iss: "https://auth".into(),
            sub: "user:alice".into(),
            aud: Audience::from_vec(vec!["mcp:files".into()]),
            scope: "files:* repo:read".into(),
            iat: 1000,
            nbf: 1000,
            exp: 1300,
            jti: "p2".into(),
            client_id: "agent:coder".into(),
            act: Some(Act {
                sub: "agent:coder".into(),
                act: Some(Box::new(Act {
                    sub: "agent:planner".into(),
                    act: None,
                })),
            }),
            may_act: None,
            cnf: Some(Cnf { jkt: "k".into() }),
            authorization_details: None,
            mandate: MandateInfo {
                depth: 2,
                parents: vec!["p0".into(), "p1".into()],
                max_depth: 4,
                forwarded: false,
            },
        }
    }

    fn mint(now: i64) -> Mint<'static> {
        Mint {
            issuer: "https://auth",
            jti: "f1",
            now,
        }
    }

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn a_forwarded_mandate_keeps_the_chain_and_narrows_to_the_call() {
        let p = parent();
        let f = for_upstream_call(
            mint(1100),
            &p,
            "https://files.internal",
            &scopes("files:read"),
        )
        .unwrap();
        assert_eq!(f.sub, p.sub);
        assert_eq!(f.act, p.act);
        assert_eq!(f.client_id, p.client_id);
        assert_eq!(f.chain_to_holder(), p.chain_to_holder());
        assert_eq!(f.aud.as_slice(), ["https://files.internal"]);
        assert_eq!(f.scope, "files:read");
        assert_eq!(f.exp, 1100 + FORWARD_TTL);
        assert_eq!(f.mandate.parents, ["p0", "p1", "p2"]);
        assert_eq!(
            f.mandate.max_depth, f.mandate.depth,
            "cannot be delegated on"
        );
        assert!(f.cnf.is_none() && f.may_act.is_none());
        assert!(f.mandate.forwarded);
        // Mandate's own verifier takes it (an upstream checks it like any mandate): one parent
        // more than its depth, because it is marked forwarded, and only then.
        crate::verify::check_chain(&f).expect("a forwarded mandate has a consistent chain");
        let mut unmarked = f.clone();
        unmarked.mandate.forwarded = false;
        assert!(crate::verify::check_chain(&unmarked).is_err());
    }

    #[test]
    fn a_forwarded_mandate_is_not_forwarded_again() {
        let f = for_upstream_call(mint(1100), &parent(), "u", &scopes("files:read")).unwrap();
        assert!(matches!(
            for_upstream_call(mint(1100), &f, "v", &scopes("files:read")),
            Err(DelegationError::InvalidGrant(_))
        ));
    }

    #[test]
    fn a_forwarded_mandate_never_outlives_its_parent() {
        let f = for_upstream_call(mint(1290), &parent(), "u", &scopes("files:read")).unwrap();
        assert_eq!(f.exp, 1300);
        assert!(for_upstream_call(mint(1300), &parent(), "u", &scopes("files:read")).is_err());
    }

    #[test]
    fn a_forwarded_mandate_takes_only_scopes_the_parent_covers_and_never_reserved_ones() {
        let p = parent();
        for bad in ["deploy:prod", "files:read deploy:prod", "mandate:pdp"] {
            assert!(
                matches!(
                    for_upstream_call(mint(1100), &p, "u", &scopes(bad)),
                    Err(DelegationError::InvalidScope(_))
                ),
                "{bad}"
            );
        }
        assert!(for_upstream_call(mint(1100), &p, "u", &ScopeSet::default()).is_err());
    }

    #[test]
    fn a_forwarded_mandate_is_never_valid_where_the_parent_is() {
        let p = parent();
        for aud in ["mcp:files", "*", ""] {
            assert!(
                matches!(
                    for_upstream_call(mint(1100), &p, aud, &scopes("files:read")),
                    Err(DelegationError::InvalidTarget(_))
                ),
                "{aud:?}"
            );
        }
    }
}
