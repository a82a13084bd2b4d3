//! Asserted attribution and secrets: what an enforcement point says about a call is recorded as
//! its word, naming it, and never as what Mandate verified; argument secrets never reach the log,
//! however deep they are nested.

use serde_json::{json, Value};

use super::amplification::evaluation;
use crate::common::Server;

fn events_for(s: &Server, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["audit", "query"];
    a.extend_from_slice(args);
    let v = s.ok_json(&a);
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

#[test]
fn a_decision_points_claims_are_recorded_as_asserted_and_never_as_verified_parties() {
    let s = Server::demo();
    let (who, m) = s.pep();
    // The enforcement point claims the call was made by admin's delegation with admin's jti.
    let subject = json!({"type": "agent", "id": "agent:coder", "properties": {
        "chain": ["user:admin", "agent:coder"], "mandate": {"jti": "admins-jti"}}});
    let (code, _, body) = s.post_json_dpop(
        "/access/v1/evaluation",
        &who,
        &m,
        &evaluation(subject, "list_repos", json!({})),
    );
    assert_eq!(code, 200, "{body}");
    // Integrated and indexed, or not yet: the answers are the same.
    for _ in 0..2 {
        let verified = events_for(&s, &["--party", "user:admin", "--kind", "policy.decision"]);
        assert!(
            verified.is_empty(),
            "asserted parties listed as verified: {verified:?}"
        );
        let asserted = events_for(
            &s,
            &[
                "--party",
                "user:admin",
                "--asserted",
                "--kind",
                "policy.decision",
            ],
        );
        assert_eq!(asserted.len(), 1, "{asserted:?}");
        let ev = &asserted[0];
        assert_eq!(ev["principal"], "agent:pep", "{ev}");
        assert_eq!(ev["chain"], json!(["agent:pep"]), "{ev}");
        assert_ne!(ev["jti"], "admins-jti", "{ev}");
        assert_eq!(ev["asserted"]["by"], "agent:pep", "{ev}");
        assert_eq!(
            ev["asserted"]["chain"],
            json!(["user:admin", "agent:coder"]),
            "{ev}"
        );
        assert_eq!(ev["asserted"]["jti"], "admins-jti", "{ev}");
        // `audit show` says what was asserted, and by whom.
        let id = ev["id"].as_str().unwrap();
        let shown = s.ok(&["audit", "show", id]);
        assert!(
            shown.contains("asserted   by agent:pep (not verified)"),
            "{shown}"
        );
        assert!(shown.contains("user:admin -> agent:coder"), "{shown}");
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
}

#[test]
fn argument_secrets_are_never_stored_in_the_clear_at_any_depth() {
    let s = Server::demo();
    let (who, m) = s.pep();
    let args = json!({
        "repo": "acme/app",
        "nested": {"password": "hunter2-nested", "deeper": [{"api_key": "hunter2-in-array"}]},
        "token": "hunter2-top",
    });
    let subject =
        json!({"type": "agent", "id": "agent:coder", "properties": {"scopes": ["github:*"]}});
    for path in ["/access/v1/evaluation", "/access/v1/evaluations"] {
        let (code, _, body) = s.post_json_dpop(
            path,
            &who,
            &m,
            &evaluation(subject.clone(), "create_issue", args.clone()),
        );
        assert_eq!(code, 200, "{body}");
    }
    let stored = s.event_bodies().join("\n");
    for secret in ["hunter2-nested", "hunter2-in-array", "hunter2-top"] {
        assert!(!stored.contains(secret), "{secret} stored in the clear");
    }
    assert!(stored.contains("acme/app"), "ordinary arguments are kept");
}

#[test]
fn a_refused_exchange_does_not_make_the_presented_mandates_parties_verified() {
    let s = Server::demo();
    s.ok(&["user", "create", "bob"]);
    let alice = s.own_mandate("user:alice", "github:pulls.write", crate::common::GITHUB);
    // coder presents alice's mandate, which it does not hold, "delegating" it to bob.
    for to in ["user:bob", "agent:nobody"] {
        let (code, body) = s.push("agent:coder", &alice, to, &[]);
        assert_eq!(code, 400, "{body}");
    }
    for party in ["user:bob", "agent:nobody"] {
        let listed = events_for(&s, &["--party", party]);
        assert!(
            listed.is_empty(),
            "{party} is listed as a party: {listed:?}"
        );
    }
    let refused = events_for(
        &s,
        &["--kind", "token.refused", "--principal", "agent:coder"],
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    for ev in &refused {
        assert_eq!(ev["chain"], json!(["agent:coder"]), "{ev}");
        assert_eq!(
            ev["details"]["subject_token"]["chain"],
            json!(["user:alice"]),
            "{ev}"
        );
    }
    // alice's own mandate issuance lists her; the refused attempts do not.
    let alices = events_for(&s, &["--party", "user:alice", "--kind", "token.refused"]);
    assert!(alices.is_empty(), "{alices:?}");
}

#[test]
fn secrets_outside_the_usual_key_names_and_outside_the_arguments_are_not_stored() {
    let s = Server::demo();
    let (who, m) = s.pep();
    let request = json!({
        "subject": {"type": "agent", "id": "agent:coder", "properties": {"scopes": ["github:*"]}},
        "resource": {"type": "mcp_tool", "id": "call_api", "properties": {
            "server": "github",
            "annotations": {"readOnlyHint": true, "api_token": "hunter2-annotation"}}},
        "action": {"name": "tools/call", "properties": {"arguments": {
            "authorization": "Bearer hunter2-bearer",
            "headers": {"Authorization": "Basic hunter2-basic", "Cookie": "sid=hunter2-cookie"},
            "privateKey": "hunter2-pk",
            "access_key": "hunter2-ak",
            "passwd": "hunter2-pw",
        }}},
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", &who, &m, &request);
    assert_eq!(code, 200, "{body}");
    let stored = s.event_bodies().join("\n");
    for secret in [
        "hunter2-annotation",
        "hunter2-bearer",
        "hunter2-basic",
        "hunter2-cookie",
        "hunter2-pk",
        "hunter2-ak",
        "hunter2-pw",
    ] {
        assert!(!stored.contains(secret), "{secret} stored in the clear");
    }
    // A server that is not a name is refused.
    let mut bad = request.clone();
    bad["resource"]["properties"]["server"] = json!({"password": "x"});
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", &who, &m, &bad);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn credentials_under_harmless_keys_or_look_alike_keys_are_not_stored() {
    // Found by the second outside review: a whole mandate under `data`, `Bearer ...` under a
    // custom header, a DSN with a password, a URL with `access_token`, short secret names, and
    // look-alike spellings of `password` were stored in the clear.
    let s = Server::demo();
    let (who, m) = s.pep();
    let live_mandate = m.clone();
    let request = json!({
        "subject": {"type": "agent", "id": "agent:coder", "properties": {"scopes": ["github:*"]}},
        "resource": {"type": "http_route", "id": "/v1/items?api_key=hunter2-route",
            "properties": {"server": "github"}},
        "action": {"name": "GET", "properties": {"arguments": {
            "data": live_mandate,
            "X-Custom": "Bearer hunter2-custom",
            "dsn": "postgres://u:hunter2-dsn@db.example/app",
            "callback": "https://api.example/cb?access_token=hunter2-url",
            "auth": "hunter2-auth",
            "pin": "hunter2-pin",
            "p\u{0430}ssword": "hunter2-cyrillic",
            "\u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff57}\u{ff4f}\u{ff52}\u{ff44}": "hunter2-fullwidth",
            "pass\u{200b}word": "hunter2-zero-width",
            "author": "alice-the-author",
        }}},
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", &who, &m, &request);
    assert_eq!(code, 200, "{body}");
    let stored = s.event_bodies().join("\n");
    let sig = live_mandate.rsplit('.').next().unwrap();
    assert!(!stored.contains(sig), "the mandate stored in the clear");
    for secret in [
        "hunter2-route",
        "hunter2-custom",
        "hunter2-dsn",
        "hunter2-url",
        "hunter2-auth",
        "hunter2-pin",
        "hunter2-cyrillic",
        "hunter2-fullwidth",
        "hunter2-zero-width",
    ] {
        assert!(!stored.contains(secret), "{secret} stored in the clear");
    }
    assert!(
        stored.contains("alice-the-author"),
        "a key that merely contains `auth` is not a secret"
    );
}

#[test]
fn credentials_written_into_free_text_reasons_are_not_stored() {
    // Found when the redaction fixes were attacked: a delegation's `--reason` and a revocation's
    // reason were stored verbatim, whatever credential they quoted.
    let s = Server::demo();
    let leaked = "password=Q090Zpw Bearer Q091Zabc https://x/?access_token=Q093Zabc \
                  postgres://u:Q094Zpw@h/db ghp_Q095Z6789abcdefghijABCDEFGHIJ012345 \
                  AKIAQ096Z456789ABCDE";
    let tok = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        crate::common::GITHUB,
        "--scope",
        "github:pulls.read",
        "--reason",
        &format!("debugging, {leaked}"),
    ]);
    let jti = crate::common::jwt_payload(&tok)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&[
        "revoke",
        "token",
        &jti,
        "--reason",
        &format!("leaked {leaked}"),
    ]);
    let stored = s.event_bodies().join("\n");
    for secret in ["Q090Z", "Q091Z", "Q093Z", "Q094Z", "Q095Z", "Q096Z"] {
        assert!(!stored.contains(secret), "{secret} stored in the clear");
    }
    assert!(
        stored.contains("debugging"),
        "the rest of the reason is kept"
    );
}
