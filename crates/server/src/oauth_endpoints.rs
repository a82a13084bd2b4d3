//! RFC 7662 introspection and RFC 7009 revocation. Both authenticate the caller with
//! `private_key_jwt` (and DPoP when sent), like the token endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_core::verify::{Expect, VerifiedMandate};

use crate::client_auth::{self, Client};
use crate::form::Body;
use crate::oauth_error::OAuthError;
use crate::state::{now, AppState};

async fn authenticated(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Result<(crate::form::Form, Client), OAuthError> {
    let (form, dpop) = crate::form::read(headers, body)?;
    let client = client_auth::authenticate(st, &form, dpop, endpoint, now()).await?;
    client.spend_checked(st).await?;
    Ok((form, client))
}

/// A mandate of this issuer that verifies and is not revoked, or why not: the verifier library's
/// token check, against the authority's own keys and revocation view.
pub fn live_mandate(st: &AppState, token: &str, now: i64) -> Result<VerifiedMandate, String> {
    let expect = Expect {
        issuer: &st.cfg.issuer,
        audience: None,
        now,
        // The issuer judges its own mandates by its own clock: no skew allowance.
        skew: 0,
    };
    st.keys
        .with_keys(|k| {
            st.revocations
                .with_set(|r| mandate_verify::check_mandate(token, k, r, expect))
        })
        .map_err(|r| r.code.to_string())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST introspection_endpoint` (RFC 7662). Any registered principal may ask; anything revoked,
/// expired, forged or unknown is `{"active": false}`.
pub async fn introspect(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        let body = crate::form::body(body)?;
        let (form, client) = authenticated(&st, &headers, &body, &st.endpoints.introspect).await?;
        let token = form.required("token")?;
        let answer = match live_mandate(&st, token, now()) {
            Ok(v) => {
                let c = v.claims();
                let mut j = serde_json::to_value(c)
                    .map_err(|e| OAuthError::server_error("encoding claims", e))?;
                j["active"] = true.into();
                j["token_type"] = if c.cnf.is_some() { "DPoP" } else { "Bearer" }.into();
                j
            }
            Err(reason) => {
                tracing::info!(by = %client.principal.name, reason, "introspection: inactive");
                serde_json::json!({"active": false})
            }
        };
        Ok::<_, OAuthError>(Json(answer).into_response())
    };
    no_store(run.await.unwrap_or_else(IntoResponse::into_response))
}

/// `POST revocation_endpoint` (RFC 7009). A principal in a mandate's chain (its holder, an actor
/// or its subject) may revoke it, which also revokes everything delegated from it. Tokens that
/// are invalid or already dead get 200, as the RFC says.
pub async fn revoke(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let run = async {
        let body = crate::form::body(body)?;
        let (form, client) = authenticated(&st, &headers, &body, &st.endpoints.revoke).await?;
        let token = form.required("token")?;
        let Ok(v) = live_mandate(&st, token, now()) else {
            return Ok(Json(serde_json::json!({})).into_response());
        };
        let c = v.claims();
        let me = client.principal.name.as_str();
        if !c.chain().contains(&me) && c.client_id != me {
            return Err(OAuthError::unauthorized_client(format!(
                "{me} is not in this mandate's chain: only its holder, an actor or its subject may revoke it"
            )));
        }
        let mut ev =
            crate::audit::new_event(mandate_audit::event::kinds::REVOCATION, me, "revoke.token");
        ev.chain = crate::audit::chain_of(c);
        ev.resource = Some(c.jti.clone());
        ev.jti = Some(c.jti.clone());
        ev.reasons = vec!["revoked through the revocation endpoint".into()];
        st.audit(&ev).await.map_err(|e| {
            OAuthError::server_error("writing the revocation to the audit log failed", e)
        })?;
        let row = st
            .store
            .add_revocation(
                "jti",
                &c.jti,
                Some("revoked through the revocation endpoint"),
                me,
                now(),
            )
            .await
            .map_err(|e| OAuthError::server_error("recording the revocation failed", e))?;
        st.revocations.apply(&[row]);
        tracing::info!(jti = %c.jti, by = me, "mandate revoked");
        Ok::<_, OAuthError>(Json(serde_json::json!({})).into_response())
    };
    let answer = match run.await {
        Ok(r) => r,
        Err(e) => {
            crate::audit::refusal(&st, None, "revoke.token", e.code(), e.description()).await;
            e.into_response()
        }
    };
    no_store(answer)
}
