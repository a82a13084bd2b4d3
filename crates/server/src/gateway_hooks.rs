//! The gateway's hooks when it runs in the authority's process: it authenticates with the
//! authority's own check (the revocation view, the verified-mandate cache, the holder still
//! active; DPoP proofs spent in a bounded memory of its own), and appends events to the
//! authority's audit log (`AppState` is an `AuditSink`). Refusals are counted per source like
//! every other API's strangers.

use std::sync::Arc;

use mandate_core::MandateClaims;
use mandate_gateway::gateway::BoxFuture;
use mandate_gateway::gateway::Minter;
use mandate_gateway::{Authenticate, Presented};
use mandate_verify::{Refusal, RefusalCode};

use crate::state::{now, AppState};

/// The action refused gateway requests are counted under.
pub const GATEWAY_ACTION: &str = "gateway.request";

/// Most DPoP proofs the in-process gateway remembers at once (the same bound as a gateway run
/// on its own): a proof is kept for its 60 s window (plus skew), so this holds about 7,000 calls
/// a second; over it, calls are refused (`replay_cache_full`), never let through.
pub const GATEWAY_REPLAY_CAPACITY: usize = mandate_gateway::remote::REPLAY_CAPACITY;

/// Authenticates gateway callers with the authority's state. A proof's single use is kept in
/// this process's memory (bounded, refusing when full): a DPoP proof names the gateway's own
/// URL, so no other endpoint accepts it, and the gateway is one process with the authority on
/// SQLite. (Several gateway nodes behind one URL will share a replay store, with the
/// PostgreSQL deployment.)
pub struct AuthorityAuth {
    st: Arc<AppState>,
    replay: mandate_verify::MemoryReplay,
}

impl AuthorityAuth {
    /// The hooks over `st`.
    pub fn new(st: Arc<AppState>) -> Self {
        AuthorityAuth {
            st,
            // Proofs made before this process started are refused: the memory of spent ones is lost
            // on restart.
            replay: mandate_verify::MemoryReplay::started_at(
                GATEWAY_REPLAY_CAPACITY,
                crate::state::now(),
            ),
        }
    }
}

impl Authenticate for AuthorityAuth {
    fn authenticate<'a>(
        &'a self,
        p: &'a Presented<'a>,
    ) -> BoxFuture<'a, Result<MandateClaims, Refusal>> {
        Box::pin(async move {
            let st = &self.st;
            let r = check(st, p, &self.replay).await;
            if let Err(e) = &r {
                let source = p.peer.map(|a| crate::limits::Source::of(a.ip()));
                let code = e.code.oauth_code().unwrap_or("invalid_token");
                crate::audit::refusal(st, None, source, GATEWAY_ACTION, code, &e.message).await;
            }
            r
        })
    }

    fn still_valid(&self, claims: &MandateClaims, now: i64) -> bool {
        claims.exp > now
            && self
                .st
                .revocations
                .with_set(|r| r.check(claims, None).is_ok())
    }
}

async fn check(
    st: &AppState,
    p: &Presented<'_>,
    replay: &mandate_verify::MemoryReplay,
) -> Result<MandateClaims, Refusal> {
    let claims = crate::resource_auth::verify_presentation(
        st,
        p.method.as_str(),
        p.url,
        p.headers,
        p.audience,
        now(),
        replay,
    )
    .await?;
    // The holder must still exist and be enabled (read through the 1 s principal cache).
    match crate::client_auth::load(st, &claims.client_id).await {
        // A bearer mandate only while its holder is still registered with bearer allowed.
        Ok(Some(l)) if !l.row.disabled && (claims.cnf.is_some() || l.row.allow_bearer) => {
            Ok(claims)
        }
        Ok(Some(l)) if !l.row.disabled => Err(Refusal::new(
            RefusalCode::DpopMissing,
            format!(
                "{} may no longer use bearer mandates: get a DPoP-bound one",
                claims.client_id
            ),
        )),
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

/// Signs the mandates the in-process gateway forwards to Mandate-aware upstreams, with the
/// issuer's current key (they verify with the published JWKS like any mandate).
pub struct AuthorityMinter(pub Arc<AppState>);

impl Minter for AuthorityMinter {
    fn issuer(&self) -> &str {
        &self.0.cfg.issuer
    }

    fn sign(&self, claims: &MandateClaims) -> String {
        self.0.keys.sign(claims).0
    }
}
