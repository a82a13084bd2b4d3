//! What the token endpoint refuses, each with its exact RFC 6749 / RFC 9449 error code and a
//! description a person can act on.

mod common;

use std::time::Duration;

use common::{
    assert_oauth_error, assert_token, fresh_key, jwt_payload, now, random_id, Proof, Server, CI,
    GITHUB,
};
use mandate_core::assertion::ASSERTION_TYPE;
use mandate_core::{dpop, jws};
use serde_json::json;

fn cc<'a>(scope: &'a str, aud: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("audience", aud),
    ]
}

#[test]
fn delegating_beyond_the_delegates_ceiling_is_invalid_scope() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:*", GITHUB);
    // Covered by planner's github:*, but outside coder's github:pulls.* github:contents.*.
    let r = s.push(
        "agent:planner",
        &t,
        "agent:coder",
        &[("scope", "github:issues.write")],
    );
    assert_oauth_error(&r, "invalid_scope");
    // Within both, the same delegation works.
    let r = s.push(
        "agent:planner",
        &t,
        "agent:coder",
        &[("scope", "github:pulls.write")],
    );
    assert_token(&r);
}

#[test]
fn delegating_beyond_the_subject_token_is_invalid_scope() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    // coder's ceiling (github:pulls.*) allows it; the subject token does not hold it.
    let r = s.push(
        "agent:planner",
        &t,
        "agent:coder",
        &[("scope", "github:pulls.write")],
    );
    assert_oauth_error(&r, "invalid_scope");
    let r = s.push(
        "agent:planner",
        &t,
        "agent:coder",
        &[("scope", "github:pulls.read github:pulls.write")],
    );
    assert_oauth_error(&r, "invalid_scope");
}

#[test]
fn delegating_to_an_unknown_agent_is_invalid_request() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let r = s.push("agent:planner", &t, "agent:nobody", &[]);
    assert_oauth_error(&r, "invalid_request");
}

#[test]
fn exchanging_an_expired_subject_token_is_invalid_grant() {
    let s = Server::demo();
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", "github:pulls.read"),
        ("audience", GITHUB),
        ("ttl", "1"),
    ];
    let r = s.as_client("agent:planner", &params, Proof::Own);
    let t = assert_token(&r);
    assert_eq!(r.1["expires_in"], 1, "{}", r.1);
    std::thread::sleep(Duration::from_millis(2500));
    let r = s.push("agent:planner", &t, "agent:coder", &[]);
    assert_oauth_error(&r, "invalid_grant");
}

#[test]
fn a_disabled_agent_can_neither_authenticate_nor_receive_until_enabled() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let out = s.ok_json(&["agent", "disable", "coder"]);
    assert_eq!(out["disabled"], true, "{out}");

    let own = cc("github:pulls.read", GITHUB);
    assert_oauth_error(
        &s.as_client("agent:coder", &own, Proof::Own),
        "invalid_client",
    );
    assert_oauth_error(
        &s.push("agent:planner", &t, "agent:coder", &[]),
        "invalid_request",
    );

    let out = s.ok_json(&["agent", "enable", "coder"]);
    assert_eq!(out["disabled"], false, "{out}");
    assert_token(&s.as_client("agent:coder", &own, Proof::Own));
    assert_token(&s.push("agent:planner", &t, "agent:coder", &[]));
}

#[test]
fn a_replayed_client_assertion_is_invalid_client() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let a = s.assertion(&key, "agent:planner");
    let mut form = vec![
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    form.extend_from_slice(&cc("github:pulls.read", GITHUB));
    // Each request has its own fresh DPoP proof: only the assertion repeats.
    assert_token(&s.token_request(&form, Some(&s.proof(&key))));
    assert_oauth_error(
        &s.token_request(&form, Some(&s.proof(&key))),
        "invalid_client",
    );
}

#[test]
fn an_assertion_signed_by_an_unregistered_key_is_invalid_client() {
    let s = Server::demo();
    let n = now();
    let claims = json!({
        "iss": "agent:planner", "sub": "agent:planner", "aud": s.url,
        "iat": n, "exp": n + 60, "jti": random_id(),
    });
    let forged = jws::sign(&jws::header("JWT", None, None), &claims, &fresh_key());
    let mut form = vec![
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", forged.as_str()),
    ];
    form.extend_from_slice(&cc("github:pulls.read", GITHUB));
    let proof = s.proof(&s.key("agent:planner"));
    assert_oauth_error(&s.token_request(&form, Some(&proof)), "invalid_client");

    // The same claims signed by planner's own key pass: only the key was wrong.
    let claims = json!({
        "iss": "agent:planner", "sub": "agent:planner", "aud": s.url,
        "iat": n, "exp": n + 60, "jti": random_id(),
    });
    let good = jws::sign(
        &jws::header("JWT", None, None),
        &claims,
        &s.key("agent:planner"),
    );
    form[1].1 = good.as_str();
    let proof = s.proof(&s.key("agent:planner"));
    assert_token(&s.token_request(&form, Some(&proof)));
}

fn planner_with_proof(s: &Server, proof: String) -> (u16, serde_json::Value) {
    s.as_client(
        "agent:planner",
        &cc("github:pulls.read", GITHUB),
        Proof::Custom(proof),
    )
}

#[test]
fn a_dpop_proof_for_another_url_is_invalid_dpop_proof() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let other = format!("{}/oauth2/introspect", s.url);
    let p = dpop::make_proof(&key, "POST", &other, now(), &random_id(), None);
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
    let elsewhere = format!("http://127.0.0.2:{}/oauth2/token", s.port);
    let p = dpop::make_proof(&key, "POST", &elsewhere, now(), &random_id(), None);
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
}

#[test]
fn a_dpop_proof_for_another_method_is_invalid_dpop_proof() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let p = dpop::make_proof(&key, "GET", &s.token_url(), now(), &random_id(), None);
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
}

#[test]
fn a_stale_dpop_proof_is_invalid_dpop_proof() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let p = dpop::make_proof(
        &key,
        "POST",
        &s.token_url(),
        now() - 600,
        &random_id(),
        None,
    );
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
    let p = dpop::make_proof(
        &key,
        "POST",
        &s.token_url(),
        now() + 600,
        &random_id(),
        None,
    );
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
}

#[test]
fn a_dpop_proof_by_an_unregistered_key_is_invalid_dpop_proof() {
    let s = Server::demo();
    let p = dpop::make_proof(
        &fresh_key(),
        "POST",
        &s.token_url(),
        now(),
        &random_id(),
        None,
    );
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
    // coder's key is registered, but not for planner.
    let p = s.proof(&s.key("agent:coder"));
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
}

#[test]
fn a_replayed_dpop_proof_is_invalid_dpop_proof() {
    let s = Server::demo();
    let p = s.proof(&s.key("agent:planner"));
    assert_token(&planner_with_proof(&s, p.clone()));
    assert_oauth_error(&planner_with_proof(&s, p), "invalid_dpop_proof");
}

#[test]
fn no_dpop_proof_is_invalid_request_unless_bearer_is_allowed() {
    let s = Server::demo();
    let r = s.as_client(
        "agent:planner",
        &cc("github:pulls.read", GITHUB),
        Proof::None,
    );
    assert_oauth_error(&r, "invalid_request");

    let created = s.ok_json(&[
        "agent",
        "create",
        "bot",
        "--scopes",
        "ci:read",
        "--audiences",
        CI,
        "--allow-bearer",
    ]);
    assert_eq!(created["allow_bearer"], true, "{created}");
    let r = s.as_client("agent:bot", &cc("ci:read", CI), Proof::None);
    let t = assert_token(&r);
    assert_eq!(r.1["token_type"], "Bearer", "{}", r.1);
    let c = jwt_payload(&t);
    assert!(c.get("cnf").is_none(), "a bearer mandate has no cnf: {c}");
    assert_eq!(c["sub"], "agent:bot");

    // With a proof, the same agent gets a DPoP-bound mandate.
    let r = s.as_client("agent:bot", &cc("ci:read", CI), Proof::Own);
    let t = assert_token(&r);
    assert_eq!(r.1["token_type"], "DPoP");
    assert_eq!(
        jwt_payload(&t)["cnf"]["jkt"],
        s.key("agent:bot").public().thumbprint()
    );
}

#[test]
fn an_audience_outside_the_ceiling_is_invalid_target() {
    let s = Server::demo();
    let r = s.as_client(
        "agent:coder",
        &cc("github:pulls.read", "https://evil.example"),
        Proof::Own,
    );
    assert_oauth_error(&r, "invalid_target");
    // ci.example.com is in planner's ceiling but not coder's.
    let r = s.as_client("agent:coder", &cc("github:pulls.read", CI), Proof::Own);
    assert_oauth_error(&r, "invalid_target");
    // Delegating to an audience the subject token is not for.
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let r = s.push("agent:planner", &t, "agent:coder", &[("audience", CI)]);
    assert_oauth_error(&r, "invalid_target");
}

#[test]
fn a_scope_outside_the_own_ceiling_is_invalid_scope() {
    let s = Server::demo();
    let r = s.as_client(
        "agent:coder",
        &cc("github:issues.write", GITHUB),
        Proof::Own,
    );
    assert_oauth_error(&r, "invalid_scope");
    let r = s.as_client("agent:coder", &cc("github:*", GITHUB), Proof::Own);
    assert_oauth_error(&r, "invalid_scope");
}

#[test]
fn only_the_holder_can_push_a_mandate() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let r = s.push("agent:coder", &t, "agent:coder", &[]);
    assert_oauth_error(&r, "invalid_grant");
    let r = s.push("user:alice", &t, "agent:coder", &[]);
    assert_oauth_error(&r, "invalid_grant");
}

#[test]
fn concurrent_replays_of_one_assertion_get_exactly_one_mandate() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let a = s.assertion(&key, "agent:planner");
    let reqs = (0..16)
        .map(|_| {
            let form = [
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", a.as_str()),
                ("grant_type", "client_credentials"),
                ("scope", "github:pulls.read"),
                ("audience", GITHUB),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            (form, Some(s.proof(&key)))
        })
        .collect();
    let mut statuses = s.concurrent_token_requests(reqs);
    statuses.sort_unstable();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|&c| c == 401), "{statuses:?}");
}
