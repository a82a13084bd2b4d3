//! Attacks on the mandate itself: algorithm confusion, key ids, time, integrity, size and
//! nesting, control characters and forged attribution in the chain. Every proof here is honest,
//! so each refusal comes from the token alone.

use super::*;

fn claims_with(f: impl FnOnce(&mut MandateClaims)) -> String {
    let mut c = chain_claims();
    f(&mut c);
    mandate(&c)
}

/// An `act` nesting `depth` deep, consistent with `mandate.depth`, as JSON text (serde's own
/// recursion limit would refuse to build the deep ones as a `Value`). With `compact`, only the
/// innermost actor has a `sub`, which is the smallest nesting per byte an attacker can send.
fn deep_act_payload(depth: usize, compact: bool) -> String {
    let mut act = String::new();
    for i in 0..depth {
        if compact && i + 1 < depth {
            act.push_str(r#"{"act":"#);
        } else {
            act.push_str(&format!(r#"{{"sub":"agent:a{i}","act":"#));
        }
    }
    act.truncate(act.len() - ",\"act\":".len());
    act.push_str(&"}".repeat(depth));
    let parents: Vec<String> = (0..depth).map(|i| format!("\"p{i}\"")).collect();
    format!(
        r#"{{"iss":"{ISSUER}","sub":"user:alice","aud":"{AUD}","scope":"x:y","iat":{iat},"nbf":{iat},"exp":{exp},"jti":"deep","client_id":"agent:a0","act":{act},"mandate":{{"depth":{depth},"parents":[{parents}],"max_depth":{depth}}}}}"#,
        iat = NOW - 10,
        exp = NOW + 100,
        parents = if depth <= 20 {
            parents.join(",")
        } else {
            String::new()
        }
    )
}

fn deep_mandate(depth: usize, compact: bool) -> String {
    let header = mandate_header(&kid(&issuer_key()));
    let token = sign_raw(&header, &deep_act_payload(depth, compact), &issuer_key());
    // Guard the guard: the cases below only test what they say if the sizes are as intended.
    assert_eq!(
        token.len() > MAX_TOKEN_LEN,
        depth == 1000 && !compact,
        "{depth} {compact}"
    );
    token
}

fn mandate_header(kid: &str) -> String {
    format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#)
}

pub fn cases() -> Vec<Case> {
    let ikid = kid(&issuer_key());
    let token = mandate(&chain_claims());
    let payload = serde_json::to_string(&chain_claims()).unwrap();
    let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let raw_sig = base64_decode(s);
    let mut flipped = raw_sig.clone();
    flipped[17] ^= 0x01;
    let other = other_key();

    let mut v = vec![
        dpop_case(
            "valid DPoP presentation of a delegated mandate",
            token.clone(),
            None,
        ),
        Case {
            authorization: format!("Bearer {}", mandate(&bearer_claims())),
            dpop: None,
            ..dpop_case(
                "valid bearer presentation of a bearer mandate",
                String::new(),
                None,
            )
        },
        dpop_case(
            "alg none, unsigned",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"at+jwt"}"#),
                b64(payload.as_bytes())
            ),
            Some("malformed"),
        ),
        dpop_case(
            "alg none with a signature",
            with_signature(
                &format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{ikid}"}}"#),
                &payload,
                &raw_sig,
            ),
            Some("alg_not_allowed"),
        ),
        dpop_case(
            "HS256 keyed with the issuer's public key",
            with_signature(
                &format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{ikid}"}}"#),
                &payload,
                issuer_key().public().as_bytes(),
            ),
            Some("alg_not_allowed"),
        ),
        dpop_case(
            "RS256",
            with_signature(
                &format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{ikid}"}}"#),
                &payload,
                &[7; 256],
            ),
            Some("alg_not_allowed"),
        ),
        dpop_case(
            "unknown kid (validly signed by a key the issuer does not have)",
            signed_by(&chain_claims(), &other, Some(kid(&other))),
            Some("unknown_kid"),
        ),
        dpop_case(
            "signed by the holder's own key under its own kid",
            signed_by(&chain_claims(), &holder_key(), Some(kid(&holder_key()))),
            Some("unknown_kid"),
        ),
        dpop_case(
            "signed by another key under the issuer's kid",
            signed_by(&chain_claims(), &other, Some(ikid.clone())),
            Some("bad_signature"),
        ),
        dpop_case(
            "no kid",
            signed_by(&chain_claims(), &issuer_key(), None),
            Some("unknown_kid"),
        ),
    ];
    let nul_suffixed = format!("{ikid}\u{0}");
    for (name, evil) in [
        ("kid path traversal", "../../etc/passwd"),
        ("kid SQL injection", "' OR 1=1 --"),
        ("kid with a NUL byte", "kid\u{0}"),
        (
            "the issuer's kid with a NUL appended",
            nul_suffixed.as_str(),
        ),
        ("empty kid", ""),
    ] {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": evil});
        v.push(dpop_case(
            name,
            sign_raw(&header.to_string(), &payload, &issuer_key()),
            Some("unknown_kid"),
        ));
    }
    v.extend([
        dpop_case(
            "expired",
            claims_with(|c| c.exp = NOW - SKEW),
            Some("expired"),
        ),
        dpop_case(
            "not yet valid",
            claims_with(|c| c.nbf = NOW + SKEW + 1),
            Some("not_yet_valid"),
        ),
        dpop_case(
            "issued in the future",
            claims_with(|c| c.iat = NOW + SKEW + 1),
            Some("not_yet_valid"),
        ),
        dpop_case(
            "wrong audience",
            claims_with(|c| {
                c.aud = mandate_core::claims::Audience::One("https://evil.example".into())
            }),
            Some("wrong_aud"),
        ),
        dpop_case(
            "wrong issuer",
            claims_with(|c| c.iss = "https://evil.example".into()),
            Some("wrong_iss"),
        ),
        dpop_case(
            "wrong typ",
            sign_raw(
                &format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{ikid}"}}"#),
                &payload,
                &issuer_key(),
            ),
            Some("wrong_typ"),
        ),
        dpop_case(
            "a DPoP proof presented as the mandate",
            proof(&token, "p0"),
            Some("wrong_typ"),
        ),
        dpop_case(
            "flipped signature bit",
            format!("{h}.{p}.{}", b64(&flipped)),
            Some("bad_signature"),
        ),
        dpop_case(
            "payload swapped under the original signature",
            format!(
                "{h}.{}.{s}",
                b64(claims_payload_with_scope("github:*").as_bytes())
            ),
            Some("bad_signature"),
        ),
        dpop_case(
            "truncated signature",
            token[..token.len() - 4].to_string(),
            Some("malformed"),
        ),
        dpop_case(
            "signature part removed",
            format!("{h}.{p}"),
            Some("malformed"),
        ),
        dpop_case("1 MiB token", "a".repeat(1 << 20), Some("token_too_large")),
        dpop_case(
            "just over the size limit",
            format!("{token}{}", "A".repeat(MAX_TOKEN_LEN)),
            Some("token_too_large"),
        ),
        // With a `sub` at every level, 1,000 actors cannot fit in a token: the size guard refuses
        // it before any parser runs.
        dpop_case(
            "act nested 1,000 deep",
            deep_mandate(1000, false),
            Some("token_too_large"),
        ),
        // Compact nesting fits, and serde's recursion limit refuses it without a stack overflow.
        dpop_case(
            "act nested 1,000 deep, compact",
            deep_mandate(1000, true),
            Some("malformed_claims"),
        ),
        dpop_case(
            "act nested 300 deep, a sub at every level",
            deep_mandate(300, false),
            Some("malformed_claims"),
        ),
        dpop_case(
            "act nested one past the hard limit",
            deep_mandate(17, false),
            Some("bad_chain"),
        ),
        dpop_case(
            "client_id is not the current actor",
            claims_with(|c| c.client_id = "agent:planner".into()),
            Some("bad_chain"),
        ),
        dpop_case(
            "act chain shorter than the depth claims",
            claims_with(|c| {
                c.act = Some(Act {
                    sub: "agent:coder".into(),
                    act: None,
                })
            }),
            Some("bad_chain"),
        ),
        // Control characters: names that would reach a policy, a log or an operator's terminal.
        dpop_case(
            "escape sequence in the subject",
            claims_with(|c| c.sub = "user:alice\u{1b}]0;pwned\u{7}".into()),
            Some("bad_chain"),
        ),
        dpop_case(
            "escape sequence in an earlier actor",
            claims_with(|c| {
                if let Some(a) = c.act.as_mut().and_then(|a| a.act.as_mut()) {
                    a.sub = "agent:planner\u{1b}[2J".into();
                }
            }),
            Some("bad_chain"),
        ),
        dpop_case(
            "bidi override in the holder's name",
            claims_with(|c| {
                c.client_id = "agent:\u{202e}redoc".into();
                if let Some(a) = c.act.as_mut() {
                    a.sub = c.client_id.clone();
                }
            }),
            Some("bad_chain"),
        ),
        // Asserted attribution: a chain that is not a chain of distinct principals.
        dpop_case(
            "a principal twice in the chain",
            claims_with(|c| {
                if let Some(a) = c.act.as_mut().and_then(|a| a.act.as_mut()) {
                    a.sub = "user:alice".into();
                }
            }),
            Some("bad_chain"),
        ),
        dpop_case(
            "a chain naming something that is not a principal",
            claims_with(|c| c.sub = "admin".into()),
            Some("bad_chain"),
        ),
        // may_act: the principal it names is not a name at all.
        dpop_case(
            "may_act naming a non-principal",
            claims_with(|c| c.may_act = Some(mandate_core::claims::MayAct { sub: "*".into() })),
            Some("bad_chain"),
        ),
    ]);
    v
}

fn claims_payload_with_scope(scope: &str) -> String {
    let mut c = chain_claims();
    c.scope = scope.into();
    serde_json::to_string(&c).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
