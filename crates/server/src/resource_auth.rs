//! Authentication of API calls made with a DPoP-bound mandate (RFC 9449 §7): the
//! `Authorization: DPoP <mandate>` header plus a fresh proof for this method and URL whose key is
//! the one the mandate is bound to and whose `ath` is the mandate's hash.

use axum::http::{HeaderMap, Method, Uri};
use mandate_core::dpop;
use mandate_core::jws::Jws;
use mandate_core::verify;
use mandate_core::MandateClaims;
use mandate_verify::{Expectations, Presentation, ReplayCache};

use crate::api_error::ApiError;
use crate::principals::Loaded;
use crate::state::AppState;

/// A caller whose mandate and proof checked out.
pub struct Caller {
    /// The mandate's claims.
    pub claims: MandateClaims,
    /// The holder, as stored now.
    pub principal: Loaded,
}

/// Authenticates a request to an API whose audience is `audience`: a DPoP-bound mandate, or a
/// bearer mandate when `bearer_ok` (they are issued only to principals registered with bearer
/// allowed).
pub async fn authenticate_with(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    audience: &str,
    now: i64,
    bearer_ok: bool,
) -> Result<Caller, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").ok_or_else(|| {
        ApiError::unauthenticated("send Authorization: DPoP <mandate> and a DPoP proof")
    })?;
    let path = uri.path_and_query().map(|p| p.path()).unwrap_or("/");
    let url = format!("{}{}", st.cfg.issuer, path);
    let presentation = Presentation {
        authorization,
        dpop: header("dpop"),
        method: method.as_str(),
        url: &url,
    };
    let expect = Expectations {
        issuer: &st.cfg.issuer,
        audience,
        now,
        skew: verify::DEFAULT_SKEW,
    };
    // The verifier library checks the whole presentation; the proof's single use is then
    // enforced in the database (durable, and shared by every node) instead of in memory.
    let mut this_request_only = ReplayCache::new(1);
    let verified = st
        .keys
        .with_keys(|k| {
            st.revocations.with_set(|r| {
                mandate_verify::check(&presentation, k, r, &mut this_request_only, expect)
            })
        })
        .map_err(|r| {
            ApiError::unauthenticated(format!("mandate refused ({}): {}", r.code, r.message))
        })?;
    let claims = verified.into_claims();
    match &claims.cnf {
        None if bearer_ok => return loaded(st, claims).await,
        None => {
            return Err(ApiError::unauthenticated(
                "this API takes only DPoP-bound mandates",
            ))
        }
        Some(_) => {}
    }
    let proof: dpop::ProofClaims = presentation
        .dpop
        .and_then(|p| Jws::decode(p).ok())
        .and_then(|j| j.unverified_claims().ok())
        .ok_or_else(|| ApiError::unauthenticated("missing DPoP proof header"))?;
    let jkt = &claims.cnf.as_ref().expect("checked above").jkt;
    let fresh = st
        .store
        .use_jti(
            &format!("dpop:{jkt}:{}", proof.jti),
            proof.iat + dpop::MAX_AGE + dpop::MAX_FUTURE,
        )
        .await
        .map_err(|e| ApiError::internal("replay check failed", e))?;
    if !fresh {
        return Err(ApiError::unauthenticated(
            "DPoP proof was already used: make a fresh proof per request",
        ));
    }
    loaded(st, claims).await
}

/// The holder as stored now; a deleted or disabled holder is refused.
async fn loaded(st: &AppState, claims: MandateClaims) -> Result<Caller, ApiError> {
    let row = st
        .store
        .principal(&claims.client_id)
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated(format!("{} no longer exists", claims.client_id))
        })?;
    let principal =
        Loaded::new(row).map_err(|e| ApiError::internal("stored principal is corrupt", e))?;
    if principal.row.disabled {
        return Err(ApiError::unauthenticated(format!(
            "{} is disabled",
            claims.client_id
        )));
    }
    Ok(Caller { claims, principal })
}
