//! One HTTP GET of a JSON document from the authority, with a deadline and a size limit.
//!
//! The verifier trusts the authority's answers, but not the network path to it: a response that
//! never ends or never stops growing must not hang or exhaust an enforcement point, so both are
//! bounded here, once, for every document the crate reads.

use std::time::Duration;

use crate::VerifierError;

/// Deadline for metadata and JWKS requests.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body read (a full revocation feed page is far smaller).
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// GETs `url` and returns its body if the status is 200 and it fits in [`MAX_BODY`].
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, VerifierError> {
    let http_error = |e: reqwest::Error| VerifierError::Http {
        url: url.to_string(),
        message: mandate_core::causes::with_causes(&e.without_url()),
    };
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(http_error)?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(VerifierError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(VerifierError::TooLarge(url.to_string()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(VerifierError::TooLarge(url.to_string()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
