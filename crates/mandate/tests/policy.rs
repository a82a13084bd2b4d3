//! Policy at the running server: the delegation policy hook at the token endpoint (reasons in
//! `error_description`), hot reload that keeps the last good policy, the decision point for other
//! enforcement points (AuthZEN, OPA data API) and the `mandate policy` commands.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_token, mandate, policy_dir, set_delegation_rules, Server, GITHUB};
use serde_json::{json, Value};

fn status(s: &Server, who: &str, m: &str) -> Value {
    let (code, body) = s.get_dpop("/policy/v1/status", who, m);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn alice_to_planner(s: &Server, extra: &[(&str, &str)]) -> String {
    let alice = s.own_mandate("user:alice", "github:pulls.write", GITHUB);
    assert_token(&s.push("user:alice", &alice, "agent:planner", extra))
}

#[test]
fn a_delegation_the_policy_forbids_is_refused_with_the_policy_reason() {
    let s = Server::demo();
    set_delegation_rules(
        &s,
        json!({"forbidden": [{"from": "agent:planner", "to": "agent:coder"}]}),
    );
    let t = alice_to_planner(&s, &[]);
    let (code, body) = s.push("agent:planner", &t, "agent:coder", &[]);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with("refused by policy: "), "{d}");
    assert!(
        d.contains("agent:planner") && d.contains("agent:coder"),
        "{d}"
    );
    assert!(
        d.contains("decision ") && d.contains("policy sha256:"),
        "{d}"
    );
}

#[test]
fn a_delegation_deeper_than_the_policy_allows_is_refused() {
    let s = Server::demo();
    set_delegation_rules(&s, json!({"max_depth": 1}));
    let t = alice_to_planner(&s, &[]);
    let (code, body) = s.push("agent:planner", &t, "agent:coder", &[]);
    assert_eq!(code, 400, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(
        d.contains("refused by policy") && d.contains("depth"),
        "{d}"
    );
}

#[test]
fn long_mandates_outside_working_hours_are_refused_and_short_ones_pass() {
    let s = Server::demo();
    // Working hours that never contain "now": every request is outside them.
    set_delegation_rules(
        &s,
        json!({"max_ttl_outside_hours_seconds": 300,
               "working_hours": {"start": 0, "end": 0, "timezone": "UTC", "weekdays_only": false}}),
    );
    let own = |ttl: &'static str| {
        let params = [
            ("grant_type", "client_credentials"),
            ("scope", "github:pulls.write"),
            ("audience", GITHUB),
            ("ttl", ttl),
        ];
        s.as_client("user:alice", &params, common::Proof::Own)
    };
    // Issuance for oneself is a delegation decision too (mode "self").
    let (code, body) = own("600");
    assert_eq!(code, 400, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(
        d.contains("refused by policy") && d.contains("working hours"),
        "{d}"
    );
    let alice = assert_token(&own("120"));
    assert_token(&s.push("user:alice", &alice, "agent:planner", &[("ttl", "120")]));
}

#[test]
fn a_broken_policy_edit_keeps_the_last_good_policy_and_says_why() {
    let s = Server::demo();
    let (pep, m) = s.pep();
    let good = status(&s, &pep, &m)["version"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        policy_dir(&s).join("delegation.rego"),
        "package mandate.delegation\n\ndecision := {\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = status(&s, &pep, &m);
        if st["error"].is_string() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the broken edit was not noticed: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(st["version"], good.as_str(), "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .starts_with("delegation.rego:"),
        "{st}"
    );
    // Delegation still works under the last good policy.
    alice_to_planner(&s, &[]);
}

#[test]
fn authzen_and_opa_data_api_answer_with_the_default_pack() {
    let s = Server::demo();
    let (pep, m) = s.pep();
    let read = json!({
        "subject": {"type": "agent", "id": "coder", "properties": {"scopes": ["github:read"]}},
        "resource": {"type": "mcp_tool", "id": "list_pull_requests",
                     "properties": {"server": "github", "annotations": {"readOnlyHint": true}}},
        "action": {"name": "tools/call"}
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", &pep, &m, &read);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], true, "{v}");

    let mut delete = read.clone();
    delete["resource"] =
        json!({"type": "mcp_tool", "id": "delete_repo", "properties": {"server": "github"}});
    delete["subject"]["properties"]["scopes"] = json!(["github:*"]);
    let (_, _, body) = s.post_json_dpop("/access/v1/evaluation", &pep, &m, &delete);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], false, "{v}");
    assert_eq!(
        v["context"]["approval"]["approvers"],
        json!(["role:approver"]),
        "{v}"
    );

    let batch = json!({
        "subject": read["subject"], "action": read["action"],
        "evaluations": [{"resource": read["resource"]}, {"resource": delete["resource"]}, {"resource": read["resource"]}],
        "options": {"evaluations_semantic": "deny_on_first_deny"}
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluations", &pep, &m, &batch);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let decisions: Vec<&Value> = v["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(
        decisions,
        [&json!(true), &json!(false)],
        "stops at the first deny: {v}"
    );

    let input = json!({
        "principal": {"id": "agent:coder", "type": "agent", "name": "coder"},
        "subject": "user:alice", "chain": ["user:alice", "agent:coder"],
        "scopes": ["github:read"], "audience": [GITHUB],
        "action": {"kind": "mcp", "server": "github", "tool": "merge_pull_request", "arguments": {}},
        "context": {"time": "2026-11-25T12:00:00Z", "time_ns": 1795608000000000000u64, "environment": "test"}
    });
    let (code, _, body) = s.post_json_dpop(
        "/v1/data/mandate/authz/decision",
        &pep,
        &m,
        &json!({"input": input}),
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["allow"], false, "{v}");
    assert!(
        v["result"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("github:merge_pull_request"),
        "{v}"
    );
    assert!(v["decision_id"].is_string(), "{v}");
    let (code, _, body) = s.post_json_dpop(
        "/v1/data/mandate/authz/decision/no_such_member",
        &pep,
        &m,
        &json!({"input": {}}),
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.get("result").is_none() && v["decision_id"].is_string(),
        "undefined has no result: {v}"
    );
}

#[test]
fn the_decision_point_needs_a_mandate_with_the_pdp_scope() {
    let s = Server::demo();
    let (code, headers, _) = s.post_form("/access/v1/evaluation", &[]);
    assert_eq!(code, 401);
    assert!(headers.get("www-authenticate").is_some());
    let alice = s.own_mandate("user:alice", "github:read", &s.url);
    let (code, _, body) = s.post_json_dpop("/v1/data/mandate", "user:alice", &alice, &json!({}));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("mandate:pdp"), "{body}");
}

fn cli(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    mandate(home.path(), args)
}

#[test]
fn policy_test_runs_the_default_pack_and_reports_counts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
    let out = cli(&["policy", "test", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 20, "{last}");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn policy_commands_report_failures_and_broken_files_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package mandate.authz\n\ndefault decision := {\"allow\": false}\n\ntest_ok if true\ntest_bad if decision.allow\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let out = cli(&["policy", "test", d]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL data.mandate.authz.test_bad"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 passed, 1 failed"),
        "{stdout}"
    );

    let input = dir.path().join("in.json");
    std::fs::write(&input, "{}").unwrap();
    let out = cli(&[
        "--json",
        "policy",
        "eval",
        "--dir",
        d,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deny", "{v}");
    assert_eq!(v["query"], "data.mandate.authz.decision", "{v}");

    std::fs::write(
        dir.path().join("bad.rego"),
        "package x\n\nallow if {\n  startwith(input.a, \"b\")\n}\n",
    )
    .unwrap();
    for args in [vec!["policy", "check", d], vec!["policy", "test", d]] {
        let out = cli(&args);
        let err = common::assert_one_line_error(&args, &out);
        assert!(err.contains("bad.rego:4:"), "{err}");
        assert!(err.contains("startwith"), "{err}");
    }
}
