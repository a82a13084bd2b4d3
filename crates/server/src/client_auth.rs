//! Client authentication at the token endpoint: RFC 7523 `private_key_jwt`, plus the RFC 9449
//! DPoP proof when one is sent. Both `jti`s are spent only after their signatures verify, so junk
//! requests cannot fill the replay table.

use std::sync::Arc;

use mandate_core::assertion::{self, ASSERTION_TYPE};
use mandate_core::dpop::{self, CheckedProof, DpopError, ProofCheck};
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
    /// The single-use ids to spend (client assertion first, then the DPoP proof's), with the
    /// time until which each must be remembered.
    pub single_use: Vec<(String, i64)>,
}

impl Client {
    /// Spends the single-use ids of a request that is being refused after authentication, so a
    /// refused request can never be replayed later (for example after its ceiling was raised).
    /// Returns the position of the first id that had been used before (the request was a
    /// replay, so it authenticated nobody), if any.
    pub async fn spend(&self, st: &AppState) -> Option<usize> {
        let mut replayed = None;
        for (i, (jti, exp)) in self.single_use.iter().enumerate() {
            match st.store.use_jti(jti, *exp).await {
                Ok(false) if replayed.is_none() => replayed = Some(i),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not spend the jtis of a refused request")
                }
            }
        }
        replayed
    }
}

impl Client {
    /// Spends the single-use ids of a request that does not issue a mandate (introspection,
    /// revocation), refusing it if any was used before.
    pub async fn spend_checked(&self, st: &AppState) -> Result<(), OAuthError> {
        for (i, (jti, exp)) in self.single_use.iter().enumerate() {
            let fresh = st
                .store
                .use_jti(jti, *exp)
                .await
                .map_err(|e| OAuthError::server_error("replay check failed", e))?;
            if !fresh {
                return Err(replay_error(i));
            }
        }
        Ok(())
    }
}

/// The error for a replayed single-use id, by its index in [`Client::single_use`].
pub fn replay_error(index: usize) -> OAuthError {
    if index == 0 {
        OAuthError::invalid_client(
            "client_assertion was already used (jti replay): sign a fresh assertion for every request",
        )
    } else {
        OAuthError::invalid_dpop_proof(
            "DPoP proof was already used (jti replay): make a fresh proof for every request",
        )
    }
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
/// Authenticates the caller of an OAuth endpoint (`endpoint` is its URL: the DPoP `htu`, and an
/// accepted client assertion `aud` beside the issuer and the token endpoint).
pub async fn authenticate(
    st: &AppState,
    form: &Form,
    dpop_header: Option<&str>,
    endpoint: &str,
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
            "client_assertion sub {:?} is not a principal name (user:NAME or agent:NAME)",
            name.chars().take(80).collect::<String>()
        )));
    }
    if let Some(cid) = form.one("client_id")? {
        if cid != name {
            return Err(OAuthError::invalid_client(
                "client_id does not match the client_assertion's sub",
            ));
        }
    }
    let principal = load(st, &name).await?;
    let audiences = [
        st.cfg.issuer.as_str(),
        st.endpoints.token.as_str(),
        endpoint,
    ];
    // An unknown principal has no keys: its assertion fails exactly as one signed with the wrong
    // key does, so a stranger cannot tell which principals exist.
    let keys = principal.as_ref().map_or(&[][..], |p| &p.keys[..]);
    let (key, claims) = unverified
        .check(keys, &audiences, now)
        .map_err(|e| OAuthError::invalid_client(e.to_string()))?;
    let auth_jkt = key.thumbprint();
    let principal = principal.expect("a registered key verified the assertion");

    let dpop = match dpop_header {
        None => None,
        Some(proof) => {
            let check = ProofCheck {
                method: "POST",
                url: endpoint,
                now,
                access_token: None,
            };
            // Only a key registered for the caller may sign its DPoP proofs; it is found among
            // the already-decoded keys by its `x`.
            let registered = |jwk: &serde_json::Value| {
                let is_okp = jwk.get("kty").and_then(|v| v.as_str()) == Some("OKP")
                    && jwk.get("crv").and_then(|v| v.as_str()) == Some("Ed25519");
                let x = jwk.get("x").and_then(|v| v.as_str());
                principal
                    .keys
                    .iter()
                    .zip(&principal.key_xs)
                    .find(|(_, kx)| is_okp && x == Some(kx.as_str()))
                    .map(|(k, _)| *k)
                    .ok_or_else(|| {
                        DpopError::Jwk(format!(
                            "the DPoP proof must be signed with a key registered for {name}"
                        ))
                    })
            };
            let p = dpop::check_proof_with(proof, check, registered)
                .map_err(|e| OAuthError::invalid_dpop_proof(e.to_string()))?;
            Some(p)
        }
    };

    // The single-use jtis are spent by the caller, together with the mandate record (one commit).
    let mut single_use = vec![(
        format!("assertion:{name}:{}", claims.jti),
        claims.exp + assertion::SKEW,
    )];
    if let Some(p) = &dpop {
        single_use.push((
            format!("dpop:{}:{}", p.jkt, p.claims.jti),
            p.claims.iat + dpop::MAX_AGE + dpop::MAX_FUTURE,
        ));
    }
    // Only a caller that proved it holds the principal's key, with an assertion never used
    // before, learns that the principal is disabled. (Replays are otherwise caught where the ids
    // are spent: with the mandate on success, or in `Client::spend` on a refusal, which then
    // answers as a replay and names nobody.)
    if principal.row.disabled {
        let ids: Vec<&str> = single_use.iter().map(|(j, _)| j.as_str()).collect();
        if let Some(i) = st
            .store
            .first_used_jti(&ids)
            .await
            .map_err(|e| OAuthError::server_error("replay check failed", e))?
        {
            return Err(replay_error(i));
        }
        return Err(OAuthError::invalid_client(format!(
            "{name} is disabled: an admin can re-enable it with `mandate agent enable`"
        )));
    }
    Ok(Client {
        principal,
        auth_jkt,
        dpop,
        single_use,
    })
}
