//! Compact JWS (RFC 7515) with Ed25519 only (RFC 8037 `EdDSA`, RFC 9864 `Ed25519`).
//!
//! Decoding is "parse, don't validate": a `Jws` exists only for input that has three base64url
//! parts, a JSON header naming an Ed25519 algorithm, no `crit` members, and a 64-byte signature.
//! Signature checking is a separate, explicit step because the caller alone knows the right key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SecretKey};

/// Tokens longer than this are refused before any decoding (DoS guard).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token is {0} bytes, over the {MAX_TOKEN_LEN}-byte limit")]
    TooLarge(usize),
    /// Not three dot-separated base64url parts.
    #[error("not a compact JWS (expected three base64url parts separated by '.')")]
    Malformed,
    /// The header is not a JSON object of the expected shape.
    #[error("JWS header is not valid JSON: {0}")]
    BadHeader(String),
    /// The algorithm is anything but Ed25519.
    #[error("algorithm {0:?} is not accepted: only EdDSA (Ed25519) is")]
    Algorithm(String),
    /// The header lists critical extensions we do not understand.
    #[error("JWS header has \"crit\" extensions, which are not supported")]
    Crit,
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    Signature,
    /// The payload is not a JSON object of the expected shape.
    #[error("JWS payload is not valid: {0}")]
    BadPayload(String),
}

/// The JOSE header members Mandate reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Signature algorithm: `EdDSA` or `Ed25519`.
    pub alg: String,
    /// Media type, e.g. `at+jwt`, `dpop+jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Embedded public JWK (DPoP proofs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// Critical extensions; any value makes the token unacceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

/// A structurally valid compact JWS whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The decoded header.
    pub header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: [u8; 64],
}

fn b64(part: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed)
}

impl<'a> Jws<'a> {
    /// Splits and decodes a compact JWS, refusing anything but Ed25519.
    pub fn decode(token: &'a str) -> Result<Self, JwsError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwsError::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) if !h.is_empty() && !s.is_empty() => (h, p, s),
            _ => return Err(JwsError::Malformed),
        };
        // RFC 7515 §4: the header is UTF-8 JSON. serde_json does not check the UTF-8 of members
        // it skips, so the whole text is checked first (found by the `tokens` fuzz target).
        let header_bytes = b64(h)?;
        let header_text = std::str::from_utf8(&header_bytes)
            .map_err(|_| JwsError::BadHeader("not UTF-8".into()))?;
        let header: Header =
            serde_json::from_str(header_text).map_err(|e| JwsError::BadHeader(e.to_string()))?;
        if header.alg != "EdDSA" && header.alg != "Ed25519" {
            return Err(JwsError::Algorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(JwsError::Crit);
        }
        let signature: [u8; 64] = b64(s)?.try_into().map_err(|_| JwsError::Malformed)?;
        Ok(Jws {
            header,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload: b64(p)?,
            signature,
        })
    }

    /// The payload bytes, not yet authenticated.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Parses the payload as JSON, without checking the signature (for routing only).
    pub fn unverified_claims<T: for<'de> Deserialize<'de>>(&self) -> Result<T, JwsError> {
        // RFC 7519 §7.2: the claims are UTF-8 JSON (checked whole, as for the header).
        let text = std::str::from_utf8(&self.payload)
            .map_err(|_| JwsError::BadPayload("not UTF-8".into()))?;
        serde_json::from_str(text).map_err(|e| JwsError::BadPayload(e.to_string()))
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), JwsError> {
        if key.verify(self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(JwsError::Signature)
        }
    }
}

/// Signs `claims` as a compact JWS with the given header.
pub fn sign<T: Serialize>(header: &Header, claims: &T, key: &SecretKey) -> String {
    let h = serde_json::to_vec(header).expect("header serialises");
    let p = serde_json::to_vec(claims).expect("claims serialise");
    let mut out = String::with_capacity(h.len() * 4 / 3 + p.len() * 4 / 3 + 90);
    URL_SAFE_NO_PAD.encode_string(h, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(p, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

/// Whether `s` (surrounding whitespace aside) has the shape of a compact JWS, such as a mandate:
/// three '.'-separated base64url segments whose first decodes to a JSON object with a string
/// `alg` member (RFC 7515 §4.1.1 requires one in every JWS header). Whatever the algorithm, and
/// without checking anything else: this is for refusing a token where an identifier (a kid, a
/// principal name) is expected, so that a pasted token is neither sent nor stored nor logged.
///
/// Requiring `alg` keeps identifiers that merely have two dots from matching: `e30` is the
/// base64url of `{}`, so `e30.a.b` (a valid agent name) would otherwise look like a token.
pub fn looks_like_compact_jws(s: &str) -> bool {
    let mut parts = s.trim().split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.is_empty() || ![h, p, sig].into_iter().all(base64url) {
        return false;
    }
    URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get("alg").is_some_and(serde_json::Value::is_string))
}

/// Free text with every token-looking run (see [`looks_like_compact_jws`]) replaced by
/// `[token removed]`: error descriptions and audit reasons echo request values, and a token must
/// not survive in either.
pub fn scrub_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if !is_tok(bytes[i] as char) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_tok(bytes[i] as char) {
            i += 1;
        }
        let run = &text[start..i];
        let run = run.trim_matches('.');
        let lead = text[start..i].len() - text[start..i].trim_start_matches('.').len();
        if run.matches('.').count() < 2 {
            continue;
        }
        // A token may be glued after other token characters (`x` + a mandate): past the run's
        // start, one can begin only where a JSON header's base64 does (`eyJ` is `{"`).
        let from = if starts_like_jws(run) {
            Some(0)
        } else {
            run.match_indices("eyJ")
                .map(|(at, _)| at)
                .find(|&at| at > 0 && starts_like_jws(&run[at..]))
        };
        if let Some(at) = from {
            out.push_str(&text[last..start + lead + at]);
            out.push_str("[token removed]");
            last = start + lead + run.len();
            changed = true;
        }
    }
    if !changed {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
}

/// A run of token characters whose first three segments look like a compact JWS (base64
/// padding at the end of a segment is ignored: a token padded by hand is still the token).
fn starts_like_jws(run: &str) -> bool {
    let mut it = run.splitn(4, '.').map(|s| s.trim_end_matches('='));
    match (it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s)) => looks_like_compact_jws(&format!("{h}.{p}.{s}")),
        _ => false,
    }
}

/// A header `{"alg":"EdDSA","typ":typ}` plus the given optional members.
pub fn header(typ: &str, kid: Option<String>, jwk: Option<serde_json::Value>) -> Header {
    Header {
        alg: "EdDSA".into(),
        typ: Some(typ.into()),
        kid,
        jwk,
        crit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_seed(&[1; 32])
    }

    #[test]
    fn looks_like_compact_jws_finds_tokens_of_any_algorithm_and_nothing_else() {
        let token = sign(
            &header("at+jwt", Some("kid".into()), None),
            &serde_json::json!({"jti": "j1"}),
            &key(),
        );
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let rows: Vec<(String, bool)> = vec![
            (token.clone(), true),
            (format!("  {token}\n"), true),
            // Another algorithm, an unsecured JWT (empty signature), an empty payload.
            (
                format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64("{}")),
                true,
            ),
            (format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}")), true),
            (format!("{}..c2ln", b64(r#"{"alg":"EdDSA"}"#)), true),
            // Identifiers: a kid (RFC 7638 thumbprint), principal names, a jti.
            ("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into(), false),
            ("agent:planner".into(), false),
            ("e30.a.b".into(), false),
            ("planner.v2.prod".into(), false),
            // Almost tokens: a header without alg, not an object, not base64url, wrong count.
            (
                format!("{}.{}.c2ln", b64(r#"{"typ":"JWT"}"#), b64("{}")),
                false,
            ),
            (format!("{}.{}.c2ln", b64(r#"{"alg":1}"#), b64("{}")), false),
            (format!("{}.{}.c2ln", b64(r#"["alg"]"#), b64("{}")), false),
            (format!("{}.{}.c2ln", b64("not json"), b64("{}")), false),
            (
                format!("{}=.{}.c2ln", b64(r#"{"alg":"EdDSA"}"#), b64("{}")),
                false,
            ),
            (
                format!("{}.{}", b64(r#"{"alg":"EdDSA"}"#), b64("{}")),
                false,
            ),
            (format!("{token}.x"), false),
            (format!(".{}.c2ln", b64("{}")), false),
            (String::new(), false),
            ("..".into(), false),
        ];
        for (value, want) in rows {
            assert_eq!(looks_like_compact_jws(&value), want, "{value:?}");
        }
    }

    #[test]
    fn sign_then_decode_and_verify() {
        let t = sign(
            &header("JWT", None, None),
            &serde_json::json!({"a": 1}),
            &key(),
        );
        let j = Jws::decode(&t).unwrap();
        j.verify(&key().public()).unwrap();
        assert_eq!(j.unverified_payload(), br#"{"a":1}"#);
        assert_eq!(
            j.verify(&SecretKey::from_seed(&[2; 32]).public()),
            Err(JwsError::Signature)
        );
    }

    #[test]
    fn rfc8037_a4_signature_verifies() {
        // RFC 8037 Appendix A.4: the example JWS over "Example of Ed25519 signing".
        let t = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        let k = PublicKey::parse("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        Jws::decode(t).unwrap().verify(&k).unwrap();
    }

    #[test]
    fn a_header_or_payload_that_is_not_utf8_is_refused_even_in_a_skipped_member() {
        // Found by the `tokens` fuzz target: serde_json skips unknown members without checking
        // their UTF-8.
        let header = b"{\"alg\":\"EdDSA\",\"x\":\"\xc4\x34\"}";
        let t = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(b"{}"),
            URL_SAFE_NO_PAD.encode([0u8; 64])
        );
        assert_eq!(
            Jws::decode(&t).unwrap_err(),
            JwsError::BadHeader("not UTF-8".into())
        );
        let ok_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#);
        let payload = URL_SAFE_NO_PAD.encode(b"{\"x\":\"\xc4\x34\"}");
        let t = format!(
            "{ok_header}.{payload}.{}",
            URL_SAFE_NO_PAD.encode([0u8; 64])
        );
        let j = Jws::decode(&t).unwrap();
        assert!(matches!(
            j.unverified_claims::<serde_json::Value>(),
            Err(JwsError::BadPayload(_))
        ));
    }

    #[test]
    fn tokens_are_recognised_and_scrubbed_from_free_text() {
        let t = sign(
            &header("at+jwt", None, None),
            &serde_json::json!({"sub": "x"}),
            &key(),
        );
        assert!(looks_like_compact_jws(&t));
        assert!(looks_like_compact_jws(&format!(" {t}\n")));
        // Any algorithm: a header is a JSON object.
        assert!(looks_like_compact_jws("eyJhbGciOiJub25lIn0.e30."));
        for not in [
            "agent:coder",
            "a.b.c",
            "kid-1",
            "",
            "e30.e30",
            "x.y.z.w",
            "Zm9v.YmFy.YmF6",
        ] {
            assert!(!looks_like_compact_jws(not), "{not}");
        }
        let text = format!("invalid scope {t:?}: write resource:action; also ({t}).");
        let clean = scrub_tokens(&text);
        assert!(!clean.contains(&t[..20]), "{clean}");
        assert_eq!(clean.matches("[token removed]").count(), 2, "{clean}");
        assert!(clean.starts_with("invalid scope \"[token removed]\": write"));
        assert!(matches!(
            scrub_tokens("nothing here: a.b.c"),
            std::borrow::Cow::Borrowed(_)
        ));
        // Glued after other token characters, or with a segment padded by hand: still removed,
        // with nothing of the payload or the signature left.
        let (h, rest) = t.split_once('.').unwrap();
        let (p, sig) = rest.split_once('.').unwrap();
        for disguised in [
            format!("x{t}\u{200b}"),
            format!("abc-{t}"),
            format!("{h}=.{p}.{sig}"),
            format!("{h}==.{p}=.{sig}"),
        ] {
            let clean = scrub_tokens(&disguised);
            assert!(clean.contains("[token removed]"), "{disguised}");
            assert!(
                !clean.contains(&p[..12]) && !clean.contains(&sig[..12]),
                "{clean}"
            );
        }
        assert_eq!(scrub_tokens(&format!("x{t}")), "x[token removed]");
    }

    #[test]
    fn refuses_other_algorithms_and_shapes() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let body = enc("{}");
        let sig = URL_SAFE_NO_PAD.encode([0u8; 64]);
        for (alg, want) in [
            ("none", JwsError::Algorithm("none".into())),
            ("HS256", JwsError::Algorithm("HS256".into())),
            ("RS256", JwsError::Algorithm("RS256".into())),
        ] {
            let t = format!("{}.{body}.{sig}", enc(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(Jws::decode(&t).unwrap_err(), want);
        }
        let crit = format!("{}.{body}.{sig}", enc(r#"{"alg":"EdDSA","crit":["x"]}"#));
        assert_eq!(Jws::decode(&crit).unwrap_err(), JwsError::Crit);
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.AA",
            &format!("{}.{body}.", enc(r#"{"alg":"EdDSA"}"#)),
        ] {
            assert!(Jws::decode(bad).is_err(), "{bad}");
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            Jws::decode(&huge).unwrap_err(),
            JwsError::TooLarge(MAX_TOKEN_LEN + 1)
        );
    }
}
