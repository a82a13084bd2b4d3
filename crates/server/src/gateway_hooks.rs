//! The gateway's hooks when it runs in the authority's process: it authenticates with the
//! authority's own check (revocation view, the database as the DPoP replay store, the holder
//! still active), and appends events to the authority's audit log (`AppState` is an
//! `AuditSink`). Refusals of strangers are counted per source like every other API's.

use std::sync::Arc;

use mandate_core::MandateClaims;
use mandate_gateway::gateway::BoxFuture;
use mandate_gateway::{Authenticate, Presented};
use mandate_verify::{Refusal, RefusalCode};

use crate::state::{now, AppState};

/// The action refused gateway requests are counted under.
pub const GATEWAY_ACTION: &str = "gateway.request";

/// Authenticates gateway callers with the authority's state.
pub struct AuthorityAuth(pub Arc<AppState>);

impl Authenticate for AuthorityAuth {
    fn authenticate<'a>(
        &'a self,
        p: &'a Presented<'a>,
    ) -> BoxFuture<'a, Result<MandateClaims, Refusal>> {
        Box::pin(async move {
            let st = &self.0;
            let r = check(st, p).await;
            if let Err(e) = &r {
                let source = p.peer.map(|a| crate::limits::Source::of(a.ip()));
                let code = e.code.oauth_code().unwrap_or("invalid_token");
                crate::audit::refusal(st, None, source, GATEWAY_ACTION, code, &e.message).await;
            }
            r
        })
    }
}

async fn check(st: &AppState, p: &Presented<'_>) -> Result<MandateClaims, Refusal> {
    let claims = crate::resource_auth::verify_presentation(
        st,
        p.method.as_str(),
        p.url,
        p.headers,
        p.audience,
        now(),
    )
    .await?;
    // The holder must still exist and be enabled (read through the 1 s principal cache).
    match crate::client_auth::load(st, &claims.client_id).await {
        Ok(Some(l)) if !l.row.disabled => Ok(claims),
        Ok(_) => Err(Refusal::new(
            RefusalCode::PrincipalInactive,
            format!("{} is disabled or no longer exists", claims.client_id),
        )),
        Err(_) => Err(Refusal::new(
            RefusalCode::LookupFailed,
            "the holder could not be looked up; retry later",
        )),
    }
}
