//! RFC 6749 §5.2 error responses, the one place where token endpoint errors become HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mandate_core::delegation::DelegationError;

/// An OAuth error: code, a description a person can act on, and the HTTP status.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
    close: bool,
}

use mandate_core::refusal::error_description_text as rfc6749_text;

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        let description = description.into();
        // Descriptions can echo request values; a token pasted in the wrong place is not echoed.
        let description = mandate_core::jws::scrub_tokens(&description);
        OAuthError {
            status,
            code,
            description: rfc6749_text(&description),
            close: false,
        }
    }
    /// `invalid_request`.
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    /// `invalid_client` (401: the client failed to authenticate).
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    /// `invalid_grant`.
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    /// `unauthorized_client`.
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    /// `unsupported_grant_type`.
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    /// The CIBA token endpoint answers (OpenID CIBA §11): `authorization_pending`, `slow_down`,
    /// `expired_token`, `access_denied`, and `unknown_user_id` at the backchannel endpoint.
    pub fn ciba(code: &'static str, d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, d)
    }
    /// RFC 9449 `invalid_dpop_proof`.
    pub fn invalid_dpop_proof(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", d)
    }
    /// The body could not be read (too large, not readable): `invalid_request` with the status
    /// the body reader chose (413 for too large). The connection is closed after the answer,
    /// because the unread rest of the body is still on it.
    pub fn body_rejected(status: StatusCode, why: String) -> Self {
        let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("{why}; the limit is 64 KiB")
        } else {
            why
        };
        let mut e = Self::new(status, "invalid_request", why);
        e.close = true;
        e
    }
    /// `server_error`: something on our side failed; the request is refused (fail closed).
    pub fn server_error(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("{what}; the request was refused, retry later"),
        )
    }
    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// The error description.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl From<DelegationError> for OAuthError {
    fn from(e: DelegationError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.oauth_code(), e.to_string())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "error_description": self.description});
        let mut r = (self.status, axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.code == "invalid_dpop_proof" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("DPoP error=\"invalid_dpop_proof\", algs=\"EdDSA\""),
            );
        }
        r
    }
}
