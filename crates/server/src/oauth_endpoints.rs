//! RFC 7662 introspection and RFC 7009 revocation. Both authenticate the caller with
//! `private_key_jwt` (and DPoP when sent), like the token endpoint. Every call is recorded: an
//! answered introspection as a `token.introspected` event (before it is answered), a refusal
//! after authentication as its own event, and one before it counted for its source (see
//! [`crate::refusals`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Extensions, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_core::verify::{Expect, VerifiedMandate};

use crate::client_auth::{self, Client};
use crate::form::Body;
use crate::oauth_error::OAuthError;
use crate::state::{now, AppState};

/// Who an OAuth endpoint call turned out to be, for recording its refusal.
#[derive(Default)]
struct Call {
    /// The authenticated client, once its assertion verified and its jtis were spent.
    client: Option<String>,
}

async fn authenticated(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
    call: &mut Call,
) -> Result<(crate::form::Form, Client), OAuthError> {
    let (form, dpop) = crate::form::read(headers, body)?;
    let client = client_auth::authenticate(st, &form, dpop, endpoint, now()).await?;
    client.spend_checked(st).await?;
    call.client = Some(client.principal.name.to_string());
    Ok((form, client))
}

/// The response to a call: its answer, or its refusal, recorded (see [`refused`]).
async fn answer(
    st: &AppState,
    ext: &Extensions,
    call: &Call,
    action: &str,
    out: Result<Response, OAuthError>,
) -> Response {
    let r = match out {
        Ok(r) => r,
        Err(e) => {
            refused(st, ext, call, action, &e).await;
            e.into_response()
        }
    };
    no_store(r)
}

/// Records a refused call: as its caller's event once authenticated, else counted per source.
async fn refused(st: &AppState, ext: &Extensions, call: &Call, action: &str, e: &OAuthError) {
    match &call.client {
        Some(who) => {
            let mut ev =
                crate::audit::new_event(mandate_audit::event::kinds::REQUEST_REFUSED, who, action);
            ev.chain = vec![who.clone()];
            ev.result = if e.code() == "server_error" {
                "failed"
            } else {
                "refused"
            }
            .into();
            ev.error = Some(e.code().to_string());
            ev.reasons = vec![e.description().to_string()];
            let _ = st.audit(&ev).await;
        }
        None => {
            let source = crate::pdp::peer_source(ext);
            crate::audit::refusal(st, None, source, action, e.code(), e.description()).await;
        }
    }
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
/// expired, forged or unknown is `{"active": false}`. The answer is recorded before it is given
/// (the token only by its jti).
pub async fn introspect(
    State(st): State<Arc<AppState>>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut call = Call::default();
    let run = async {
        let body = crate::form::body(body)?;
        let (form, client) =
            authenticated(&st, &headers, &body, &st.endpoints.introspect, &mut call).await?;
        let token = form.required("token")?;
        let me = client.principal.name.to_string();
        let mut ev = crate::audit::new_event(
            mandate_audit::event::kinds::TOKEN_INTROSPECTED,
            &me,
            "token.introspect",
        );
        ev.chain = vec![me.clone()];
        let answer = match live_mandate(&st, token, now()) {
            Ok(v) => {
                let c = v.claims();
                let mut j = serde_json::to_value(c)
                    .map_err(|e| OAuthError::server_error("encoding claims", e))?;
                j["active"] = true.into();
                j["token_type"] = if c.cnf.is_some() { "DPoP" } else { "Bearer" }.into();
                ev.resource = Some(c.jti.clone());
                ev.jti = Some(c.jti.clone());
                ev.details.insert("active".into(), true.into());
                ev.details
                    .insert("token_chain".into(), c.chain_to_holder().into());
                j
            }
            Err(reason) => {
                tracing::info!(by = %client.principal.name, reason, "introspection: inactive");
                ev.details.insert("active".into(), false.into());
                ev.details.insert("inactive_reason".into(), reason.into());
                serde_json::json!({"active": false})
            }
        };
        st.audit(&ev).await.map_err(|e| {
            OAuthError::server_error("writing the introspection to the audit log failed", e)
        })?;
        Ok::<_, OAuthError>(Json(answer).into_response())
    };
    let out = run.await;
    answer(&st, &ext, &call, "token.introspect", out).await
}

/// `POST revocation_endpoint` (RFC 7009). A principal in a mandate's chain (its holder, an actor
/// or its subject) may revoke it, which also revokes everything delegated from it. Tokens that
/// are invalid or already dead get 200, as the RFC says.
pub async fn revoke(
    State(st): State<Arc<AppState>>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut call = Call::default();
    let run = async {
        let body = crate::form::body(body)?;
        let (form, client) =
            authenticated(&st, &headers, &body, &st.endpoints.revoke, &mut call).await?;
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
        ev.chain = c.chain_to_holder();
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
    let out = run.await;
    answer(&st, &ext, &call, "revoke.token", out).await
}
