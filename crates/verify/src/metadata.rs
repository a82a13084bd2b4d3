//! The checks a client makes on RFC 8414 authorization server metadata before trusting it: the
//! document must name the issuer it was fetched for (§3.3), and endpoints that receive
//! credentials must be on that issuer's origin. Pure functions, shared by this crate's JWKS
//! discovery and the `mandate` command line, so that both refuse the same documents.
//!
//! Without §3.3 a server can answer with another issuer's metadata (an "authorization server
//! mix-up"): a client would then sign a client assertion whose `aud` is the real issuer and hand
//! it to the impostor, which can replay it there.

use crate::VerifierError;

/// An issuer identifier as the metadata URL is built from it: without trailing slashes (RFC 8414
/// §3 removes a terminating "/" before inserting the well-known path).
fn normalised(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// Checks that `found`, the `issuer` member of metadata fetched from
/// `{expected}/.well-known/oauth-authorization-server`, is identical to `expected` (RFC 8414
/// §3.3). Trailing slashes are ignored on both sides, since both spellings have the same
/// metadata URL; nothing else is: another scheme, host, port, path or case is another issuer.
pub fn check_issuer(expected: &str, found: &str) -> Result<(), VerifierError> {
    if normalised(expected) == normalised(found) {
        return Ok(());
    }
    Err(VerifierError::IssuerMismatch {
        expected: expected.to_string(),
        found: found.to_string(),
    })
}

/// Checks that `url`, the metadata member `member` (e.g. `token_endpoint`), has the same origin
/// (scheme, host and port, RFC 6454) as `issuer`, so that the metadata cannot send what the
/// client posts there (client assertions, DPoP proofs) to another server.
pub fn check_same_origin(issuer: &str, member: &str, url: &str) -> Result<(), VerifierError> {
    let origin = |u: &str| {
        reqwest::Url::parse(u)
            .ok()
            .filter(|p| p.has_host())
            .map(|p| p.origin())
    };
    match (origin(issuer), origin(url)) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err(VerifierError::EndpointElsewhere {
            member: member.to_string(),
            url: url.to_string(),
            issuer: issuer.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_must_be_the_one_asked_trailing_slashes_aside() {
        let rows = [
            ("http://127.0.0.1:8700", "http://127.0.0.1:8700", true),
            ("http://127.0.0.1:8700/", "http://127.0.0.1:8700", true),
            ("http://127.0.0.1:8700", "http://127.0.0.1:8700/", true),
            ("https://auth.example/t1", "https://auth.example/t1/", true),
            // The mix-up: another server's metadata.
            ("http://127.0.0.1:9999", "http://127.0.0.1:8700", false),
            ("https://auth.example", "http://auth.example", false),
            ("https://auth.example", "https://auth.example:443x", false),
            ("https://auth.example", "https://AUTH.example", false),
            ("https://auth.example/t1", "https://auth.example/t2", false),
            ("https://auth.example/t1", "https://auth.example", false),
            ("https://auth.example", "", false),
        ];
        for (expected, found, ok) in rows {
            let got = check_issuer(expected, found);
            assert_eq!(got.is_ok(), ok, "{expected:?} vs {found:?}: {got:?}");
            if let Err(e) = got {
                assert!(matches!(e, VerifierError::IssuerMismatch { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn an_endpoint_must_share_the_issuers_scheme_host_and_port() {
        let rows = [
            (
                "http://127.0.0.1:8700",
                "http://127.0.0.1:8700/oauth2/token",
                true,
            ),
            (
                "https://a.example/t1",
                "https://a.example/other/token",
                true,
            ),
            ("https://a.example", "https://a.example:443/token", true),
            (
                "http://127.0.0.1:8700",
                "http://127.0.0.1:8701/oauth2/token",
                false,
            ),
            (
                "http://127.0.0.1:8700",
                "https://127.0.0.1:8700/oauth2/token",
                false,
            ),
            ("https://a.example", "https://a.example.evil/token", false),
            ("https://a.example", "https://evil@b.example/token", false),
            ("https://a.example", "/oauth2/token", false),
            ("https://a.example", "data:text/plain,x", false),
            ("not a url", "not a url", false),
        ];
        for (issuer, url, ok) in rows {
            let got = check_same_origin(issuer, "token_endpoint", url);
            assert_eq!(got.is_ok(), ok, "{issuer:?} / {url:?}: {got:?}");
        }
    }
}
