//! Form-encoded request parameters (RFC 6749 §3.2): each parameter at most once, except those
//! that RFC 8693 allows to repeat (`audience`, `resource`).

use crate::oauth_error::OAuthError;

/// Parsed `application/x-www-form-urlencoded` parameters.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// A parameter that may appear at most once; empty values count as absent (RFC 6749 §3.1).
    pub fn one(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut it = self.0.iter().filter(|(k, v)| k == name && !v.is_empty());
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} appears more than once"
            )));
        }
        Ok(first)
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.one(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Every value of a repeatable parameter.
    pub fn many(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads an OAuth endpoint request: a form-encoded body and at most one `DPoP` header.
pub fn read<'h>(
    headers: &'h axum::http::HeaderMap,
    body: &[u8],
) -> Result<(Form, Option<&'h str>), OAuthError> {
    let form_ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return Err(OAuthError::invalid_request(
            "this endpoint takes application/x-www-form-urlencoded bodies",
        ));
    }
    let mut proofs = headers.get_all("dpop").iter();
    let dpop = match (proofs.next(), proofs.next()) {
        (None, _) => None,
        (Some(one), None) => Some(
            one.to_str()
                .map_err(|_| OAuthError::invalid_dpop_proof("DPoP header is not ASCII"))?,
        ),
        _ => {
            return Err(OAuthError::invalid_dpop_proof(
                "send exactly one DPoP header",
            ))
        }
    };
    Ok((Form::parse(body), dpop))
}

/// A request body as handlers take it: the bytes, or why they could not be read.
pub type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

/// The body, or an OAuth error (JSON, like every other answer) when it could not be read, for
/// example because it is over the size limit.
pub fn body(b: Body) -> Result<axum::body::Bytes, OAuthError> {
    b.map_err(|e| OAuthError::body_rejected(e.status(), e.body_text()))
}
