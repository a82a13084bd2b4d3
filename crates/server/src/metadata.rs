//! RFC 8414 authorization server metadata and the JWKS.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::state::AppState;

/// The RFC 8693 grant type name.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `GET /.well-known/oauth-authorization-server`.
pub async fn metadata(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let e = &st.endpoints;
    Json(serde_json::json!({
        "issuer": st.cfg.issuer,
        "token_endpoint": e.token,
        "jwks_uri": e.jwks,
        "introspection_endpoint": e.introspect,
        "revocation_endpoint": e.revoke,
        "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE, crate::ciba::GRANT],
        "backchannel_authentication_endpoint": format!("{}{}", st.cfg.issuer, crate::ciba::PATH),
        "backchannel_token_delivery_modes_supported": ["poll"],
        "backchannel_user_code_parameter_supported": false,
        "authorization_details_types_supported": [crate::ciba::TOOL_CALL],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "dpop_signing_alg_values_supported": ["EdDSA", "Ed25519"],
        "scopes_supported": [],
    }))
}

/// `GET jwks_uri`.
pub async fn jwks(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(st.keys.jwks()),
    )
}
