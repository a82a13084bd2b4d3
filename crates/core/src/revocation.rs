//! Revocation as data: entries from the authority's feed, the set they build, and the pure check
//! of a mandate against it.
//!
//! Revoking a mandate (`jti`) also revokes everything delegated from it, because every descendant
//! carries its ancestors in `mandate.parents`. Revoking a principal refuses every mandate issued
//! up to that moment in which it appears (as subject, as an actor anywhere in the chain, or as
//! holder). Revoking a key refuses mandates signed by it (issuer key) or bound to it (`cnf.jkt`).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::claims::MandateClaims;

/// What an entry revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokedKind {
    /// One mandate and all its descendants, by `jti`.
    Jti,
    /// A principal (`user:...` or `agent:...`): every mandate it appears in, issued until then.
    Principal,
    /// A key by `kid`: an issuer signing key or a holder's key.
    Key,
}

impl RevokedKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedKind::Jti => "jti",
            RevokedKind::Principal => "principal",
            RevokedKind::Key => "key",
        }
    }
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// Position in the feed (strictly increasing).
    pub seq: i64,
    /// What is revoked.
    pub kind: RevokedKind,
    /// The `jti`, principal name or `kid`.
    pub value: String,
    /// When (Unix seconds).
    pub revoked_at: i64,
}

/// Why a mandate is revoked. Each variant has a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Revoked {
    /// The mandate itself was revoked.
    #[error("mandate {0} was revoked")]
    Token(String),
    /// A mandate it was delegated from was revoked.
    #[error("mandate {0}, an ancestor of this one, was revoked")]
    Ancestor(String),
    /// A principal in its chain was revoked.
    #[error("{0}, in this mandate's chain, was revoked")]
    Principal(String),
    /// Its signing key or its holder's key was revoked.
    #[error("key {0} was revoked")]
    Key(String),
}

impl Revoked {
    /// A stable, machine-readable reason code.
    pub fn code(&self) -> crate::refusal::RefusalCode {
        use crate::refusal::RefusalCode;
        match self {
            Revoked::Token(_) => RefusalCode::Revoked,
            Revoked::Ancestor(_) => RefusalCode::AncestorRevoked,
            Revoked::Principal(_) => RefusalCode::PrincipalRevoked,
            Revoked::Key(_) => RefusalCode::KeyRevoked,
        }
    }
}

/// Everything revoked so far, as of `cursor`.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    jtis: HashSet<String>,
    principals: HashMap<String, i64>,
    keys: HashSet<String>,
    cursor: i64,
}

impl RevocationSet {
    /// Adds an entry (idempotent; entries may arrive more than once).
    pub fn apply(&mut self, e: &RevocationEntry) {
        match e.kind {
            RevokedKind::Jti => {
                self.jtis.insert(e.value.clone());
            }
            RevokedKind::Principal => {
                let at = self
                    .principals
                    .entry(e.value.clone())
                    .or_insert(e.revoked_at);
                *at = (*at).max(e.revoked_at);
            }
            RevokedKind::Key => {
                self.keys.insert(e.value.clone());
            }
        }
        self.cursor = self.cursor.max(e.seq);
    }

    /// The feed position this set reflects.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.principals.len() + self.keys.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a principal was revoked at or after `issued_at` (so its mandates from then on
    /// are dead), used by the authority before issuing.
    pub fn principal_revoked_since(&self, name: &str, issued_at: i64) -> bool {
        self.principals.get(name).is_some_and(|&at| issued_at <= at)
    }

    /// Checks a mandate (its claims and the `kid` that signed it) against the set.
    pub fn check(&self, c: &MandateClaims, signing_kid: Option<&str>) -> Result<(), Revoked> {
        if self.jtis.contains(&c.jti) {
            return Err(Revoked::Token(c.jti.clone()));
        }
        if let Some(p) = c.mandate.parents.iter().find(|p| self.jtis.contains(*p)) {
            return Err(Revoked::Ancestor(p.clone()));
        }
        if let Some(kid) = signing_kid.filter(|k| self.keys.contains(*k)) {
            return Err(Revoked::Key(kid.to_string()));
        }
        if let Some(cnf) = c.cnf.as_ref().filter(|cnf| self.keys.contains(&cnf.jkt)) {
            return Err(Revoked::Key(cnf.jkt.clone()));
        }
        if !self.principals.is_empty() {
            let mut chain = c.chain();
            chain.push(&c.client_id);
            if let Some(p) = chain
                .into_iter()
                .find(|p| self.principal_revoked_since(p, c.iat))
            {
                return Err(Revoked::Principal(p.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Act, Audience, Cnf, MandateInfo};

    fn coder_mandate() -> MandateClaims {
        MandateClaims {
            iss: "i".into(),
            sub: "user:alice".into(),
            aud: Audience::One("a".into()),
            scope: "x:y".into(),
            iat: 100,
            nbf: 100,
            exp: 700,
            jti: "j3".into(),
            client_id: "agent:coder".into(),
            act: Some(Act {
                sub: "agent:coder".into(),
                act: Some(Box::new(Act {
                    sub: "agent:planner".into(),
                    act: None,
                })),
            }),
            may_act: None,
            cnf: Some(Cnf {
                jkt: "coderkey".into(),
            }),
            authorization_details: None,
            mandate: MandateInfo {
                depth: 2,
                parents: vec!["j1".into(), "j2".into()],
                max_depth: 5,
                forwarded: false,
            },
        }
    }

    fn entry(seq: i64, kind: RevokedKind, value: &str, at: i64) -> RevocationEntry {
        RevocationEntry {
            seq,
            kind,
            value: value.into(),
            revoked_at: at,
        }
    }

    #[test]
    fn each_kind_of_revocation_refuses_with_its_reason() {
        let c = coder_mandate();
        let cases = [
            (entry(1, RevokedKind::Jti, "j3", 0), "revoked"),
            (entry(1, RevokedKind::Jti, "j1", 0), "ancestor_revoked"),
            (entry(1, RevokedKind::Jti, "j2", 0), "ancestor_revoked"),
            (
                entry(1, RevokedKind::Principal, "agent:planner", 150),
                "principal_revoked",
            ),
            (
                entry(1, RevokedKind::Principal, "user:alice", 100),
                "principal_revoked",
            ),
            (
                entry(1, RevokedKind::Principal, "agent:coder", 100),
                "principal_revoked",
            ),
            (entry(1, RevokedKind::Key, "coderkey", 0), "key_revoked"),
            (entry(1, RevokedKind::Key, "issuerkid", 0), "key_revoked"),
        ];
        for (e, code) in cases {
            let mut set = RevocationSet::default();
            set.apply(&e);
            assert_eq!(
                set.check(&c, Some("issuerkid")).unwrap_err().code(),
                code,
                "{e:?}"
            );
        }
    }

    #[test]
    fn unrelated_revocations_and_later_mandates_pass() {
        let c = coder_mandate();
        let mut set = RevocationSet::default();
        for e in [
            entry(1, RevokedKind::Jti, "other", 0),
            entry(2, RevokedKind::Principal, "agent:reviewer", 500),
            // Revoked before this mandate was issued: it was re-enabled and this is new work.
            entry(3, RevokedKind::Principal, "agent:planner", 99),
            entry(4, RevokedKind::Key, "someone-else", 0),
        ] {
            set.apply(&e);
        }
        assert!(set.check(&c, Some("issuerkid")).is_ok());
        assert_eq!(set.cursor(), 4);
        assert_eq!(set.len(), 4);
    }
}
