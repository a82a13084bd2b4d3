//! Redeeming an enrollment code: the agent's machine made its key pair and sends only the public
//! half with the one-time code an admin issued. The code is the credential. It is spent in the
//! same transaction that registers the key, so a key that cannot be registered (already taken)
//! leaves the code usable.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Extensions;
use axum::response::IntoResponse;
use axum::Json;
use mandate_core::PublicKey;
use mandate_store::{JoinOutcome, NewKey};
use serde::Deserialize;

use crate::admin::code_hash;
use crate::api_error::ApiError;
use crate::state::{now, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    code: String,
    public_key: String,
}

/// The answer to a code that cannot be redeemed, the same whatever the reason, so that a stranger
/// learns nothing about which codes exist.
fn bad_code() -> ApiError {
    ApiError::unauthenticated("enrollment code is unknown, already used or expired: ask an admin for a new one with `mandate agent enroll`")
}

/// `POST /enroll/v1/join`.
pub async fn join(
    State(st): State<Arc<AppState>>,
    ext: Extensions,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let source = crate::pdp::peer_source(&ext);
    match redeem(&st, &body).await {
        Ok(r) => Ok(r),
        Err(Refusal::Stranger(e)) => {
            crate::audit::refusal(
                &st,
                None,
                source,
                "enrollment.redeem",
                e.code(),
                e.description(),
            )
            .await;
            Err(e)
        }
        Err(Refusal::Recorded(e)) => Err(e),
    }
}

/// Why a join failed: before the code was found valid (a stranger), or after its event.
enum Refusal {
    Stranger(ApiError),
    Recorded(ApiError),
}

async fn redeem(st: &AppState, body: &[u8]) -> Result<Json<serde_json::Value>, Refusal> {
    let req: Join = serde_json::from_slice(body).map_err(|e| {
        Refusal::Stranger(ApiError::bad_request(format!(
            "invalid JSON body (want code and public_key): {e}"
        )))
    })?;
    let key = PublicKey::parse(&req.public_key)
        .map_err(|e| Refusal::Stranger(ApiError::bad_request(e.to_string())))?;
    let now = now();
    let hash = code_hash(&req.code);
    let name = st
        .store
        .enrollment_principal(&hash, now)
        .await
        .map_err(|e| Refusal::Stranger(ApiError::from(e)))?
        .ok_or_else(|| Refusal::Stranger(bad_code()))?;
    let mut ev = crate::audit::new_event(
        mandate_audit::event::kinds::ENROLLMENT,
        &name,
        "enrollment.redeem",
    );
    ev.chain = vec![name.clone()];
    ev.resource = Some(key.thumbprint());
    ev.details.insert("kid".into(), key.thumbprint().into());
    let new_key = NewKey {
        kid: key.thumbprint(),
        public_key: key.x(),
    };
    crate::audit::audited(st, ev, async {
        match st.store.join_enrollment(&hash, &new_key, now).await? {
            JoinOutcome::Joined(n) if n == name => Ok(()),
            // Spent by a concurrent redemption between the check and now.
            JoinOutcome::Joined(_) | JoinOutcome::InvalidCode => Err(bad_code()),
            JoinOutcome::KeyTaken => Err(ApiError::conflict(
                "this public key is already registered: make a new key pair on this machine and join again (the enrollment code is still valid)",
            )),
        }
    })
    .await
    .map_err(Refusal::Recorded)?;
    st.principals.invalidate(&name);
    tracing::info!(principal = %name, kid = %key.thumbprint(), "key enrolled");
    Ok(Json(
        serde_json::json!({"name": name, "kid": key.thumbprint(), "issuer": st.cfg.issuer}),
    ))
}
