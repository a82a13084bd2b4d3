//! Authentication of API calls, as axum extractors: a handler that takes an [`AdminCaller`] or a
//! [`PepCaller`] runs only for a caller whose DPoP-bound mandate (bearer where the principal is
//! allowed it) for the issuer audience verified and who holds the right privilege. A refusal is
//! recorded here, once (unauthenticated ones counted per source, see [`crate::refusals`]), and
//! the caller found is left in the request's [`CallerSlot`] so that the refusal layer can name
//! it if the handler refuses the call later (a bad body, an unknown principal...).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use mandate_core::delegation::{ADMIN_SCOPE, APPROVE_SCOPE, AUDIT_SCOPE, PDP_SCOPE};
use mandate_core::{Scope, ScopeSet};

use crate::api_error::ApiError;
use crate::refusals::{CallerSlot, CallerSummary};
use crate::resource_auth::{self, Caller};
use crate::state::{now, AppState};

/// An admin calling with its own mandate holding `mandate:admin`.
pub struct AdminCaller(pub Caller);

/// An enforcement point asking for decisions: a mandate holding `mandate:pdp` (or
/// `mandate:admin`); bearer mandates are accepted for principals registered with bearer allowed.
pub struct PepCaller(pub Caller);

/// A gateway run apart from the authority appending to its audit log or holding calls at its
/// approval desk: a DPoP-bound mandate for the issuer holding `mandate:audit` (never bearer:
/// what it appends becomes the installation's record, so the presentation must prove the key). `mandate:admin` does not stand in for it: an
/// admin who wants to append asks for `mandate:audit`, which the admin role grants.
pub struct AuditCaller(pub Caller);

/// A human voting on, or looking at, approval requests: a user's own DPoP-bound mandate (not
/// delegated) for the issuer holding `mandate:approve`. Which requests it may vote on is each
/// request's own list of approvers (`mandate_core::approval::check_vote`).
pub struct ApproverCaller(pub Caller);

/// The action recorded for refused approval calls.
pub const APPROVALS_ACTION: &str = "approvals.request";

/// The action recorded for refused admin calls.
pub const ADMIN_ACTION: &str = "admin.request";
/// The action recorded for refused decision point calls.
pub const PDP_ACTION: &str = "pdp.request";
/// The action recorded for refused audit append and key calls.
pub const AUDIT_ACTION: &str = "audit.request";

fn holds(c: &Caller, wanted: &[&str]) -> bool {
    ScopeSet::parse(&c.claims.scope).is_ok_and(|s| {
        wanted
            .iter()
            .any(|w| s.covers(&Scope::parse(w).expect("constant")))
    })
}

/// Verifies the presentation; a refusal is recorded (unauthenticated, per source).
async fn authenticate(
    parts: &Parts,
    st: &AppState,
    bearer_ok: bool,
    action: &str,
) -> Result<Caller, ApiError> {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0);
    match resource_auth::authenticate_with(
        st,
        &parts.method,
        uri,
        &parts.headers,
        &st.cfg.issuer,
        now(),
        bearer_ok,
    )
    .await
    {
        Ok(c) => {
            if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                let _ = slot.0.set(CallerSummary {
                    principal: c.claims.client_id.clone(),
                    chain: c.claims.chain_to_holder(),
                    jti: c.claims.jti.clone(),
                });
            }
            Ok(c)
        }
        Err(e) => {
            let source = crate::pdp::peer_source(&parts.extensions);
            crate::audit::refusal(st, None, source, action, e.code(), e.description()).await;
            Err(e.audited())
        }
    }
}

/// Records a refusal of an authenticated caller as its own event.
async fn refuse(st: &AppState, c: &Caller, kind: &str, action: &str, e: ApiError) -> ApiError {
    let mut ev = crate::audit::new_event(kind, &c.claims.client_id, action);
    ev.chain = c.claims.chain_to_holder();
    ev.jti = Some(c.claims.jti.clone());
    ev.result = "refused".into();
    ev.error = Some(e.code().to_string());
    ev.reasons = vec![e.description().to_string()];
    ev.details.insert("authenticated".into(), true.into());
    let _ = st.audit(&ev).await;
    e.audited()
}

impl FromRequestParts<Arc<AppState>> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let c = authenticate(parts, st, false, ADMIN_ACTION).await?;
        if !holds(&c, &[ADMIN_SCOPE])
            || !c.principal.is_admin()
            || c.claims.sub != c.claims.client_id
        {
            let e = ApiError::forbidden(format!(
                "this call needs an admin's own mandate with scope {ADMIN_SCOPE}; {} is not one",
                c.claims.client_id
            ));
            let kind = mandate_audit::event::kinds::ADMIN_REFUSED;
            return Err(refuse(st, &c, kind, ADMIN_ACTION, e).await);
        }
        Ok(AdminCaller(c))
    }
}

impl FromRequestParts<Arc<AppState>> for ApproverCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let c = authenticate(parts, st, false, APPROVALS_ACTION).await?;
        if !holds(&c, &[APPROVE_SCOPE])
            || !c.claims.client_id.starts_with("user:")
            || c.claims.sub != c.claims.client_id
        {
            let e = ApiError::forbidden(format!(
                "approvals are seen and voted on by a user with their own mandate holding {APPROVE_SCOPE} (`mandate approvals ... --as user:NAME`); {}'s is not one",
                c.claims.client_id
            ));
            let kind = mandate_audit::event::kinds::REQUEST_REFUSED;
            return Err(refuse(st, &c, kind, APPROVALS_ACTION, e).await);
        }
        Ok(ApproverCaller(c))
    }
}

/// What an enforcement point's privilege is, for [`enforcement_point`].
struct Privilege {
    /// The scopes any one of which grants it.
    scopes: &'static [&'static str],
    /// The scope to name in a refusal.
    needed: &'static str,
    /// What the caller is trying to do, for the refusal's wording.
    doing: &'static str,
    /// Whether bearer mandates are accepted (for principals registered with bearer allowed).
    bearer_ok: bool,
    /// The action its refusals are recorded under.
    action: &'static str,
}

/// The one check of every enforcement point's call to the authority (decision point, audit
/// append): authenticated for the issuer audience, then the privilege; a refusal of an
/// authenticated caller is its own `request.refused` event.
async fn enforcement_point(
    parts: &Parts,
    st: &AppState,
    p: &Privilege,
) -> Result<Caller, ApiError> {
    let c = authenticate(parts, st, p.bearer_ok, p.action).await?;
    if !holds(&c, p.scopes) {
        let needed = p.needed;
        let e = ApiError::forbidden(format!(
            "{} needs a mandate with scope {needed} and audience {}; {}'s mandate holds {:?} (the scope is granted only explicitly: `mandate agent create NAME --scopes {needed}`)",
            p.doing, st.cfg.issuer, c.claims.client_id, c.claims.scope
        ));
        let kind = mandate_audit::event::kinds::REQUEST_REFUSED;
        return Err(refuse(st, &c, kind, p.action, e).await);
    }
    Ok(c)
}

impl FromRequestParts<Arc<AppState>> for PepCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let p = Privilege {
            scopes: &[PDP_SCOPE, ADMIN_SCOPE],
            needed: PDP_SCOPE,
            doing: "asking for policy decisions",
            bearer_ok: true,
            action: PDP_ACTION,
        };
        enforcement_point(parts, st, &p).await.map(PepCaller)
    }
}

impl FromRequestParts<Arc<AppState>> for AuditCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let p = Privilege {
            scopes: &[AUDIT_SCOPE],
            needed: AUDIT_SCOPE,
            doing: "appending to the audit log, reading its key or its health, or holding calls for approval",
            bearer_ok: false,
            action: AUDIT_ACTION,
        };
        enforcement_point(parts, st, &p).await.map(AuditCaller)
    }
}

impl PepCaller {
    /// Whether the caller is an admin (who may read every policy document).
    pub fn is_admin(&self) -> bool {
        holds(&self.0, &[ADMIN_SCOPE]) && self.0.principal.is_admin()
    }
}
