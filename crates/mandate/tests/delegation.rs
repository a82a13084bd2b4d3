//! Delegation chains end to end: push delegation through the CLI and RFC 8693 pull exchange.

mod common;

use common::{
    assert_oauth_error, assert_token, jwt_header, jwt_payload, Proof, Server, ACCESS_TOKEN_TYPE,
    GITHUB, TOKEN_EXCHANGE,
};
use serde_json::json;

#[test]
fn cli_chain_alice_planner_coder_carries_act_parents_and_binding() {
    let s = Server::demo();

    // alice -> planner (alice first gets her own mandate), then planner -> coder.
    let planner_tok = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write github:contents.read",
        "--reason",
        "fix the flaky test",
    ]);
    let coder_tok = s.ok(&[
        "delegate",
        "--as",
        "planner",
        "--to",
        "coder",
        "--subject-token",
        &planner_tok,
        "--scope",
        "github:pulls.write",
    ]);
    assert_eq!(jwt_header(&coder_tok)["typ"], "at+jwt");
    assert_eq!(jwt_header(&coder_tok)["alg"], "EdDSA");

    let p = jwt_payload(&planner_tok);
    assert_eq!(p["sub"], "user:alice");
    assert_eq!(p["client_id"], "agent:planner");
    assert_eq!(p["mandate"]["depth"], 1);
    let planner_parents = p["mandate"]["parents"].as_array().expect("parents").clone();
    assert_eq!(planner_parents.len(), 1, "planner's parents: {p}");
    let alice_jti = planner_parents[0].as_str().expect("jti").to_string();
    let planner_jti = p["jti"].as_str().expect("jti").to_string();
    assert_ne!(alice_jti, planner_jti);

    let inspected = s.ok_json(&["token", "inspect", &coder_tok]);
    assert_eq!(inspected["valid"], true, "{inspected}");
    assert_eq!(
        inspected["chain"],
        json!(["user:alice", "agent:planner", "agent:coder"])
    );
    let c = &inspected["claims"];
    assert_eq!(c["sub"], "user:alice");
    assert_eq!(c["client_id"], "agent:coder");
    assert_eq!(c["scope"], "github:pulls.write");
    assert_eq!(c["aud"], GITHUB);
    assert_eq!(c["mandate"]["depth"], 2);
    assert_eq!(c["mandate"]["parents"], json!([alice_jti, planner_jti]));
    assert_eq!(
        c["act"],
        json!({"sub": "agent:coder", "act": {"sub": "agent:planner"}})
    );
    let coder = s.ok_json(&["agent", "show", "coder"]);
    let coder_kid = coder["kid"].as_str().expect("coder has a kid");
    assert_eq!(coder_kid, s.key("agent:coder").public().thumbprint());
    assert_eq!(c["cnf"]["jkt"], coder_kid);
    assert_eq!(
        c,
        &jwt_payload(&coder_tok),
        "inspect must show the token's claims"
    );
    let coder_exp = c["exp"].as_i64().expect("exp");
    let planner_exp = p["exp"].as_i64().expect("exp");
    assert!(
        coder_exp <= planner_exp,
        "child outlives parent: {coder_exp} > {planner_exp}"
    );

    // The human view lists the chain root first.
    let human = s.ok(&["token", "inspect", &coder_tok]);
    let tree = human
        .split("Delegation chain:")
        .nth(1)
        .unwrap_or_else(|| panic!("no chain section in:\n{human}"));
    let pos = |who: &str| {
        tree.find(who)
            .unwrap_or_else(|| panic!("{who} missing from:\n{human}"))
    };
    let (a, b, c) = (pos("user:alice"), pos("agent:planner"), pos("agent:coder"));
    assert!(a < b && b < c, "chain out of order:\n{human}");
    assert!(
        tree.contains(&alice_jti) && tree.contains(&planner_jti),
        "{human}"
    );
}

#[test]
fn cli_delegate_refuses_a_scope_the_subject_token_lacks() {
    let s = Server::demo();
    let planner_tok = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.read",
    ]);
    let args = [
        "delegate",
        "--as",
        "planner",
        "--to",
        "coder",
        "--subject-token",
        planner_tok.as_str(),
        "--scope",
        "github:pulls.write",
    ];
    let out = s.cli(&args);
    let line = common::assert_one_line_error(&args, &out);
    assert!(line.contains("invalid_scope"), "{line}");
}

/// Alice's own mandate naming `may_act`, and the exchange form for an actor token.
fn pull_form<'a>(subject: &'a str, actor: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("actor_token", actor),
        ("actor_token_type", ACCESS_TOKEN_TYPE),
    ]
}

#[test]
fn pull_exchange_is_allowed_for_may_act_and_refused_for_others() {
    let s = Server::demo();
    let alice_tok = s.ok(&[
        "token",
        "issue",
        "--as",
        "user:alice",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write",
        "--may-act",
        "planner",
    ]);
    let a = jwt_payload(&alice_tok);
    assert_eq!(a["may_act"], json!({"sub": "agent:planner"}), "{a}");
    assert_eq!(a["sub"], "user:alice");

    // planner pulls with its own mandate as actor_token.
    let actor = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let resp = s.as_client("agent:planner", &pull_form(&alice_tok, &actor), Proof::Own);
    let tok = assert_token(&resp);
    assert_eq!(resp.1["token_type"], "DPoP");
    assert_eq!(resp.1["issued_token_type"], ACCESS_TOKEN_TYPE);
    let c = jwt_payload(&tok);
    assert_eq!(c["client_id"], "agent:planner");
    assert_eq!(c["sub"], "user:alice");
    assert_eq!(c["scope"], "github:pulls.write");
    assert_eq!(c["act"], json!({"sub": "agent:planner"}));
    assert_eq!(c["mandate"]["depth"], 1);
    assert_eq!(c["mandate"]["parents"], json!([a["jti"]]));
    assert_eq!(
        c["cnf"]["jkt"],
        s.key("agent:planner").public().thumbprint()
    );
    let inspected = s.ok_json(&["token", "inspect", &tok]);
    assert_eq!(inspected["chain"], json!(["user:alice", "agent:planner"]));

    // coder is not named by may_act.
    let actor = s.own_mandate("agent:coder", "github:pulls.read", GITHUB);
    let resp = s.as_client("agent:coder", &pull_form(&alice_tok, &actor), Proof::Own);
    assert_oauth_error(&resp, "unauthorized_client");
}

#[test]
fn pull_exchange_refuses_an_actor_token_of_someone_else() {
    let s = Server::demo();
    let alice_tok = s.ok(&[
        "token",
        "issue",
        "--as",
        "user:alice",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write",
        "--may-act",
        "planner",
    ]);
    // coder presents planner's mandate as its actor token.
    let planners = s.own_mandate("agent:planner", "github:pulls.read", GITHUB);
    let resp = s.as_client("agent:coder", &pull_form(&alice_tok, &planners), Proof::Own);
    assert_oauth_error(&resp, "invalid_grant");
}
