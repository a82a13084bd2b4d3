//! Client authentication at the token endpoint: RFC 7523 `private_key_jwt`, plus the RFC 9449
//! DPoP proof when one is sent. Both `jti`s are spent only after their signatures verify, so junk
//! requests cannot fill the replay table.

use std::sync::Arc;

use mandate_core::assertion::{self, ASSERTION_TYPE};
use mandate_core::dpop::{self, CheckedProof, ProofCheck};
use mandate_core::PrincipalName;

use crate::form::Form;
use crate::oauth_error::OAuthError;
use crate::principals::Loaded;
use crate::state::AppState;

/// An authenticated client.
pub struct Client {
    /// The principal, loaded and validated.
    pub principal: Arc<Loaded>,
    /// Thumbprint of the key that signed the client assertion.
    pub auth_jkt: String,
    /// The DPoP proof, if the request carried one (its key is one of the principal's keys).
    pub dpop: Option<CheckedProof>,
}

/// Loads a principal by name (through the short-lived cache), failing closed on storage errors.
pub async fn load(st: &AppState, name: &str) -> Result<Option<Arc<Loaded>>, OAuthError> {
    if let Some(hit) = st.principals.get(name) {
        return Ok(hit);
    }
    let row = st
        .store
        .principal(name)
        .await
        .map_err(|e| OAuthError::server_error("principal lookup failed", e))?;
    let loaded = row
        .map(Loaded::new)
        .transpose()
        .map_err(|e| OAuthError::server_error("stored principal is corrupt", e))?
        .map(Arc::new);
    st.principals.put(name, loaded.clone());
    Ok(loaded)
}

/// Authenticates the caller of the token endpoint.
pub async fn authenticate(
    st: &AppState,
    form: &Form,
    dpop_header: Option<&str>,
    now: i64,
) -> Result<Client, OAuthError> {
    match form.one("client_assertion_type")? {
        Some(ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion_type {other:?} is not supported: use {ASSERTION_TYPE} (private_key_jwt)"
            )))
        }
        None => {
            return Err(OAuthError::invalid_client(format!(
                "client authentication required: send client_assertion_type={ASSERTION_TYPE} and a client_assertion signed with your key (private_key_jwt)"
            )))
        }
    }
    let raw = form.required("client_assertion")?;
    let unverified =
        assertion::decode(raw).map_err(|e| OAuthError::invalid_client(e.to_string()))?;
    let name = unverified.claims.sub.clone();
    if name.parse::<PrincipalName>().is_err() {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion sub {name:?} is not a principal name (user:NAME or agent:NAME)"
        )));
    }
    if let Some(cid) = form.one("client_id")? {
        if cid != name {
            return Err(OAuthError::invalid_client(
                "client_id does not match the client_assertion's sub",
            ));
        }
    }
    let principal = load(st, &name).await?.ok_or_else(|| {
        OAuthError::invalid_client(format!(
            "unknown client {name}: register it with `mandate agent create` or `mandate user create`"
        ))
    })?;
    if principal.row.disabled {
        return Err(OAuthError::invalid_client(format!(
            "{name} is disabled: an admin can re-enable it with `mandate agent enable`"
        )));
    }
    let audiences = [st.cfg.issuer.as_str(), st.endpoints.token.as_str()];
    let (key, claims) = unverified
        .check(&principal.keys, &audiences, now)
        .map_err(|e| OAuthError::invalid_client(e.to_string()))?;
    let auth_jkt = key.thumbprint();

    let dpop = match dpop_header {
        None => None,
        Some(proof) => {
            let check = ProofCheck {
                method: "POST",
                url: &st.endpoints.token,
                now,
                access_token: None,
            };
            let p = dpop::check_proof(proof, check)
                .map_err(|e| OAuthError::invalid_dpop_proof(e.to_string()))?;
            if !principal.keys.iter().any(|k| k.thumbprint() == p.jkt) {
                return Err(OAuthError::invalid_dpop_proof(format!(
                    "the DPoP proof must be signed with a key registered for {name}"
                )));
            }
            Some(p)
        }
    };

    // Both single-use checks share one group commit.
    let a_key = format!("assertion:{name}:{}", claims.jti);
    let a_exp = claims.exp + assertion::SKEW;
    let d = dpop.as_ref().map(|p| {
        (
            format!("dpop:{}:{}", p.jkt, p.claims.jti),
            p.claims.iat + dpop::MAX_AGE + dpop::MAX_FUTURE,
        )
    });
    let (a_fresh, d_fresh) = tokio::join!(st.store.use_jti(&a_key, a_exp), async {
        match &d {
            Some((k, exp)) => st.store.use_jti(k, *exp).await.map(Some),
            None => Ok(None),
        }
    });
    let a_fresh = a_fresh.map_err(|e| OAuthError::server_error("replay check failed", e))?;
    let d_fresh = d_fresh.map_err(|e| OAuthError::server_error("replay check failed", e))?;
    if !a_fresh {
        return Err(OAuthError::invalid_client(
            "client_assertion was already used (jti replay): sign a fresh assertion for every request",
        ));
    }
    if d_fresh == Some(false) {
        return Err(OAuthError::invalid_dpop_proof(
            "DPoP proof was already used (jti replay): make a fresh proof for every request",
        ));
    }
    Ok(Client {
        principal,
        auth_jkt,
        dpop,
    })
}
