//! The delegation rules of the token endpoint, as pure functions.
//!
//! `client_credentials` mints a principal's own mandate within its ceiling; `exchange` derives a
//! child mandate from a verified parent for another principal. Every hop narrows: a child's scopes
//! are covered by its parent's and by the delegate's ceiling, its audiences are a subset of both,
//! it never outlives its parent, and its depth stays within the parent's and the ceiling's bound.
//! Randomness (`jti`) and time come in as arguments.

use crate::claims::{Act, Audience, Cnf, MandateClaims, MandateInfo, MayAct, MAX_CHAIN_DEPTH};
use crate::principal::PrincipalName;
use crate::scope::{Scope, ScopeSet};
use crate::verify::VerifiedMandate;

/// Lifetime of a mandate when the request names none: 10 minutes (capped by `max_ttl`).
pub const DEFAULT_TTL: i64 = 600;
/// The scope that lets a user administer Mandate. Only admins hold it; it is never delegated.
pub const ADMIN_SCOPE: &str = "mandate:admin";
/// The scope a policy enforcement point needs to ask the authority for decisions.
pub const PDP_SCOPE: &str = "mandate:pdp";
/// The scope a gateway run apart from the authority (`mandate gateway --authority URL`) needs to
/// append its `tool.call` events to the authority's audit log and to read the installation's
/// audit HMAC key. It is a privilege like `mandate:pdp`: what a holder appends becomes part of
/// the installation's tamper-evident record, so no wildcard may grant it by implication.
pub const AUDIT_SCOPE: &str = "mandate:audit";
/// The scope a human needs to see approval requests and vote on them (`mandate approvals`).
/// Every user may hold it (which requests they may vote on is each request's own list); no agent
/// ever does, and it is never delegated, so only the human's own key casts their vote.
pub const APPROVE_SCOPE: &str = "mandate:approve";
/// Mandate's own privileges. No wildcard covers them (see [`crate::scope`]): a principal holds
/// one only when its role grants it (admins hold them all) or its ceiling names it exactly
/// (`mandate:pdp` and `mandate:audit`; `mandate:admin` needs the admin role). They are never
/// delegated.
pub const RESERVED_SCOPES: [&str; 4] = [ADMIN_SCOPE, PDP_SCOPE, AUDIT_SCOPE, APPROVE_SCOPE];
/// Most scopes one mandate carries (a ceiling may list more, up to [`MAX_CEILING_SCOPES`]).
pub const MAX_SCOPES: usize = 128;
/// Most scopes a ceiling lists.
pub const MAX_CEILING_SCOPES: usize = 256;
/// Most audiences one mandate (or a ceiling) names.
pub const MAX_AUDIENCES: usize = 16;
/// The audience value that means "any audience" in a ceiling.
pub const ANY_AUDIENCE: &str = "*";

/// Why a mandate could not be issued. Each variant maps to an RFC 6749 §5.2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationError {
    /// A requested scope is not covered (`invalid_scope`).
    #[error("{0}")]
    InvalidScope(String),
    /// A requested audience is not allowed (`invalid_target`).
    #[error("{0}")]
    InvalidTarget(String),
    /// The request itself is unacceptable (`invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The subject token cannot be exchanged (`invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The caller may not make this exchange (`unauthorized_client`).
    #[error("{0}")]
    Unauthorized(String),
}

impl DelegationError {
    /// The RFC 6749 §5.2 `error` value.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            DelegationError::InvalidScope(_) => "invalid_scope",
            DelegationError::InvalidTarget(_) => "invalid_target",
            DelegationError::InvalidRequest(_) => "invalid_request",
            DelegationError::InvalidGrant(_) => "invalid_grant",
            DelegationError::Unauthorized(_) => "unauthorized_client",
        }
    }
}

/// What a principal may ever hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceiling {
    /// Scopes it may hold.
    pub scopes: ScopeSet,
    /// Audiences it may hold mandates for; `*` means any.
    pub audiences: Vec<String>,
    /// Longest lifetime of a mandate it may hold, in seconds.
    pub max_ttl: i64,
    /// Deepest chain position it may hold a mandate at.
    pub max_depth: u32,
}

impl Ceiling {
    fn allows_audience(&self, aud: &str) -> bool {
        self.audiences.iter().any(|a| a == ANY_AUDIENCE || a == aud)
    }
}

/// The principal who will hold the new mandate.
#[derive(Debug, Clone, Copy)]
pub struct Grantee<'a> {
    /// Its name.
    pub name: &'a PrincipalName,
    /// Its ceiling.
    pub ceiling: &'a Ceiling,
    /// Whether it has the admin role (only admins may hold [`ADMIN_SCOPE`]).
    pub admin: bool,
    /// Thumbprint of the key the mandate is bound to; `None` issues a bearer mandate.
    pub jkt: Option<&'a str>,
}

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Requested scopes; `None` means "the same as the parent" (exchange only).
    pub scopes: Option<ScopeSet>,
    /// Requested audiences; empty means "the same as the parent" or the ceiling's only audience.
    pub audiences: Vec<String>,
    /// Requested lifetime in seconds.
    pub ttl: Option<i64>,
    /// Who may later pull an exchange of the new mandate.
    pub may_act: Option<PrincipalName>,
}

/// The issuer's part of a new mandate.
#[derive(Debug, Clone, Copy)]
pub struct Mint<'a> {
    /// Issuer URL.
    pub issuer: &'a str,
    /// Fresh unique id.
    pub jti: &'a str,
    /// Current time.
    pub now: i64,
}

fn list(v: &[&Scope]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn check_ceiling_scopes(to: &Grantee<'_>, scopes: &ScopeSet) -> Result<(), DelegationError> {
    let (reserved, ordinary): (Vec<&Scope>, Vec<&Scope>) =
        scopes.iter().partition(|s| s.is_reserved());
    let over: Vec<&Scope> = ordinary
        .into_iter()
        .filter(|s| !to.ceiling.scopes.covers(s))
        .collect();
    if !over.is_empty() {
        let ceiling = if to.ceiling.scopes.is_empty() {
            "none".to_string()
        } else {
            to.ceiling.scopes.to_string()
        };
        return Err(DelegationError::InvalidScope(format!(
            "{} may not hold {} (its ceiling allows: {ceiling}); request narrower scopes or raise its ceiling",
            to.name,
            list(&over)
        )));
    }
    for s in reserved {
        check_reserved_scope(s)?;
        if s.as_str() == ADMIN_SCOPE && !to.admin {
            return Err(DelegationError::InvalidScope(format!(
                "scope {s} is Mandate's administration, which only users with the admin role may hold"
            )));
        }
        // Every human may vote where a request names them; no agent may.
        if s.as_str() == APPROVE_SCOPE {
            if to.name.kind() == crate::principal::PrincipalKind::User {
                continue;
            }
            return Err(DelegationError::InvalidScope(format!(
                "{s} is for humans voting on approval requests; {} is not a user",
                to.name
            )));
        }
        // Covered only by itself: an explicit grant in the ceiling, or the admin role.
        if !to.admin && !to.ceiling.scopes.covers(s) {
            return Err(DelegationError::InvalidScope(format!(
                "{} may not hold {s}: it is a privilege granted only explicitly (give the principal a ceiling that names {s}; `*` does not include it)",
                to.name
            )));
        }
    }
    Ok(())
}

/// A reserved scope must be one of Mandate's privileges, named exactly.
fn check_reserved_scope(s: &Scope) -> Result<(), DelegationError> {
    if RESERVED_SCOPES.contains(&s.as_str()) {
        return Ok(());
    }
    Err(DelegationError::InvalidScope(format!(
        "scope {s} is in Mandate's own namespace but is not one of its privileges ({}); they are named one by one, never by a wildcard",
        RESERVED_SCOPES.join(", ")
    )))
}

/// Checks a ceiling before it is stored: Mandate's privileges appear only by exact name, and
/// `mandate:admin` comes only with the admin role (`admin_role`), never from a ceiling.
pub fn check_ceiling(scopes: &ScopeSet, admin_role: bool) -> Result<(), DelegationError> {
    let n = scopes.iter().count();
    if n > MAX_CEILING_SCOPES {
        return Err(DelegationError::InvalidScope(format!(
            "a ceiling lists at most {MAX_CEILING_SCOPES} scopes ({n} given): use wildcards (github:*)"
        )));
    }
    for s in scopes.iter().filter(|s| s.is_reserved()) {
        check_reserved_scope(s)?;
        if s.as_str() == ADMIN_SCOPE && !admin_role {
            return Err(DelegationError::InvalidScope(format!(
                "{ADMIN_SCOPE} is not granted by a ceiling: create the user with --role admin"
            )));
        }
    }
    Ok(())
}

/// The size bounds of one mandate, so that what is issued always fits the verifiers' token limit
/// (`jws::MAX_TOKEN_LEN`) and the policy input stays small.
fn check_bounds(scopes: &ScopeSet, audiences: &[String]) -> Result<(), DelegationError> {
    let n = scopes.iter().count();
    if n > MAX_SCOPES {
        return Err(DelegationError::InvalidScope(format!(
            "{n} scopes requested: a mandate carries at most {MAX_SCOPES}; use wildcards (github:*) or several mandates"
        )));
    }
    if audiences.len() > MAX_AUDIENCES {
        return Err(DelegationError::InvalidTarget(format!(
            "{} audiences requested: a mandate names at most {MAX_AUDIENCES}",
            audiences.len()
        )));
    }
    if let Some(a) = audiences
        .iter()
        .find(|a| a.len() > 512 || a.chars().any(char::is_control))
    {
        return Err(DelegationError::InvalidTarget(format!(
            "audience {:?} is not usable: at most 512 characters, no control characters",
            a.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks the size of a signed mandate against what verifiers accept, so that nothing is issued
/// that every verifier would refuse.
pub fn check_encoded_len(len: usize) -> Result<(), DelegationError> {
    if len > crate::jws::MAX_TOKEN_LEN {
        return Err(DelegationError::InvalidScope(format!(
            "the mandate would be {len} bytes, over the {} bytes verifiers accept: request fewer scopes or audiences",
            crate::jws::MAX_TOKEN_LEN
        )));
    }
    Ok(())
}

fn check_ttl(to: &Grantee<'_>, ttl: Option<i64>) -> Result<i64, DelegationError> {
    match ttl {
        Some(t) if t <= 0 => Err(DelegationError::InvalidRequest(
            "requested lifetime must be positive".into(),
        )),
        Some(t) if t > to.ceiling.max_ttl => Err(DelegationError::InvalidRequest(format!(
            "requested lifetime {t}s exceeds {}'s max_ttl of {}s",
            to.name, to.ceiling.max_ttl
        ))),
        Some(t) => Ok(t),
        None => Ok(DEFAULT_TTL.min(to.ceiling.max_ttl)),
    }
}

fn check_audiences(to: &Grantee<'_>, auds: &[String]) -> Result<(), DelegationError> {
    if let Some(a) = auds.iter().find(|a| !to.ceiling.allows_audience(a)) {
        return Err(DelegationError::InvalidTarget(format!(
            "{} may not hold mandates for audience {a} (its ceiling allows: {})",
            to.name,
            if to.ceiling.audiences.is_empty() {
                "none".into()
            } else {
                to.ceiling.audiences.join(" ")
            }
        )));
    }
    Ok(())
}

/// Mints a principal's own mandate (`grant_type=client_credentials`).
pub fn client_credentials(
    mint: Mint<'_>,
    to: Grantee<'_>,
    req: Request,
) -> Result<MandateClaims, DelegationError> {
    let scopes = match req.scopes {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(DelegationError::InvalidScope(format!(
                "name the scopes you need with scope= ({} may hold: {})",
                to.name, to.ceiling.scopes
            )))
        }
    };
    check_ceiling_scopes(&to, &scopes)?;
    let audiences = if req.audiences.is_empty() {
        match to.ceiling.audiences.as_slice() {
            [one] if one != ANY_AUDIENCE => vec![one.clone()],
            _ => {
                return Err(DelegationError::InvalidTarget(
                    "name the audience the mandate is for with audience= (or resource=)".into(),
                ))
            }
        }
    } else {
        req.audiences
    };
    check_bounds(&scopes, &audiences)?;
    check_audiences(&to, &audiences)?;
    let ttl = check_ttl(&to, req.ttl)?;
    check_may_act(&to, req.may_act.as_ref())?;
    Ok(MandateClaims {
        iss: mint.issuer.to_string(),
        sub: to.name.to_string(),
        aud: Audience::from_vec(audiences),
        scope: scopes.to_string(),
        iat: mint.now,
        nbf: mint.now,
        exp: mint.now + ttl,
        jti: mint.jti.to_string(),
        client_id: to.name.to_string(),
        act: None,
        may_act: req.may_act.map(|p| MayAct { sub: p.to_string() }),
        cnf: to.jkt.map(|j| Cnf { jkt: j.to_string() }),
        authorization_details: None,
        mandate: MandateInfo {
            depth: 0,
            parents: vec![],
            max_depth: to.ceiling.max_depth.min(MAX_CHAIN_DEPTH),
            forwarded: false,
        },
    })
}

fn check_may_act(to: &Grantee<'_>, may_act: Option<&PrincipalName>) -> Result<(), DelegationError> {
    if may_act == Some(to.name) {
        return Err(DelegationError::InvalidRequest(
            "may_act names the holder itself".into(),
        ));
    }
    Ok(())
}

/// How the exchange was asked for.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// RFC 8693 push: the holder of the subject token delegates to `requested_actor`.
    Holder {
        /// The authenticated caller.
        name: &'a str,
        /// Thumbprint of the key the caller authenticated with.
        jkt: &'a str,
    },
    /// RFC 8693 pull: the caller acts for the subject, allowed by the subject token's `may_act`.
    Actor {
        /// The authenticated caller.
        name: &'a str,
    },
}

/// Checks that the authenticated caller may exchange `parent` in the way it asked.
pub fn authorize_exchange(
    parent: &VerifiedMandate,
    caller: Caller<'_>,
) -> Result<(), DelegationError> {
    let p = parent.claims();
    match caller {
        Caller::Holder { name, jkt } => {
            if p.client_id != name {
                return Err(DelegationError::InvalidGrant(format!(
                    "subject_token is held by {}, not by {name}: only the holder can delegate it",
                    p.client_id
                )));
            }
            if p.cnf.as_ref().is_some_and(|c| c.jkt != jkt) {
                return Err(DelegationError::InvalidGrant(
                    "subject_token is bound to another key than the one this client authenticated with".into(),
                ));
            }
        }
        Caller::Actor { name } => {
            if p.may_act.as_ref().map(|m| m.sub.as_str()) != Some(name) {
                return Err(DelegationError::Unauthorized(format!(
                    "subject_token's may_act does not name {name}: ask its holder to delegate with requested_actor instead"
                )));
            }
        }
    }
    Ok(())
}

/// Derives a child mandate for `to` from a verified parent (`grant_type=...:token-exchange`).
/// The caller must have passed [`authorize_exchange`].
pub fn exchange(
    mint: Mint<'_>,
    parent: &VerifiedMandate,
    to: Grantee<'_>,
    req: Request,
) -> Result<MandateClaims, DelegationError> {
    let p = parent.claims();
    if p.exp <= mint.now {
        return Err(DelegationError::InvalidGrant(
            "subject_token has expired".into(),
        ));
    }
    // A principal appears at most once in a chain, so the delegation tree stays a tree and every
    // hop is attributable to a distinct party.
    if p.chain().contains(&to.name.as_str()) {
        return Err(DelegationError::InvalidRequest(format!(
            "{} is already in this delegation chain ({}): delegate to another agent",
            to.name,
            p.chain().join(" -> ")
        )));
    }
    let depth = p.mandate.depth + 1;
    if depth > p.mandate.max_depth {
        return Err(DelegationError::InvalidGrant(format!(
            "delegation depth limit reached: this chain allows at most {} hops",
            p.mandate.max_depth
        )));
    }
    if depth > to.ceiling.max_depth {
        return Err(DelegationError::InvalidGrant(format!(
            "{} may not hold mandates deeper than {} hops (this would be hop {depth})",
            to.name, to.ceiling.max_depth
        )));
    }
    let parent_scopes = ScopeSet::parse(&p.scope)
        .map_err(|e| DelegationError::InvalidGrant(format!("subject_token scope: {e}")))?;
    let scopes = req.scopes.unwrap_or_else(|| parent_scopes.clone());
    if scopes.is_empty() {
        return Err(DelegationError::InvalidScope(
            "request at least one scope".into(),
        ));
    }
    let over = parent_scopes.uncovered(&scopes);
    if !over.is_empty() {
        return Err(DelegationError::InvalidScope(format!(
            "the subject_token does not hold {} (it holds: {}); a delegate can only get a subset",
            list(&over),
            p.scope
        )));
    }
    check_ceiling_scopes(&to, &scopes)?;
    if let Some(s) = scopes.iter().find(|s| s.is_reserved()) {
        return Err(DelegationError::InvalidScope(format!(
            "scope {s} covers Mandate's own administration, which is never delegated"
        )));
    }
    let audiences = if req.audiences.is_empty() {
        p.aud.as_slice().to_vec()
    } else {
        req.audiences
    };
    if let Some(a) = audiences.iter().find(|a| !p.aud.contains(a)) {
        return Err(DelegationError::InvalidTarget(format!(
            "the subject_token is not valid for audience {a} (it is for: {})",
            p.aud.as_slice().join(" ")
        )));
    }
    check_bounds(&scopes, &audiences)?;
    check_audiences(&to, &audiences)?;
    let ttl = check_ttl(&to, req.ttl)?;
    check_may_act(&to, req.may_act.as_ref())?;
    let mut parents = p.mandate.parents.clone();
    parents.push(p.jti.clone());
    Ok(MandateClaims {
        iss: mint.issuer.to_string(),
        sub: p.sub.clone(),
        aud: Audience::from_vec(audiences),
        scope: scopes.to_string(),
        iat: mint.now,
        nbf: mint.now,
        exp: (mint.now + ttl).min(p.exp),
        jti: mint.jti.to_string(),
        client_id: to.name.to_string(),
        act: Some(Act {
            sub: to.name.to_string(),
            act: p.act.clone().map(Box::new),
        }),
        may_act: req.may_act.map(|m| MayAct { sub: m.to_string() }),
        cnf: to.jkt.map(|j| Cnf { jkt: j.to_string() }),
        authorization_details: None,
        mandate: MandateInfo {
            depth,
            parents,
            max_depth: p.mandate.max_depth.min(to.ceiling.max_depth),
            forwarded: false,
        },
    })
}

mod forward;
pub use forward::{for_upstream_call, FORWARD_TTL};

#[cfg(test)]
mod tests;
