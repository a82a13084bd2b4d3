//! Errors of the admin and enrollment APIs, and how they become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An API error: HTTP status, a short code and a description that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
    /// Already written to the audit log (by an extractor or an audited change), so the refusal
    /// layer does not write it again.
    audited: bool,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        let description = description.into();
        // Descriptions can echo request values; a token pasted in the wrong place is not echoed.
        let description = mandate_core::jws::scrub_tokens(&description).into_owned();
        ApiError {
            status,
            code,
            description,
            audited: false,
        }
    }
    /// Marks the error as already recorded in the audit log.
    pub fn audited(mut self) -> Self {
        self.audited = true;
        self
    }
    /// 429 `rate_limited`.
    pub fn rate_limited(d: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", d)
    }
    /// 400 `invalid_request`.
    pub fn bad_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    /// 401 `invalid_token` (RFC 6750 / RFC 9449 §7.1); answered with a `WWW-Authenticate` challenge.
    pub fn unauthenticated(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d)
    }
    /// 403 `insufficient_scope`.
    pub fn forbidden(d: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", d)
    }
    /// 404 `not_found`.
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", d)
    }
    /// 409 `conflict`.
    pub fn conflict(d: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", d)
    }
    /// 503 `temporarily_unavailable`: Mandate's own state refuses for now (fail closed); retry.
    pub fn unavailable(d: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            d,
        )
    }
    /// 500; logged, and the operation is refused.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("{what}; nothing was changed, retry later"),
        )
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The reason code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<crate::audit::AuditUnavailable> for ApiError {
    fn from(_: crate::audit::AuditUnavailable) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the change could not be written to the audit log, so nothing was changed; retry later",
        )
    }
}

impl crate::audit::AuditableError for ApiError {
    fn audit_result(&self) -> &'static str {
        if self.status.is_server_error() {
            "failed"
        } else {
            "refused"
        }
    }
    fn audit_code(&self) -> &str {
        self.code
    }
    fn audit_reason(&self) -> String {
        self.description.clone()
    }
    fn mark_audited(self) -> Self {
        self.audited()
    }
}

impl From<mandate_store::StoreError> for ApiError {
    fn from(e: mandate_store::StoreError) -> Self {
        match e {
            mandate_store::StoreError::AlreadyExists(what) => {
                ApiError::conflict(format!("{what} already exists"))
            }
            mandate_store::StoreError::NotFound(what) => {
                ApiError::not_found(format!("{what} does not exist"))
            }
            other => ApiError::internal("storage failed", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "error_description": self.description});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED || self.status == StatusCode::FORBIDDEN {
            let challenge = format!(
                "DPoP algs=\"EdDSA\", error=\"{}\", error_description=\"{}\"",
                self.code,
                mandate_core::refusal::error_description_text(&self.description)
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.extensions_mut().insert(crate::refusals::RefusalInfo {
            code: self.code,
            description: self.description,
        });
        if self.audited {
            r.extensions_mut().insert(crate::refusals::Audited);
        }
        r
    }
}
