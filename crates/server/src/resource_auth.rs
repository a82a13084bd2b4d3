//! Authentication of API calls made with a DPoP-bound mandate (RFC 9449 §7): the
//! `Authorization: DPoP <mandate>` header plus a fresh proof for this method and URL whose key is
//! the one the mandate is bound to and whose `ath` is the mandate's hash.

use axum::http::{HeaderMap, Method, Uri};
use mandate_core::MandateClaims;
use mandate_verify::{
    BoxFuture, CheckedProof, Expectations, Presentation, Refusal, RefusalCode, ReplayGuard,
};

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
    if headers.get("authorization").is_none() {
        return Err(ApiError::unauthenticated(
            "send Authorization: DPoP <mandate> and a DPoP proof",
        ));
    }
    let path = uri.path_and_query().map(|p| p.path()).unwrap_or("/");
    let url = format!("{}{}", st.cfg.issuer, path);
    let claims = verify_presentation(
        st,
        method.as_str(),
        &url,
        headers,
        audience,
        now,
        &StoreReplay(&st.store),
    )
    .await
    .map_err(refused)?;
    if claims.cnf.is_none() && !bearer_ok {
        return Err(ApiError::unauthenticated(
            "this API takes only DPoP-bound mandates",
        ));
    }
    loaded(st, claims).await
}

/// Checks a whole presentation (the `Authorization` header, the mandate for `audience`, its DPoP
/// proof for `method` and `url`) and spends the proof in the database. The one check every API
/// of the authority and the in-process gateway authenticate with.
pub async fn verify_presentation(
    st: &AppState,
    method: &str,
    url: &str,
    headers: &HeaderMap,
    audience: &str,
    now: i64,
    replay: &dyn ReplayGuard,
) -> Result<MandateClaims, Refusal> {
    // One Authorization header and at most one DPoP header (RFC 9449 §4.3).
    let (authorization, dpop) = mandate_gateway::presentation::authorization_and_proof(headers)?;
    let presentation = Presentation {
        authorization,
        dpop,
        method,
        url,
    };
    let expect = Expectations {
        issuer: &st.cfg.issuer,
        audience,
        now,
        // The issuer judges its own mandates by its own clock (as introspection and the token
        // endpoint do): no skew allowance, so a mandate stops working here the second it expires,
        // whether or not its verification was cached.
        skew: 0,
    };
    // The verifier library checks the whole presentation, with this issuer's verified mandates
    // answered from the cache (audience, time and revocation checked again on every use); the
    // proof's single use is then enforced by `replay`.
    let unspent = mandate_verify::check_unspent_with(&presentation, expect, |token, e| {
        let key = crate::verified_cache::key(token);
        if let Some(v) = st.verified.get(&key, now) {
            if !v
                .claims()
                .aud
                .as_slice()
                .iter()
                .any(|a| Some(a.as_str()) == e.audience)
            {
                return Err(Refusal::new(
                    RefusalCode::WrongAud,
                    format!("the mandate is not for {}", e.audience.unwrap_or("")),
                ));
            }
            st.revocations
                .check(&v)
                .map_err(|r| Refusal::new(r.code(), r.to_string()))?;
            return Ok(v);
        }
        let v = st.keys.with_keys(|k| {
            st.revocations
                .with_set(|r| mandate_verify::check_mandate(token, k, r, e))
        })?;
        st.verified.put(key, v.clone());
        Ok(v)
    })?;
    let presented = unspent.spend(replay, now).await?;
    Ok(presented.mandate.into_claims())
}

/// A refused presentation as an API error: the caller's fault is 401 with the reason; Mandate's
/// own state (a failed replay store, a full cache) is a 503 to retry.
fn refused(r: Refusal) -> ApiError {
    if r.code.is_unavailable() {
        return ApiError::unavailable(format!("mandate not checked ({}): {}", r.code, r.message));
    }
    ApiError::unauthenticated(format!("mandate refused ({}): {}", r.code, r.message))
}

/// The single use of DPoP proofs, kept in the authority's database: durable, and shared by
/// every node on the same database.
pub struct StoreReplay<'a>(pub &'a mandate_store::Store);

impl ReplayGuard for StoreReplay<'_> {
    fn use_once<'a>(
        &'a self,
        proof: &'a CheckedProof,
        _now: i64,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let key = format!("dpop:{}:{}", proof.jkt, proof.jti);
            match self.0.use_jti(&key, proof.remember_until()).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Refusal::new(
                    RefusalCode::DpopReplayed,
                    "DPoP proof was already used: make a fresh proof per request",
                )),
                Err(e) => {
                    tracing::error!(error = %e, "the DPoP replay check failed");
                    Err(Refusal::new(
                        RefusalCode::ReplayCheckFailed,
                        "the DPoP replay check failed; retry later",
                    ))
                }
            }
        })
    }
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
