//! `may_act`: naming who may pull a mandate is a delegation the policy decides, and a pull is
//! decided and recorded on the real pair (who allowed it, who pulls), never as the holder's act.

use serde_json::{json, Value};

use crate::common::{
    assert_oauth_error, assert_token, jwt_payload, set_delegation_rules, Proof, Server,
    ACCESS_TOKEN_TYPE, GITHUB, TOKEN_EXCHANGE,
};

/// alice -> planner, then planner pushes to coder naming `may_act`.
fn planner_to_coder(s: &Server, may_act: &str) -> (u16, Value) {
    let alice = s.own_mandate("user:alice", "github:pulls.write", GITHUB);
    let planner = assert_token(&s.push("user:alice", &alice, "agent:planner", &[]));
    s.push(
        "agent:planner",
        &planner,
        "agent:coder",
        &[("may_act", may_act)],
    )
}

fn with_evil(s: &Server) {
    s.ok(&[
        "agent",
        "create",
        "evil",
        "--scopes",
        "github:*",
        "--audiences",
        GITHUB,
    ]);
}

fn pull(s: &Server, puller: &str, subject: &str) -> (u16, Value) {
    let actor = s.own_mandate(puller, "github:pulls.read", GITHUB);
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("actor_token", actor.as_str()),
        ("actor_token_type", ACCESS_TOKEN_TYPE),
    ];
    s.as_client(puller, &form, Proof::Own)
}

fn event_of(s: &Server, jti: &str) -> Value {
    let all = s.ok_json(&[
        "audit",
        "query",
        "--kind",
        "token.exchanged",
        "--limit",
        "50",
    ]);
    let list = all.as_array().cloned().unwrap_or_default();
    list.into_iter()
        .map(|e| e.get("event").cloned().unwrap_or(e))
        .find(|e| e["jti"] == jti)
        .unwrap_or_else(|| panic!("no issuance event for {jti}: {all}"))
}

#[test]
fn naming_may_act_is_refused_when_the_policy_forbids_that_delegation() {
    let s = Server::demo();
    with_evil(&s);
    set_delegation_rules(
        &s,
        json!({"forbidden": [{"from": "agent:planner", "to": "agent:evil"}]}),
    );
    let r = planner_to_coder(&s, "agent:evil");
    assert_oauth_error(&r, "unauthorized_client");
    let d = r.1["error_description"].as_str().unwrap();
    assert!(
        d.contains("agent:planner") && d.contains("agent:evil"),
        "{d}"
    );
    // Naming someone the policy allows is fine.
    s.ok(&[
        "agent",
        "create",
        "reviewer",
        "--scopes",
        "github:*",
        "--audiences",
        GITHUB,
    ]);
    assert_token(&planner_to_coder(&s, "agent:reviewer"));
}

#[test]
fn a_pull_is_decided_and_recorded_on_the_principal_who_allowed_it() {
    let s = Server::demo();
    with_evil(&s);
    let coder = assert_token(&planner_to_coder(&s, "agent:evil"));
    let coder_jti = jwt_payload(&coder)["jti"].as_str().unwrap().to_string();
    // The grant of may_act is recorded with the mandate it was named in.
    let granted = event_of(&s, &coder_jti);
    assert_eq!(
        granted["details"]["may_act"]["principal"], "agent:evil",
        "{granted}"
    );
    assert_eq!(
        granted["details"]["may_act"]["granted_by"], "agent:planner",
        "{granted}"
    );
    assert!(
        granted["details"]["may_act"]["decision_id"].is_string(),
        "{granted}"
    );

    // The pull is recorded as what it is: evil pulled coder's mandate, allowed by planner.
    let pulled = assert_token(&pull(&s, "agent:evil", &coder));
    let jti = jwt_payload(&pulled)["jti"].as_str().unwrap().to_string();
    let ev = event_of(&s, &jti);
    assert_eq!(ev["principal"], "agent:evil", "{ev}");
    assert_eq!(ev["details"]["mode"], "pull", "{ev}");
    assert_eq!(ev["details"]["pulled_from"], "agent:coder", "{ev}");
    assert_eq!(ev["details"]["may_act_granted_by"], "agent:planner", "{ev}");
    assert_eq!(
        ev["details"]["delegator"], "agent:planner",
        "coder made no request: {ev}"
    );

    // Once "planner may not delegate to evil" is in force, the pull is refused, although the
    // mandate naming evil was issued before.
    let coder2 = assert_token(&planner_to_coder(&s, "agent:evil"));
    set_delegation_rules(
        &s,
        json!({"forbidden": [{"from": "agent:planner", "to": "agent:evil"}]}),
    );
    let r = pull(&s, "agent:evil", &coder2);
    assert_oauth_error(&r, "unauthorized_client");
    let d = r.1["error_description"].as_str().unwrap();
    assert!(
        d.contains("agent:planner") && d.contains("agent:evil"),
        "{d}"
    );
}
