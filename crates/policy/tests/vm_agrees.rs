//! Decisions are answered by regorus's VM (compiled at load), everything else by its interpreter.
//! These tests hold the two to the same answer on the shipped default pack, over a grid of tool
//! calls and delegations (including malformed ones) and several configurations.

use std::path::Path;

use std::time::Duration;

use mandate_policy::policy::Evaluator;
use mandate_policy::sources::Sources;
use mandate_policy::{Policy, Query};
use serde_json::{json, Value};

fn pack() -> Sources {
    Sources::read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default"))
        .expect("default pack")
}

fn with_config(change: impl Fn(&mut Value)) -> Policy {
    let mut s = pack();
    let d = s.data.iter_mut().find(|d| d.name == "data.json").unwrap();
    let mut v: Value = serde_json::from_str(&d.text).unwrap();
    change(&mut v["mandate_config"]);
    d.text = v.to_string();
    // The question is agreement, not speed: a generous limit, so that a debug build on a busy
    // machine (the interpreter is the slower of the two) does not answer "time limit".
    Policy::build(&s, Duration::from_secs(10)).unwrap()
}

fn same_answer(p: &Policy, q: Query, input: &Value) {
    assert_eq!(
        p.evaluator_for(q.path()),
        Evaluator::Vm,
        "{} is compiled",
        q.path()
    );
    let vm = p.eval_with(Evaluator::Vm, q.path(), Some(input.clone()));
    let interp = p.eval_with(Evaluator::Interpreter, q.path(), Some(input.clone()));
    match (&vm, &interp) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "VM and interpreter differ for {input}"),
        (Err(_), Err(_)) => {}
        _ => panic!("VM {vm:?} vs interpreter {interp:?} for {input}"),
    }
    // And decide() (the production path) agrees with both.
    let d = p.decide(q, input);
    if let Ok(Some(v)) = &interp {
        let outright = v["allow"] == json!(true) && v["approval"].is_null();
        assert_eq!(outright, d.is_allow(), "{input}");
        assert_eq!(v["approval"].is_object(), d.approval().is_some(), "{input}");
    }
}

fn tool_call(kind: Value, tool: &str, scopes: Value, extra: Value) -> Value {
    let mut action = json!({"kind": kind, "server": "github", "tool": tool,
        "mcp_method": "tools/call", "arguments": {}});
    for (k, v) in extra.as_object().unwrap() {
        action[k] = v.clone();
    }
    json!({
        "principal": {"id": "agent:coder", "type": "agent", "name": "coder"},
        "subject": "user:alice", "chain": ["user:alice", "agent:coder"],
        "scopes": scopes, "audience": ["https://api.github.com"], "mandate": null,
        "action": action,
        "context": {"time": "2026-11-25T10:00:00Z", "time_ns": 1795600800000000000u64,
                    "environment": "test", "client_address": "127.0.0.1"}
    })
}

#[test]
fn vm_and_interpreter_agree_on_tool_calls() {
    let policies = [
        pack_policy(),
        with_config(|c| {
            c["destructive_verbs"] = json!(["nuke"]);
            c["approvers"] = json!(["user:bob", "user:carol"]);
            c["quorum"] = json!(2);
        }),
        with_config(|c| *c = json!({})),
        // Unusable settings: both evaluators must deny the same way.
        with_config(|c| {
            c["destructive_verbs"] = json!(["rm (force"]);
            c["production_environments"] = json!("production");
            c["redact_argument_keys"] = json!(["pass("]);
        }),
    ];
    let kinds = [
        json!("mcp"),
        json!("http"),
        json!("delegation"),
        Value::Null,
    ];
    let tools = [
        "list_pull_requests",
        "delete_repo",
        "deleteRepo",
        "create_issue",
        "nuke_it",
        "",
    ];
    let scopes = [
        json!([]),
        json!(["github:*"]),
        json!(["github:read"]),
        json!(["*"]),
        json!(["gitlab:*"]),
        json!(["github:create_issue", 7]),
        json!("github:*"),
    ];
    let extras = [
        json!({}),
        json!({"annotations": {"readOnlyHint": true}}),
        json!({"annotations": {"destructiveHint": true}}),
        json!({"upstream": {"environment": "Production"}}),
        json!({"upstream": {"labels": {"environment": "prod"}}, "http": {"method": "get", "path": "/x"}}),
        json!({"http": {"method": "DELETE", "path": "/x"}, "upstream": {"environment": "production"}}),
        json!({"arguments": {"password": "x", "a/b~c_token": 1, "repo": "r"}}),
        json!({"arguments": "not an object"}),
    ];
    let mut n = 0;
    for p in &policies {
        for kind in &kinds {
            for tool in tools {
                for s in &scopes {
                    for e in &extras {
                        same_answer(
                            p,
                            Query::Authz,
                            &tool_call(kind.clone(), tool, s.clone(), e.clone()),
                        );
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 1000, "{n}");
    // Inputs that are not even the documented shape.
    for input in [
        json!({}),
        json!(null),
        json!([1]),
        json!({"action": null}),
        json!({"action": {"kind": "mcp"}}),
    ] {
        same_answer(&policies[0], Query::Authz, &input);
    }
}

fn pack_policy() -> Policy {
    Policy::build(&pack(), Duration::from_secs(10)).unwrap()
}

#[test]
fn vm_and_interpreter_agree_on_delegations() {
    let policies = [
        pack_policy(),
        with_config(|c| {
            c["delegation"] = json!({
                "max_depth": 2,
                "forbidden": [{"from": "agent:support-*", "to": "agent:deployer"}],
                "max_ttl_outside_hours_seconds": 900,
                "working_hours": {"start": 8, "end": 18, "timezone": "Europe/Berlin", "weekdays_only": true}
            })
        }),
        with_config(|c| {
            c["delegation"] = json!({"max_depth": "1", "forbidden": [{"from": "agent:x"}],
                                     "max_ttl_outside_hours_seconds": "60"})
        }),
    ];
    // Wednesday 10:00 UTC, Wednesday 22:53 UTC, Saturday 10:00 UTC.
    let times = [
        1795600800000000000u64,
        1795647180000000000,
        1795860000000000000,
    ];
    let mut n = 0;
    for p in &policies {
        for from in ["user:alice", "agent:support-7", "agent:planner"] {
            for to in ["agent:deployer", "agent:coder"] {
                for depth in [0, 1, 3] {
                    for ttl in [Value::from(600), Value::from(3600), Value::Null] {
                        for t in times {
                            let input = json!({
                                "principal": {"id": from, "type": "agent", "name": "x"},
                                "subject": "user:alice", "chain": ["user:alice", to],
                                "scopes": ["github:*"], "audience": ["a"],
                                "mandate": {"jti": "j", "iat": 1, "exp": 2, "depth": depth, "max_depth": 5},
                                "action": {"kind": "delegation", "mode": "push", "from": from, "to": to,
                                           "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                           "ttl_seconds": ttl},
                                "context": {"time": "x", "time_ns": t, "environment": "test"}
                            });
                            same_answer(p, Query::Delegation, &input);
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(n >= 300, "{n}");
}
