//! How the gateway tells a client it needs (another) mandate, as the MCP authorization spec and
//! the RFCs under it say: `401` with `WWW-Authenticate` challenges naming the RFC 9728 protected
//! resource metadata (`resource_metadata`) and, for a mandate that did not verify, the RFC 6750 /
//! RFC 9449 `error`; `403 insufficient_scope` with the `scope` needed, so a client can step up;
//! and the RFC 9728 metadata document itself.
//!
//! Two challenges are sent: `DPoP` (the scheme Mandate's mandates are bound to, with the
//! algorithm it accepts) and `Bearer` (which MCP clients read `resource_metadata` from, and which
//! principals registered with bearer allowed use).

use mandate_core::refusal::{error_description_text, RefusalCode};
use serde_json::{json, Value};

/// An HTTP refusal: status, `WWW-Authenticate` values (one header each), JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// 401, 403, 400 or 503.
    pub status: u16,
    /// The `WWW-Authenticate` header values, in order.
    pub www_authenticate: Vec<String>,
    /// `{"error": ..., "error_description": ...}` (RFC 6750 style).
    pub body: Value,
}

/// The challenge for a request whose mandate is missing (`code` = `None`, or
/// [`RefusalCode::MissingAuthorization`]) or did not verify.
pub fn unauthenticated(
    code: Option<RefusalCode>,
    description: &str,
    resource_metadata: &str,
) -> Challenge {
    let code = code.unwrap_or(RefusalCode::MissingAuthorization);
    let description = error_description_text(description);
    let rm = error_description_text(resource_metadata);
    let mut params = vec![format!("resource_metadata=\"{rm}\"")];
    if let Some(error) = code.oauth_code() {
        params.push(format!("error=\"{error}\""));
        params.push(format!("error_description=\"{description}\""));
    }
    let joined = params.join(", ");
    Challenge {
        status: code.http_status(),
        www_authenticate: vec![
            format!("DPoP algs=\"EdDSA\", {joined}"),
            format!("Bearer {joined}"),
        ],
        body: json!({
            "error": code.oauth_code().unwrap_or("invalid_token"),
            "error_description": description,
            "reason": code.as_str(),
        }),
    }
}

/// `403 insufficient_scope`: the mandate is valid but does not cover `scope` (RFC 6750 §3.1;
/// MCP step-up authorization).
pub fn insufficient_scope(scope: &str, description: &str, resource_metadata: &str) -> Challenge {
    let description = error_description_text(description);
    let scope = error_description_text(scope);
    let rm = error_description_text(resource_metadata);
    let joined = format!(
        "error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{rm}\", error_description=\"{description}\""
    );
    Challenge {
        status: 403,
        www_authenticate: vec![
            format!("DPoP algs=\"EdDSA\", {joined}"),
            format!("Bearer {joined}"),
        ],
        body: json!({
            "error": "insufficient_scope",
            "error_description": description,
            "scope": scope,
        }),
    }
}

/// The RFC 9728 protected resource metadata of an upstream served at `resource`.
pub fn protected_resource_metadata(
    resource: &str,
    authorization_server: &str,
    scopes_supported: &[String],
) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [authorization_server],
        "scopes_supported": scopes_supported,
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "dpop_bound_access_tokens_required": false,
    })
}

/// Where a resource's metadata is published (RFC 9728 §3.1): the well-known path inserted
/// between the host and the resource's path, `https://gw/mcp/github` ->
/// `https://gw/.well-known/oauth-protected-resource/mcp/github`.
pub fn metadata_url(resource: &str) -> String {
    let (origin, path) = match resource.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(i) => (format!("{scheme}://{}", &rest[..i]), &rest[i..]),
            None => (resource.to_string(), ""),
        },
        None => (String::new(), resource),
    };
    let path = path.trim_end_matches('/');
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RM: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/github";

    #[test]
    fn a_missing_mandate_gets_401_with_resource_metadata_and_no_error_code() {
        let c = unauthenticated(None, "send a mandate", RM);
        assert_eq!(c.status, 401);
        assert_eq!(c.www_authenticate.len(), 2);
        assert!(c.www_authenticate[0].starts_with("DPoP algs=\"EdDSA\""));
        assert!(c.www_authenticate[1].starts_with("Bearer resource_metadata=\""));
        for h in &c.www_authenticate {
            assert!(h.contains(RM) && !h.contains("error="), "{h}");
        }
    }

    #[test]
    fn a_mandate_that_does_not_verify_names_the_rfc_error() {
        let c = unauthenticated(Some(RefusalCode::Expired), "token \"expired\"", RM);
        assert_eq!(c.status, 401);
        assert!(c.www_authenticate[1].contains("error=\"invalid_token\""));
        assert!(c.www_authenticate[1].contains("error_description=\"token 'expired'\""));
        assert_eq!(c.body["reason"], "expired");
        let c = unauthenticated(Some(RefusalCode::DpopReplayed), "reused", RM);
        assert!(c.www_authenticate[0].contains("error=\"invalid_dpop_proof\""));
        let c = unauthenticated(Some(RefusalCode::RevocationsStale), "stale", RM);
        assert_eq!(c.status, 503);
    }

    #[test]
    fn a_missing_scope_is_403_naming_it_for_step_up() {
        let c = insufficient_scope("github:merge_pr", "needs github:merge_pr", RM);
        assert_eq!(c.status, 403);
        assert!(c.www_authenticate[1].contains("error=\"insufficient_scope\""));
        assert!(c.www_authenticate[1].contains("scope=\"github:merge_pr\""));
        assert_eq!(c.body["scope"], "github:merge_pr");
    }

    #[test]
    fn metadata_lives_at_the_rfc_9728_well_known_path() {
        assert_eq!(metadata_url("https://gw.example/mcp/github"), RM);
        assert_eq!(
            metadata_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
        let m = protected_resource_metadata(
            "https://gw.example/mcp/github",
            "https://auth.example",
            &["github:read".into()],
        );
        assert_eq!(m["authorization_servers"][0], "https://auth.example");
        assert_eq!(m["dpop_signing_alg_values_supported"][0], "EdDSA");
    }
}
