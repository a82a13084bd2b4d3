//! Attack tokens against the running authority, table-driven. Every row is presented twice: to
//! RFC 7662 introspection, which must answer exactly `{"active": false}`, and as the
//! `subject_token` of an RFC 8693 exchange by an authenticated client, which must be refused with
//! the exact RFC 6749 error (or, for a body over the 64 KiB request limit, the exact HTTP status).
//!
//! Rows that need a valid signature over hostile claims (expired, not yet valid, wrong `iss`,
//! oversized, absurd `act` nesting) are signed with the issuer's real private key, read from
//! `MANDATE_HOME/server/issuer-keys/KID.jwk`: they test the claim checks, not the signature check.

mod common;

// The classes of attack found by the outside review of the running authority (issue 10), one
// module each.
#[path = "attacks_server/amplification.rs"]
mod amplification;
#[path = "attacks_server/attribution.rs"]
mod attribution;
#[path = "attacks_server/control_chars.rs"]
mod control_chars;
#[path = "attacks_server/may_act.rs"]
mod may_act;
#[path = "attacks_server/slow_clients.rs"]
mod slow_clients;
#[path = "attacks_server/smaller.rs"]
mod smaller;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{
    assert_token, fresh_key, json_body, jwt_header, jwt_payload, now, random_id, Server,
    ACCESS_TOKEN_TYPE, GITHUB, INTROSPECTOR, INTROSPECT_PATH, TOKEN_EXCHANGE,
};
use mandate_core::assertion::ASSERTION_TYPE;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the server must answer for one attack token.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Introspection: 200 `{"active": false}`; exchange: 400 with this `error`.
    Refused(&'static str),
    /// Both endpoints: refused by the request body limit with this HTTP status, before parsing.
    BodyLimit(u16),
}

struct Case {
    name: String,
    token: String,
    /// Who presents it as subject_token (pushing to `to`).
    caller: &'static str,
    to: &'static str,
    want: Want,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).expect("JSON"))
}

use common::{sign_jws as sign, sign_raw};

/// A compact JWS with an arbitrary signature part.
fn with_signature(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64_json(header), b64_json(claims), b64(sig))
}

/// HMAC-SHA256 (RFC 2104), for the algorithm-confusion rows.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// An HS256 token whose MAC key is `secret`.
fn hs256(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let input = format!("{}.{}", b64_json(&header), b64_json(claims));
    let mac = hmac_sha256(secret, input.as_bytes());
    format!("{input}.{}", b64(&mac))
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// `{"sub":...,"act":{...}}` nested `depth` deep, as JSON text (built without recursion).
fn nested_act(depth: usize, sub: Option<&str>) -> String {
    let open = match sub {
        Some(s) => format!(r#"{{"sub":"{s}","act":"#),
        None => r#"{"act":"#.to_string(),
    };
    let leaf = match sub {
        Some(s) => format!(r#"{{"sub":"{s}"}}"#),
        None => "{}".to_string(),
    };
    let mut out = open.repeat(depth - 1);
    out.push_str(&leaf);
    out.push_str(&"}".repeat(depth - 1));
    out
}

/// Claims with `act` replaced by raw JSON text, serialised by hand so the nesting never goes
/// through a recursive serializer.
fn claims_with_raw_act(base: &Value, act_json: &str) -> Vec<u8> {
    let mut c = base.clone();
    c.as_object_mut().expect("object").remove("act");
    let text = serde_json::to_string(&c).expect("JSON");
    let body = text.strip_suffix('}').expect("object text");
    format!(r#"{body},"act":{act_json}}}"#).into_bytes()
}

/// Presents `token` as the subject_token of a push exchange by `caller` (with its own DPoP
/// proof): status and body text, or how the connection failed.
fn exchange(
    s: &Server,
    caller: &str,
    to: &str,
    token: &str,
    once: bool,
) -> Result<(u16, String), String> {
    let key = s.key(caller);
    let a = s.assertion(&key, caller);
    let form = [
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", token),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("requested_actor", to),
    ];
    let proof = s.proof(&key);
    if once {
        s.try_post_raw_once("/oauth2/token", &form, Some(&proof))
    } else {
        s.try_post_raw("/oauth2/token", &form, Some(&proof))
    }
}

/// Introspects `token` as [`INTROSPECTOR`]: status and body text, or how the connection failed.
fn introspect(s: &Server, token: &str, once: bool) -> Result<(u16, String), String> {
    if !once {
        return s.try_authed_raw(INTROSPECT_PATH, INTROSPECTOR, &[("token", token)]);
    }
    let a = s.assertion_for(INTROSPECTOR, &s.url);
    let form = [
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
        ("token", token),
    ];
    s.try_post_raw_once(INTROSPECT_PATH, &form, None)
}

fn short(t: &str) -> String {
    t.chars().take(300).collect()
}

/// Whether an answer is the body limit's: HTTP `want`, or the connection cut by the server
/// while the oversized body was still being sent (it refuses on Content-Length, unread).
fn is_body_limit(answer: &Result<(u16, String), String>, want: u16) -> bool {
    match answer {
        Ok((status, _)) => *status == want,
        Err(e) => e.contains("BrokenPipe") || e.contains("ConnectionReset"),
    }
}

fn describe(answer: &Result<(u16, String), String>) -> String {
    match answer {
        Ok((status, text)) => format!("HTTP {status}: {}", short(text)),
        Err(e) => format!("no answer: {}", short(e)),
    }
}

/// Checks one row; returns what went wrong, if anything.
fn check(s: &Server, c: &Case) -> Vec<String> {
    let mut problems = vec![];
    // Oversized requests go on connections of their own (see `Server::try_post_raw_once`).
    let once = matches!(c.want, Want::BodyLimit(_));
    let answer = introspect(s, &c.token, once);
    let ok = match (c.want, &answer) {
        (Want::Refused(_), Ok((status, text))) => {
            *status == 200
                && serde_json::from_str::<Value>(text).ok() == Some(json!({"active": false}))
        }
        (Want::Refused(_), Err(_)) => false,
        (Want::BodyLimit(want), a) => is_body_limit(a, want),
    };
    if !ok {
        let want = match c.want {
            Want::Refused(_) => "200 {\"active\": false}".to_string(),
            Want::BodyLimit(w) => format!("HTTP {w} (body limit)"),
        };
        problems.push(format!(
            "introspection: want {want}, got {}",
            describe(&answer)
        ));
    }
    let answer = exchange(s, c.caller, c.to, &c.token, once);
    let ok = match (c.want, &answer) {
        (Want::Refused(code), Ok((status, text))) => {
            let body: Option<Value> = serde_json::from_str(text).ok();
            let error = body.as_ref().and_then(|b| b["error"].as_str());
            let described = body
                .as_ref()
                .and_then(|b| b["error_description"].as_str())
                .is_some_and(|d| !d.trim().is_empty());
            *status == 400 && error == Some(code) && described
        }
        (Want::Refused(_), Err(_)) => false,
        (Want::BodyLimit(want), a) => is_body_limit(a, want),
    };
    if !ok {
        let want = match c.want {
            Want::Refused(code) => format!("400 {code} with a description"),
            Want::BodyLimit(w) => format!("HTTP {w} (body limit)"),
        };
        problems.push(format!("exchange: want {want}, got {}", describe(&answer)));
    }
    problems
}

#[test]
fn every_attack_token_is_inactive_at_introspection_and_refused_at_exchange() {
    let s = Server::demo();

    // The genuine article, from which every forgery is made.
    let good = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let header = jwt_header(&good);
    let claims = jwt_payload(&good);
    let kid = header["kid"].as_str().expect("kid").to_string();
    let issuer = s.issuer_key(&kid);
    assert_eq!(
        issuer.public().thumbprint(),
        kid,
        "the issuer key file is the key that signs mandates"
    );
    let issuer_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
    // Ed25519 is deterministic: the key file reproduces the genuine signature exactly.
    let (signing_input, genuine_sig) = good.rsplit_once('.').expect("compact JWS");
    assert_eq!(
        b64(&issuer.sign(signing_input.as_bytes())),
        genuine_sig,
        "the issuer key file signs exactly as the authority does"
    );

    // Controls: the genuine mandate, and the same claims re-signed here with a fresh jti, pass
    // both checks, so every refusal below is due to what the row changes.
    s.assert_active(&good, "the genuine mandate");
    assert_token(&s.push("agent:planner", &good, "agent:coder", &[]));
    let mut resigned_claims = claims.clone();
    resigned_claims["jti"] = json!(random_id());
    let resigned = sign(&issuer_header, &resigned_claims, &issuer);
    s.assert_active(
        &resigned,
        "genuine claims signed with the issuer key by the test",
    );
    assert_token(&s.push("agent:planner", &resigned, "agent:coder", &[]));

    // A chain alice -> planner -> coder whose middle link is then revoked; coder would pass
    // it on to reviewer.
    s.ok(&[
        "agent",
        "create",
        "reviewer",
        "--scopes",
        "github:pulls.*",
        "--audiences",
        GITHUB,
    ]);
    let alice = s.own_mandate("user:alice", "github:pulls.write", GITHUB);
    let planner = assert_token(&s.push("user:alice", &alice, "agent:planner", &[]));
    let coder = assert_token(&s.push("agent:planner", &planner, "agent:coder", &[]));
    s.assert_active(&coder, "coder's mandate before its ancestor is revoked");
    assert_token(&s.push("agent:coder", &coder, "agent:reviewer", &[]));
    let planner_jti = jwt_payload(&planner)["jti"]
        .as_str()
        .expect("jti")
        .to_string();
    s.ok(&["revoke", "token", &planner_jti]);

    let n = now();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        c["jti"] = json!(random_id());
        f(&mut c);
        c
    };
    let (sig_input, sig) = good.rsplit_once('.').expect("compact JWS");
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).expect("signature");
    let mut flipped = sig_bytes.clone();
    flipped[5] ^= 0x01;
    let widened = {
        let mut c = claims.clone();
        c["scope"] = json!("github:*");
        format!("{}.{}.{sig}", b64_json(&header), b64_json(&c))
    };
    let attacker = fresh_key();
    let issuer_x = URL_SAFE_NO_PAD
        .decode(issuer.public().x())
        .expect("issuer x");
    let deep_ok = {
        // 17 hops, each consistent with the next: deeper than the hard limit (16).
        let depth = 17;
        let mut act = json!({"sub": "agent:planner"});
        for i in 1..depth {
            let who = if i % 2 == 0 {
                "agent:planner"
            } else {
                "agent:coder"
            };
            act = json!({"sub": who, "act": act});
        }
        let holder = act["sub"].clone();
        with(&|c| {
            c["act"] = act.clone();
            c["client_id"] = holder.clone();
            c["mandate"] = json!({
                "depth": depth,
                "max_depth": depth,
                "parents": (0..depth).map(|_| random_id()).collect::<Vec<_>>(),
            });
        })
    };
    let padded = |bytes: usize| {
        with(&|c| {
            c["pad"] = json!("x".repeat(bytes));
        })
    };
    let hdr = |alg: &str, kid: Value| json!({"alg": alg, "typ": "at+jwt", "kid": kid});
    let planner_only = |name: &str, token: String, want: Want| Case {
        name: name.to_string(),
        token,
        caller: "agent:planner",
        to: "agent:coder",
        want,
    };
    use Want::{BodyLimit, Refused};
    let grant = Refused("invalid_grant");

    let cases = vec![
        // --- algorithms other than EdDSA ---
        planner_only(
            "alg none, empty signature",
            format!(
                "{}.{}.",
                b64_json(&hdr("none", json!(kid))),
                b64_json(&claims)
            ),
            grant,
        ),
        planner_only(
            "alg None, the genuine signature kept",
            format!(
                "{}.{}.{sig}",
                b64_json(&hdr("None", json!(kid))),
                b64_json(&claims)
            ),
            grant,
        ),
        planner_only(
            "HS256, random signature",
            with_signature(&hdr("HS256", json!(kid)), &claims, &random_bytes(32)),
            grant,
        ),
        planner_only(
            "HS256 keyed with the issuer's raw public key (key confusion)",
            hs256(&claims, &kid, &issuer_x),
            grant,
        ),
        planner_only(
            "HS256 keyed with the issuer's public x (key confusion)",
            hs256(&claims, &kid, issuer.public().x().as_bytes()),
            grant,
        ),
        planner_only(
            "HS256 keyed with the issuer's public JWK (key confusion)",
            hs256(
                &claims,
                &kid,
                issuer.public().to_jwk().to_string().as_bytes(),
            ),
            grant,
        ),
        planner_only(
            "RS256, random 2048-bit signature",
            with_signature(&hdr("RS256", json!(kid)), &claims, &random_bytes(256)),
            grant,
        ),
        planner_only(
            "ES256, random signature",
            with_signature(&hdr("ES256", json!(kid)), &claims, &random_bytes(64)),
            grant,
        ),
        // --- keys and kids ---
        planner_only(
            "EdDSA by an unknown key under its own kid",
            sign(
                &hdr("EdDSA", json!(attacker.public().thumbprint())),
                &claims,
                &attacker,
            ),
            grant,
        ),
        planner_only(
            "EdDSA by an unknown key under the issuer's kid",
            sign(&issuer_header, &claims, &attacker),
            grant,
        ),
        planner_only(
            "no kid, the attacker's key embedded as jwk",
            sign(
                &json!({"alg": "EdDSA", "typ": "at+jwt", "jwk": attacker.public().to_jwk()}),
                &claims,
                &attacker,
            ),
            grant,
        ),
        planner_only(
            "kid ../../etc/passwd",
            sign(&hdr("EdDSA", json!("../../etc/passwd")), &claims, &attacker),
            grant,
        ),
        planner_only(
            "kid pointing at the issuer key file by path",
            sign(
                &hdr("EdDSA", json!(format!("../issuer-keys/{kid}"))),
                &claims,
                &attacker,
            ),
            grant,
        ),
        planner_only(
            "kid ' OR 1=1 --",
            sign(&hdr("EdDSA", json!("' OR 1=1 --")), &claims, &attacker),
            grant,
        ),
        planner_only(
            "kid is a number",
            sign(&hdr("EdDSA", json!(1)), &claims, &attacker),
            grant,
        ),
        planner_only(
            "typ JWT (not a mandate), signed by the issuer",
            sign(
                &json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
                &claims,
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "a client assertion presented as a mandate",
            common::assertion_by(&s.key("agent:planner"), "agent:planner", &s.url),
            grant,
        ),
        // --- signature and encoding damage ---
        planner_only(
            "one signature bit flipped",
            format!("{sig_input}.{}", b64(&flipped)),
            grant,
        ),
        planner_only("payload widened, signature kept", widened, grant),
        planner_only(
            "signature truncated by 4 characters",
            good[..good.len() - 4].to_string(),
            grant,
        ),
        planner_only("signature part missing", sig_input.to_string(), grant),
        planner_only(
            "header only",
            good.split('.').next().expect("header").to_string(),
            grant,
        ),
        planner_only("four parts", format!("{good}.{sig}"), grant),
        planner_only("not base64url", "!!!.???.***".to_string(), grant),
        // --- claims, signed by the real issuer key ---
        planner_only(
            "expired an hour ago",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["iat"] = json!(n - 7200);
                    c["nbf"] = json!(n - 7200);
                    c["exp"] = json!(n - 3600);
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "expired 5 seconds ago",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["iat"] = json!(n - 65);
                    c["nbf"] = json!(n - 65);
                    c["exp"] = json!(n - 5);
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "not yet valid: nbf and iat an hour ahead",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["iat"] = json!(n + 3600);
                    c["nbf"] = json!(n + 3600);
                    c["exp"] = json!(n + 7200);
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "not yet valid: nbf and iat 20 seconds ahead",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["iat"] = json!(n + 20);
                    c["nbf"] = json!(n + 20);
                    c["exp"] = json!(n + 600);
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "not yet valid: nbf an hour ahead",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["nbf"] = json!(n + 3600);
                    c["exp"] = json!(n + 7200);
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "wrong iss",
            sign(
                &issuer_header,
                &with(&|c| c["iss"] = json!("https://evil.example")),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "iss with a trailing slash",
            sign(
                &issuer_header,
                &with(&|c| c["iss"] = json!(format!("{}/", s.url))),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "no jti",
            sign(
                &issuer_header,
                &with(&|c| {
                    c.as_object_mut().expect("object").remove("jti");
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "exp is a string",
            sign(
                &issuer_header,
                &with(&|c| c["exp"] = json!("9999999999")),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "payload is a JSON array",
            sign(&issuer_header, &json!([claims.clone()]), &issuer),
            grant,
        ),
        planner_only(
            "forged actor: act claims coder while depth is 0",
            sign(
                &issuer_header,
                &with(&|c| {
                    c["act"] = json!({"sub": "agent:planner", "act": {"sub": "agent:coder"}})
                }),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "a consistent chain 17 hops deep (over the hard limit of 16)",
            sign(&issuer_header, &deep_ok, &issuer),
            grant,
        ),
        planner_only(
            "act nested 1,000 deep",
            sign_raw(
                &issuer_header,
                &claims_with_raw_act(&claims, &nested_act(1000, Some("agent:planner"))),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "act nested 1,000 deep, compact (under the 16 KiB token limit)",
            sign_raw(
                &issuer_header,
                &claims_with_raw_act(&claims, &nested_act(1000, None)),
                &issuer,
            ),
            grant,
        ),
        planner_only(
            "32 KiB token (over the token limit, under the body limit)",
            sign(&issuer_header, &padded(24 * 1024), &issuer),
            grant,
        ),
        planner_only(
            "1 MiB token (over the 64 KiB body limit)",
            sign(&issuer_header, &padded(768 * 1024), &issuer),
            BodyLimit(413),
        ),
        // --- revocation ---
        Case {
            name: "a mandate whose ancestor was revoked".into(),
            token: coder.clone(),
            caller: "agent:coder",
            to: "agent:reviewer",
            want: grant,
        },
        Case {
            name: "the revoked mandate itself".into(),
            token: planner.clone(),
            caller: "agent:planner",
            to: "agent:coder",
            want: grant,
        },
    ];
    // Sanity of the rows' construction.
    let len = |name: &str, cases: &[Case]| {
        cases
            .iter()
            .find(|c| c.name.starts_with(name))
            .map(|c| c.token.len())
            .expect("row")
    };
    assert!(len("act nested 1,000 deep, compact", &cases) < 16 * 1024);
    assert!(len("act nested 1,000 deep", &cases) > 16 * 1024);
    assert!(len("act nested 1,000 deep", &cases) < 60 * 1024);
    assert!((20 * 1024..60 * 1024).contains(&len("32 KiB", &cases)));
    assert!(len("1 MiB", &cases) >= 1024 * 1024);

    let mut failures = vec![];
    for c in &cases {
        for p in check(&s, c) {
            failures.push(format!("{}: {p}", c.name));
        }
    }
    // The server is still up and still issuing after all that.
    s.assert_active(&good, "the genuine mandate after the attacks");
    assert!(
        failures.is_empty(),
        "{} of {} rows misbehaved:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_body_limit_answers_before_client_authentication() {
    // A 1 MiB form with no client authentication at all gets the same answer: nothing in it
    // is parsed, so nothing about the caller or the token is checked or revealed.
    let s = Server::demo();
    let huge = "a".repeat(1024 * 1024);
    for path in [INTROSPECT_PATH, "/oauth2/revoke", "/oauth2/token"] {
        let answer = s.try_post_raw_once(path, &[("token", huge.as_str())], None);
        assert!(is_body_limit(&answer, 413), "{path}: {}", describe(&answer));
        if let Ok((_, text)) = &answer {
            assert!(
                serde_json::from_str::<Value>(text).map_or(true, |v| v.get("active").is_none()),
                "{path}: {text}"
            );
        }
    }
    // Just under the limit, it is an ordinary request: authenticated, the token inactive.
    let big = "a".repeat(60 * 1024);
    let (status, text) = s.authed_raw(INTROSPECT_PATH, INTROSPECTOR, &[("token", &big)]);
    assert_eq!(json_body(status, &text), json!({"active": false}));
}
