//! Values that are credentials whatever key they sit under: a compact JWS anywhere in the text,
//! an `Authorization`-style value (`Bearer ...`, `Basic ...`), a URL carrying a password or a
//! secret-named query parameter, a PEM private key. The audit log records such values only as
//! HMACs, and free text (reasons, resources) has them removed. A floor under the policy's own
//! redaction, not a replacement for it: a secret with no recognisable shape under a harmless key
//! is the caller's to mark (docs/policy.md).

use std::borrow::Cow;

use crate::jws::scrub_tokens;

/// Query parameter names (compared without `_`, `-`, case) whose values are credentials.
const SECRET_PARAMS: [&str; 14] = [
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "token",
    "apikey",
    "key",
    "password",
    "pass",
    "pwd",
    "secret",
    "clientsecret",
    "sig",
    "signature",
    "xamzsignature",
];

/// `Authorization` schemes whose credentials follow them.
const SCHEMES: [&str; 5] = ["bearer", "basic", "dpop", "token", "digest"];

/// Whether `s`, as a whole value, is or carries a credential.
pub fn looks_like_secret_value(s: &str) -> bool {
    if matches!(scrub_tokens(s), Cow::Owned(_)) {
        return true;
    }
    let t = s.trim();
    if let Some((scheme, rest)) = t.split_once(' ') {
        if SCHEMES.iter().any(|x| scheme.eq_ignore_ascii_case(x)) && !rest.trim().is_empty() {
            return true;
        }
    }
    if t.contains("-----BEGIN") && t.contains("PRIVATE KEY") {
        return true;
    }
    t.split_whitespace()
        .any(|w| url_password(w) || secret_query(w))
}

/// Free text with every credential-looking word replaced by `[removed]` (JWS runs by
/// `[token removed]`), for reasons and resources that echo request values.
pub fn scrub_secrets(text: &str) -> Cow<'_, str> {
    let text = scrub_tokens(text);
    let needs = {
        let mut prev_scheme = false;
        text.split(' ').any(|w| {
            let hit = prev_scheme && credential_word(w) || url_password(w) || secret_query(w);
            prev_scheme = SCHEMES.iter().any(|x| w.eq_ignore_ascii_case(x));
            hit
        })
    };
    if !needs {
        return text;
    }
    let mut out = Vec::new();
    let mut prev_scheme = false;
    for w in text.split(' ') {
        let hit = prev_scheme && credential_word(w) || url_password(w) || secret_query(w);
        prev_scheme = SCHEMES.iter().any(|x| w.eq_ignore_ascii_case(x));
        out.push(if hit { "[removed]" } else { w });
    }
    Cow::Owned(out.join(" "))
}

/// A word that can be the credential after a scheme name (not one already removed).
fn credential_word(w: &str) -> bool {
    !w.is_empty() && !w.starts_with('[')
}

/// `scheme://user:password@host...`
fn url_password(w: &str) -> bool {
    let Some((_, rest)) = w.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A query string (after `?`) with a credential-named parameter holding a value.
fn secret_query(w: &str) -> bool {
    let Some((_, query)) = w.split_once('?') else {
        return false;
    };
    query.split(['&', ';']).any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        !value.is_empty() && SECRET_PARAMS.contains(&name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn credentials_are_recognised_by_their_shape() {
        for s in [
            JWT,
            &format!("prefix {JWT} suffix"),
            "Bearer abc.def",
            "basic dXNlcjpwYXNz",
            "postgres://u:PW@db.example/app",
            "https://api.example/v1/items?api_key=XYZ",
            "/v1/items?page=2&access_token=abc",
            "https://s3.example/o?X-Amz-Signature=abcd",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            assert!(looks_like_secret_value(s), "{s}");
        }
    }

    #[test]
    fn ordinary_values_are_not_secrets() {
        for s in [
            "/repo/src/main.rs",
            "https://github.com/acme/app/pull/7",
            "postgres://db.example/app",
            "https://user@host.example/x",
            "/v1/items?page=2&sort=name",
            "/v1/items?key=",
            "Bearer",
            "a bearer of news",
            "1.2.3",
            "hello world",
        ] {
            assert!(!looks_like_secret_value(s), "{s}");
        }
    }

    #[test]
    fn scrubbing_text_removes_only_the_credentials() {
        assert_eq!(
            scrub_secrets("GET /v1/items?api_key=XYZ is not allowed"),
            "GET [removed] is not allowed"
        );
        assert_eq!(
            scrub_secrets("sent Bearer abc and postgres://u:p@h"),
            "sent Bearer [removed] and [removed]"
        );
        assert_eq!(
            scrub_secrets(&format!("token {JWT} here")),
            "token [token removed] here"
        );
        assert!(matches!(
            scrub_secrets("nothing to see"),
            Cow::Borrowed("nothing to see")
        ));
    }
}
