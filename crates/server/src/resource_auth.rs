//! Authentication of API calls made with a DPoP-bound mandate (RFC 9449 §7): the
//! `Authorization: DPoP <mandate>` header plus a fresh proof for this method and URL whose key is
//! the one the mandate is bound to and whose `ath` is the mandate's hash.

use axum::http::{HeaderMap, Method, Uri};
use mandate_core::dpop::{self, ProofCheck};
use mandate_core::verify::{self, Expect};
use mandate_core::MandateClaims;

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

/// Authenticates a request to an API whose audience is `audience`.
pub async fn authenticate(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    audience: &str,
    now: i64,
) -> Result<Caller, ApiError> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthenticated("send Authorization: DPoP <mandate> and a DPoP proof")
        })?;
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("dpop") => t.trim(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
            return Err(ApiError::unauthenticated(
                "this API takes only DPoP-bound mandates, not bearer tokens",
            ))
        }
        _ => {
            return Err(ApiError::unauthenticated(
                "malformed Authorization header: use DPoP <mandate>",
            ))
        }
    };
    let expect = Expect {
        issuer: &st.cfg.issuer,
        audience: Some(audience),
        now,
        skew: verify::DEFAULT_SKEW,
    };
    let claims = st
        .keys
        .with_keys(|k| verify::verify_mandate(token, k, expect))
        .map_err(|e| ApiError::unauthenticated(format!("mandate refused ({}): {e}", e.code())))?
        .into_claims();
    let jkt = claims
        .cnf
        .as_ref()
        .map(|c| c.jkt.clone())
        .ok_or_else(|| ApiError::unauthenticated("this API takes only DPoP-bound mandates"))?;
    let proof = headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthenticated("missing DPoP proof header"))?;
    let path = uri.path_and_query().map(|p| p.path()).unwrap_or("/");
    let url = format!("{}{}", st.cfg.issuer, path);
    let check = ProofCheck {
        method: method.as_str(),
        url: &url,
        now,
        access_token: Some(token),
    };
    let p = dpop::check_proof(proof, check).map_err(|e| {
        ApiError::unauthenticated(format!("DPoP proof refused ({}): {e}", e.code()))
    })?;
    if p.jkt != jkt {
        return Err(ApiError::unauthenticated(
            "DPoP proof is signed by a key other than the one the mandate is bound to",
        ));
    }
    let fresh = st
        .store
        .use_jti(
            &format!("dpop:{}:{}", p.jkt, p.claims.jti),
            p.claims.iat + dpop::MAX_AGE + dpop::MAX_FUTURE,
        )
        .await
        .map_err(|e| ApiError::internal("replay check failed", e))?;
    if !fresh {
        return Err(ApiError::unauthenticated(
            "DPoP proof was already used: make a fresh proof per request",
        ));
    }
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
