//! Targeted revocation end to end, against a running `mandate serve`: one mandate and everything
//! delegated from it, one agent, one agent key, a retired issuer key; RFC 7009 revocation by a
//! principal of the chain; the long-polled revocation feed; and RFC 7662 introspection of what is
//! revoked, expired, forged or foreign.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_oauth_error, assert_one_line_error, assert_token, feed_get, fresh_key, json_body,
    jwt_header, jwt_payload, now, random_id, Proof, Server, GITHUB, INTROSPECTOR, INTROSPECT_PATH,
    REVOKE_PATH,
};
use mandate_core::assertion::ASSERTION_TYPE;
use mandate_core::{dpop, jws};
use serde_json::{json, Value};

/// The demo chain user:alice -> agent:planner -> agent:coder, built with the CLI.
struct Chain {
    /// alice's own mandate (client_credentials).
    alice: String,
    /// alice -> planner.
    planner: String,
    /// alice -> planner -> coder.
    coder: String,
}

impl Chain {
    fn build(s: &Server) -> Chain {
        // A fourth agent, for coder to delegate onward to.
        s.ok(&[
            "agent",
            "create",
            "reviewer",
            "--scopes",
            "github:pulls.*",
            "--audiences",
            GITHUB,
        ]);
        let alice = s.ok(&[
            "token",
            "issue",
            "--as",
            "user:alice",
            "--aud",
            GITHUB,
            "--scope",
            "github:pulls.write github:contents.read",
        ]);
        let planner = s.ok(&[
            "delegate",
            "--as",
            "user:alice",
            "--to",
            "planner",
            "--subject-token",
            &alice,
        ]);
        let coder = s.ok(&[
            "delegate",
            "--as",
            "planner",
            "--to",
            "coder",
            "--subject-token",
            &planner,
            "--scope",
            "github:pulls.write",
        ]);
        let c = jwt_payload(&coder);
        assert_eq!(
            c["mandate"]["parents"],
            json!([jti(&alice), jti(&planner)]),
            "{c}"
        );
        for (t, what) in [
            (&alice, "alice's"),
            (&planner, "planner's"),
            (&coder, "coder's"),
        ] {
            s.assert_active(t, &format!("{what} mandate before any revocation"));
        }
        Chain {
            alice,
            planner,
            coder,
        }
    }
}

fn jti(token: &str) -> String {
    jwt_payload(token)["jti"].as_str().expect("jti").to_string()
}

/// Runs `mandate revoke ARGS --json` and checks the stored row it prints.
fn revoke_json(s: &Server, args: &[&str], kind: &str, value: &str) -> Value {
    let mut a = vec!["revoke"];
    a.extend_from_slice(args);
    let row = s.ok_json(&a);
    let fields: Vec<&str> = row
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {row}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["kind", "reason", "revoked_at", "revoked_by", "seq", "value"],
        "{row}"
    );
    assert_eq!(row["kind"], kind, "{row}");
    assert_eq!(row["value"], value, "{row}");
    assert_eq!(row["revoked_by"], INTROSPECTOR, "{row}");
    assert!(row["seq"].as_i64().is_some_and(|n| n > 0), "{row}");
    let at = row["revoked_at"].as_i64().expect("revoked_at");
    assert!((at - now()).abs() <= 5, "{row}");
    row
}

fn cc<'a>(scope: &'a str, aud: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("audience", aud),
    ]
}

#[test]
fn a_revoked_delegation_takes_its_descendants_but_not_its_parent() {
    let s = Server::demo();
    let ch = Chain::build(&s);
    let planner_jti = jti(&ch.planner);

    let row = revoke_json(
        &s,
        &["token", &planner_jti, "--reason", "planner went rogue"],
        "jti",
        &planner_jti,
    );
    assert_eq!(row["reason"], "planner went rogue");

    s.assert_inactive(&ch.planner, "the revoked mandate");
    s.assert_inactive(&ch.coder, "a mandate delegated from the revoked one");
    s.assert_active(&ch.alice, "alice's own mandate (the revoked one's parent)");

    // Neither can be exchanged any more.
    let r = s.push("agent:planner", &ch.planner, "agent:coder", &[]);
    assert_oauth_error(&r, "invalid_grant");
    let r = s.push("agent:coder", &ch.coder, "agent:reviewer", &[]);
    assert_oauth_error(&r, "invalid_grant");

    // alice still delegates from her mandate, to the same planner.
    let again = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--subject-token",
        &ch.alice,
    ]);
    s.assert_active(&again, "a fresh delegation from alice");
    let onward = assert_token(&s.push("agent:planner", &again, "agent:coder", &[]));
    s.assert_active(&onward, "a fresh planner -> coder delegation");

    // The whole token is accepted in place of its jti, and revoking twice is harmless.
    let row = s.ok_json(&["revoke", "token", &ch.planner]);
    assert_eq!(row["value"], planner_jti.as_str(), "{row}");
    s.assert_active(&again, "the fresh delegation after re-revoking the old one");
}

#[test]
fn a_revoked_agent_is_cut_out_of_every_chain_it_is_in_and_nothing_else() {
    let s = Server::demo();
    let ch = Chain::build(&s);
    let planner_own = s.own_mandate("agent:planner", "ci:read", common::CI);
    // A delegation that does not pass through planner.
    let alice_to_coder = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "coder",
        "--subject-token",
        &ch.alice,
        "--scope",
        "github:pulls.write",
    ]);
    let coder_own = s.own_mandate("agent:coder", "github:pulls.read", GITHUB);
    s.assert_active(&alice_to_coder, "alice -> coder");

    revoke_json(
        &s,
        &["agent", "planner", "--reason", "compromised"],
        "principal",
        "agent:planner",
    );

    s.assert_inactive(&ch.planner, "alice -> planner");
    s.assert_inactive(&ch.coder, "alice -> planner -> coder");
    s.assert_inactive(&planner_own, "planner's own mandate");
    s.assert_active(&ch.alice, "alice's own mandate");
    s.assert_active(&alice_to_coder, "alice -> coder");
    s.assert_active(&coder_own, "coder's own mandate");

    // planner is disabled: it cannot authenticate, so it gets nothing.
    let r = s.as_client("agent:planner", &cc("ci:read", common::CI), Proof::Own);
    assert_oauth_error(&r, "invalid_client");
    let shown = s.ok_json(&["agent", "show", "planner"]);
    assert_eq!(shown["disabled"], true, "{shown}");
    // coder cannot use a mandate with planner in its chain.
    let r = s.push("agent:coder", &ch.coder, "agent:reviewer", &[]);
    assert_oauth_error(&r, "invalid_grant");
    // Nor can anyone delegate to planner.
    let r = s.push("user:alice", &ch.alice, "agent:planner", &[]);
    assert_oauth_error(&r, "invalid_request");

    // Re-enabled, planner gets new mandates; what was revoked stays revoked.
    s.ok(&["agent", "enable", "planner"]);
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = s.own_mandate("agent:planner", "ci:read", common::CI);
    s.assert_active(&fresh, "planner's mandate issued after it was re-enabled");
    s.assert_inactive(&planner_own, "planner's old mandate after re-enabling it");
    s.assert_inactive(
        &ch.coder,
        "the old chain through planner after re-enabling it",
    );
}

#[test]
fn a_revoked_agent_key_kills_mandates_bound_to_it_and_its_authentication() {
    let s = Server::demo();
    let ch = Chain::build(&s);
    let coder_own = s.own_mandate("agent:coder", "github:pulls.read", GITHUB);
    let shown = s.ok_json(&["agent", "show", "coder"]);
    let kid = shown["kid"].as_str().expect("kid").to_string();
    assert_eq!(kid, s.key("agent:coder").public().thumbprint());
    assert_eq!(jwt_payload(&ch.coder)["cnf"]["jkt"], kid.as_str());

    revoke_json(&s, &["key", &kid], "key", &kid);

    s.assert_inactive(&ch.coder, "planner -> coder, bound to coder's revoked key");
    s.assert_inactive(&coder_own, "coder's own mandate, bound to its revoked key");
    s.assert_active(&ch.planner, "alice -> planner");
    s.assert_active(&ch.alice, "alice's own mandate");

    let r = s.as_client("agent:coder", &cc("github:pulls.read", GITHUB), Proof::Own);
    assert_oauth_error(&r, "invalid_client");
    // The revoked key cannot sign for introspection either.
    let (status, body) = s.introspect_as("agent:coder", &ch.alice);
    assert_oauth_error(&(status, body), "invalid_client");
    // Nothing can be delegated to coder any more: it has no usable key to bind a mandate to.
    let r = s.push("agent:planner", &ch.planner, "agent:coder", &[]);
    assert_oauth_error(&r, "invalid_request");
}

#[test]
fn a_retired_issuer_key_can_be_revoked_but_the_active_one_cannot() {
    let s = Server::demo();
    let before = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let old_kid = jwt_header(&before)["kid"]
        .as_str()
        .expect("kid")
        .to_string();

    let rotated = s.ok_json(&["keys", "rotate"]);
    let new_kid = rotated["kid"].as_str().expect("kid").to_string();
    assert_eq!(rotated["retired_kid"], old_kid.as_str(), "{rotated}");
    let after = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    assert_eq!(jwt_header(&after)["kid"], new_kid.as_str());
    s.assert_active(&before, "a mandate signed before rotation");

    // The active key: refused, with the way out.
    let args = ["revoke", "key", &new_kid];
    let line = assert_one_line_error(&args, &s.cli(&args));
    assert!(line.contains("rotate"), "{line}");
    s.assert_active(&after, "a mandate signed by the active key");

    revoke_json(
        &s,
        &["key", &old_kid, "--reason", "leaked"],
        "key",
        &old_kid,
    );
    s.assert_inactive(&before, "a mandate signed by the revoked issuer key");
    s.assert_active(&after, "a mandate signed by the new issuer key");
    assert_oauth_error(
        &s.push("agent:planner", &before, "agent:coder", &[]),
        "invalid_grant",
    );
    assert_token(&s.push("agent:planner", &after, "agent:coder", &[]));
}

#[test]
fn revoking_what_does_not_exist_fails_with_one_line() {
    let s = Server::demo();
    for args in [
        vec!["revoke", "agent", "nobody"],
        vec!["revoke", "user", "nobody"],
        vec![
            "revoke",
            "key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
        vec!["revoke", "token", "no-such-jti"],
        // A user is not an agent.
        vec!["revoke", "agent", "user:alice"],
    ] {
        assert_one_line_error(&args, &s.cli(&args));
    }
    let (_, feed, _) = s.feed(0, 0);
    assert_eq!(
        feed["entries"],
        json!([]),
        "failed revocations were recorded: {feed}"
    );
    // The admin cannot cut itself off.
    let args = ["revoke", "user", "admin"];
    assert_one_line_error(&args, &s.cli(&args));
}

#[test]
fn rfc7009_a_principal_of_the_chain_revokes_and_an_outsider_is_refused() {
    let s = Server::demo();
    let ch = Chain::build(&s);

    // coder is not in alice -> planner: refused, and the mandate lives on.
    let r = s.revoke_as("agent:coder", &ch.planner);
    assert_oauth_error(&r, "unauthorized_client");
    s.assert_active(
        &ch.planner,
        "alice -> planner after an outsider tried to revoke it",
    );
    // Nor is the admin (introspection is open to every principal, revocation is not).
    assert_oauth_error(
        &s.revoke_as(INTROSPECTOR, &ch.planner),
        "unauthorized_client",
    );

    // The holder revokes its own mandate: everything below goes with it.
    let (status, body) = s.revoke_as("agent:planner", &ch.planner);
    assert_eq!(status, 200, "{body}");
    s.assert_inactive(&ch.planner, "alice -> planner revoked by its holder");
    s.assert_inactive(&ch.coder, "alice -> planner -> coder");
    s.assert_active(&ch.alice, "alice's own mandate");

    // The subject (root of the chain) may revoke a descendant held by someone else.
    let p2 = assert_token(&s.push("user:alice", &ch.alice, "agent:planner", &[]));
    let c2 = assert_token(&s.push("agent:planner", &p2, "agent:coder", &[]));
    let (status, body) = s.revoke_as("user:alice", &c2);
    assert_eq!(status, 200, "{body}");
    s.assert_inactive(&c2, "a mandate revoked by its subject");
    s.assert_active(&p2, "its parent");

    // An actor in the middle of the chain (not the holder) may too.
    let c3 = assert_token(&s.push("agent:planner", &p2, "agent:coder", &[]));
    let (status, body) = s.revoke_as("agent:planner", &c3);
    assert_eq!(status, 200, "{body}");
    s.assert_inactive(&c3, "a mandate revoked by an earlier actor");

    // Invalid, unknown or already revoked tokens: 200, as RFC 7009 §2.2 says.
    for t in ["garbage", ch.planner.as_str(), c2.as_str()] {
        let (status, body) = s.revoke_as("agent:coder", t);
        assert_eq!(status, 200, "revoking {t:.20}: {body}");
    }
    // Unauthenticated: 401 invalid_client.
    let (status, text) = s.post_raw(REVOKE_PATH, &[("token", ch.alice.as_str())], None);
    let body = json_body(status, &text);
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&(status, body), "invalid_client");
    s.assert_active(
        &ch.alice,
        "alice's mandate after an unauthenticated revocation",
    );

    // The revocation by the endpoint is in the feed, like the admin's.
    let (_, feed, _) = s.feed(0, 0);
    let values: Vec<&str> = feed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["value"].as_str().expect("value"))
        .collect();
    for t in [&ch.planner, &c2, &c3] {
        assert!(values.contains(&jti(t).as_str()), "{feed}");
    }
}

#[test]
fn the_feed_long_poll_wakes_within_a_second_of_a_revocation() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let victim = jti(&t);

    // Nothing yet: an immediate answer, cursor = since.
    let (status, feed, took) = s.feed(0, 0);
    assert_eq!(status, 200, "{feed}");
    assert_eq!(feed, json!({"cursor": 0, "entries": []}));
    assert!(took < Duration::from_secs(1), "wait=0 took {took:?}");
    // Nothing newer within the wait: it waits, then answers the same.
    let (_, feed, took) = s.feed(0, 1);
    assert_eq!(feed, json!({"cursor": 0, "entries": []}));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "wait=1 took {took:?}"
    );

    let url = s.url.clone();
    let waiter = std::thread::spawn(move || {
        let (status, body, _) = feed_get(&url, 0, 10);
        (status, body, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let row = s.ok_json(&["revoke", "token", &victim]);
    let revoked = Instant::now();
    let (status, body, answered) = waiter.join().expect("feed thread");
    assert_eq!(status, 200, "{body}");
    assert!(
        answered < revoked + Duration::from_secs(1),
        "the feed answered {:?} after the revocation command finished (it took {:?})",
        answered.saturating_duration_since(revoked),
        revoked - started
    );
    let entries = body["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{body}");
    let e = &entries[0];
    assert_eq!(
        e,
        &json!({"seq": row["seq"], "kind": "jti", "value": victim, "revoked_at": row["revoked_at"]})
    );
    assert_eq!(body["cursor"], row["seq"], "{body}");

    // Polling from that cursor: nothing new.
    let cursor = body["cursor"].as_i64().expect("cursor");
    let (_, feed, _) = s.feed(cursor, 0);
    assert_eq!(feed, json!({"cursor": cursor, "entries": []}));
    // The wait is capped (30 s): a huge value is accepted, and a revocation still wakes it.
    let url = s.url.clone();
    let waiter = std::thread::spawn(move || feed_get(&url, cursor, 100_000));
    std::thread::sleep(Duration::from_millis(300));
    let row = s.ok_json(&["revoke", "agent", "coder"]);
    let (status, body, took) = waiter.join().expect("feed thread");
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(body["entries"][0]["kind"], "principal", "{body}");
    assert_eq!(body["entries"][0]["value"], "agent:coder", "{body}");
    assert_eq!(body["cursor"], row["seq"], "{body}");
}

#[test]
fn introspection_reports_claims_and_token_type_for_live_mandates() {
    let s = Server::demo();
    let ch = Chain::build(&s);
    let body = s.assert_active(&ch.coder, "alice -> planner -> coder");
    let mut want = jwt_payload(&ch.coder);
    want["active"] = json!(true);
    want["token_type"] = json!("DPoP");
    assert_eq!(body, want);
    assert_eq!(
        body["act"],
        json!({"sub": "agent:coder", "act": {"sub": "agent:planner"}})
    );
    assert_eq!(body["mandate"]["depth"], 2);

    // A bearer mandate is introspected as Bearer.
    s.ok(&[
        "agent",
        "create",
        "bot",
        "--scopes",
        "ci:read",
        "--audiences",
        common::CI,
        "--allow-bearer",
    ]);
    let r = s.as_client("agent:bot", &cc("ci:read", common::CI), Proof::None);
    let bearer = assert_token(&r);
    let body = s.assert_active(&bearer, "a bearer mandate");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body.get("cnf").is_none(), "{body}");

    // Any registered principal may ask, even one outside the chain, even a bearer-only agent.
    let (status, body) = s.introspect_as("agent:bot", &ch.coder);
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");

    // The answer must not be cached.
    let (status, headers, text) = s.post_form(
        INTROSPECT_PATH,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &s.assertion_for(INTROSPECTOR, &s.url)),
            ("token", &ch.coder),
        ],
    );
    assert_eq!(status, 200, "{text}");
    let cc_header = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        cc_header.contains("no-store"),
        "Cache-Control: {cc_header:?}"
    );
}

#[test]
fn introspection_client_auth_is_the_token_endpoints() {
    let s = Server::demo();
    let t = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let planner = s.key("agent:planner");
    let post = |aud: &str, dpop: Option<&str>| {
        let a = s.assertion_for("agent:planner", aud);
        let (status, text) = s.post_raw(
            INTROSPECT_PATH,
            &[
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
                ("token", &t),
            ],
            dpop,
        );
        (status, json_body(status, &text))
    };
    // aud = issuer, token endpoint, or this endpoint.
    for aud in [s.url.clone(), s.token_url(), s.introspect_url()] {
        let (status, body) = post(&aud, None);
        assert_eq!(
            (status, &body["active"]),
            (200, &json!(true)),
            "aud {aud}: {body}"
        );
    }
    // Not the revocation endpoint, not elsewhere.
    for aud in [s.revoke_url(), "https://evil.example".to_string()] {
        assert_oauth_error(&post(&aud, None), "invalid_client");
    }
    // A DPoP proof for this endpoint is accepted; one for the token endpoint is not.
    let p = dpop::make_proof(
        &planner,
        "POST",
        &s.introspect_url(),
        now(),
        &random_id(),
        None,
    );
    let (status, body) = post(&s.url, Some(&p));
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");
    let p = dpop::make_proof(&planner, "POST", &s.token_url(), now(), &random_id(), None);
    assert_oauth_error(&post(&s.url, Some(&p)), "invalid_dpop_proof");
    // A replayed assertion is refused.
    let a = s.assertion_for("agent:planner", &s.url);
    let form = [
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
        ("token", t.as_str()),
    ];
    let (status, _) = s.post_raw(INTROSPECT_PATH, &form, None);
    assert_eq!(status, 200);
    let (status, text) = s.post_raw(INTROSPECT_PATH, &form, None);
    assert_oauth_error(&(status, json_body(status, &text)), "invalid_client");
    // No token parameter.
    let (status, text) = s.authed_raw(INTROSPECT_PATH, "agent:planner", &[]);
    assert_oauth_error(&(status, json_body(status, &text)), "invalid_request");
}

#[test]
fn introspection_says_only_inactive_for_forged_expired_and_foreign_tokens() {
    let s = Server::demo();
    let good = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);

    // Forged: one character of the signature changed.
    let (head, sig) = good.rsplit_once('.').expect("compact JWS");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}.{}", sig.into_iter().collect::<String>());
    s.assert_inactive(&forged, "a mandate with a flipped signature character");

    // Signed by a key the issuer does not have, with its own kid.
    let k = fresh_key();
    let claims = jwt_payload(&good);
    let other = jws::sign(
        &jws::header("at+jwt", Some(k.public().thumbprint()), None),
        &claims,
        &k,
    );
    s.assert_inactive(&other, "a mandate signed by an unknown key");

    // A genuine mandate of another Mandate server.
    let foreign_server = Server::start(false);
    let foreign = foreign_server.ok(&[
        "token",
        "issue",
        "--as",
        "user:admin",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.read",
    ]);
    foreign_server.assert_active(&foreign, "the other server's mandate at its own issuer");
    s.assert_inactive(&foreign, "a mandate of another issuer");
    drop(foreign_server);

    s.assert_inactive("not a token", "garbage");
    // An empty token is a missing one (RFC 6749 §3.1): the request is malformed.
    let (status, text) = s.authed_raw(INTROSPECT_PATH, INTROSPECTOR, &[("token", "")]);
    assert_oauth_error(&(status, json_body(status, &text)), "invalid_request");

    // Unauthenticated introspection: 401 invalid_client, and nothing about the token.
    let (status, text) = s.post_raw(INTROSPECT_PATH, &[("token", good.as_str())], None);
    let body = json_body(status, &text);
    assert_eq!(status, 401, "{body}");
    assert!(body.get("active").is_none(), "{body}");
    assert_oauth_error(&(status, body), "invalid_client");
    // Signed by a key that is not the claimed principal's.
    let bad = common::assertion_by(&fresh_key(), "agent:planner", &s.url);
    let (status, text) = s.post_raw(
        INTROSPECT_PATH,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &bad),
            ("token", &good),
        ],
        None,
    );
    assert_oauth_error(&(status, json_body(status, &text)), "invalid_client");

    // Expired (last, as it sleeps). `iat` is whole seconds, so a `ttl` of n lives between n-1
    // and n seconds: 2 s leaves at least one second to see it active (a 1 s mandate issued
    // at x.95 is already dead at x+1.0). 3.5 s later its exp is at least 1.5 s past.
    let r = s.as_client(
        "agent:planner",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "github:pulls.read"),
            ("audience", GITHUB),
            ("ttl", "2"),
        ],
        Proof::Own,
    );
    let short = assert_token(&r);
    s.assert_active(&short, "a 2-second mandate right away");
    std::thread::sleep(Duration::from_millis(3500));
    // The token endpoint already refuses it ...
    assert_oauth_error(
        &s.push("agent:planner", &short, "agent:coder", &[]),
        "invalid_grant",
    );
    // ... and introspection must agree: its exp is in the past.
    let exp = jwt_payload(&short)["exp"].as_i64().expect("exp");
    assert!(exp < now(), "exp {exp} should be in the past");
    s.assert_inactive(&short, "an expired mandate (exp at least 1.5 s ago)");
}

#[test]
fn a_mandate_issued_after_re_enabling_is_never_dead_on_arrival() {
    // A principal revocation refuses mandates with iat <= revoked_at (whole seconds). If the
    // agent is re-enabled and asks again within that same second, the authority must either
    // refuse or issue a mandate that is alive: never hand out one that is already revoked.
    let s = Server::demo();
    let mut same_second = 0;
    for attempt in 0..5 {
        let row = s.ok_json(&["revoke", "agent", "planner"]);
        s.ok(&["agent", "enable", "planner"]);
        let r = s.as_client("agent:planner", &cc("ci:read", common::CI), Proof::Own);
        if r.0 != 200 {
            continue;
        }
        let t = r.1["access_token"].as_str().expect("access_token");
        let iat = jwt_payload(t)["iat"].as_i64().expect("iat");
        if iat == row["revoked_at"].as_i64().expect("revoked_at") {
            same_second += 1;
        }
        let (status, body) = s.introspect_as(INTROSPECTOR, t);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["active"], true,
            "attempt {attempt}: the token endpoint issued a mandate (iat {iat}) that is already \
             revoked by the revocation it followed ({row})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("issued in the revocation's own second {same_second} time(s) of 5");
}
