//! Redeeming an enrollment code: the agent's machine made its key pair and sends only the public
//! half with the one-time code an admin issued. The code is the credential, spent atomically.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use mandate_core::PublicKey;
use mandate_store::NewKey;
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

/// `POST /enroll/v1/join`.
pub async fn join(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: Join = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("invalid JSON body (want code and public_key): {e}"))
    })?;
    // Parse the key before spending the code, so a typo in the key does not burn it.
    let key =
        PublicKey::parse(&req.public_key).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = now();
    let name = st
        .store
        .redeem_enrollment(&code_hash(&req.code), now)
        .await?;
    let Some(name) = name else {
        let e = ApiError::unauthenticated("enrollment code is unknown, already used or expired: ask an admin for a new one with `mandate agent enroll`");
        crate::audit::refusal(
            &st,
            None,
            "enrollment.redeem",
            "invalid_token",
            e.description(),
        )
        .await;
        return Err(e);
    };
    let mut ev = crate::audit::new_event(
        mandate_audit::event::kinds::ENROLLMENT,
        &name,
        "enrollment.redeem",
    );
    ev.chain = vec![name.clone()];
    ev.resource = Some(key.thumbprint());
    ev.details.insert("kid".into(), key.thumbprint().into());
    crate::audit::audited(&st, ev, async {
        st.store
            .add_key(
                &name,
                &NewKey {
                    kid: key.thumbprint(),
                    public_key: key.x(),
                },
                now,
            )
            .await
            .map_err(ApiError::from)
    })
    .await?;
    st.principals.invalidate(&name);
    tracing::info!(principal = %name, kid = %key.thumbprint(), "key enrolled");
    Ok(Json(
        serde_json::json!({"name": name, "kid": key.thumbprint(), "issuer": st.cfg.issuer}),
    ))
}
