//! Calls held for human approval, through the real binary's gateway and its demo upstream
//! (`delete_note` is destructive by name, so the default policy holds it): the call waits and
//! nothing happens upstream; nobody in its chain can approve it; another process approves from
//! the CLI and the held call completes, once; other arguments need their own approval; a denial
//! carries the approver's reason; an expiry says so; quorum 2 needs two distinct humans; a
//! restart keeps the request; the audit log tells the story and verifies.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

const DEMO: &str = "/mcp/demo";
const HOLD: &str = "[gateway]\napproval_hold = \"4s\"";

fn call(tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

/// The demo with a short hold and two approvers, bob and carol.
fn server_with(patch: &str) -> Server {
    let s = Server::start_with(true, patch);
    for u in ["bob", "carol"] {
        s.ok(&["user", "create", u, "--role", "approver"]);
    }
    s
}

fn delete(s: &Server, m: &str, name: &str) -> Value {
    let (status, _, body) = s.post_json_dpop(
        DEMO,
        "agent:planner",
        m,
        &call("delete_note", json!({ "name": name })),
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn notes(s: &Server, m: &str) -> String {
    let (_, _, body) = s.post_json_dpop(DEMO, "agent:planner", m, &call("list_notes", json!({})));
    body
}

fn approval_id(v: &Value) -> String {
    assert_eq!(v["error"]["code"], -32004, "{v}");
    v["error"]["data"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id: {v}"))
        .to_string()
}

/// The newest pending request bob can see, waiting for it to appear.
fn pending_id(s: &Server) -> String {
    let start = Instant::now();
    loop {
        let v = s.ok_json(&[
            "approvals",
            "list",
            "--state",
            "pending",
            "--as",
            "user:bob",
        ]);
        if let Some(id) = v["approvals"][0]["id"].as_str() {
            return id.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pending request: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(s: &Server) -> Vec<Value> {
    s.event_bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[test]
fn a_held_call_completes_once_when_another_human_approves_from_the_cli() {
    let s = server_with(HOLD);
    // alice -> planner: alice is in the chain, so she cannot approve though she is an admin-like user.
    let m = s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        "mcp:demo",
        "--scope",
        "demo:*",
    ]);
    // Held for the whole hold: nothing happens upstream.
    let started = Instant::now();
    let v = delete(&s, &m, "todo");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let id = approval_id(&v);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("approval pending: delete_note on demo"),
        "{message}"
    );
    assert!(
        message.contains(&format!("mandate approvals approve {id} --as user:NAME")),
        "{message}"
    );
    assert!(
        notes(&s, &m).contains("todo"),
        "not carried out while pending"
    );

    // Nobody in the chain votes: not the agent (no agent holds mandate:approve), not alice.
    let out = s.cli(&["approvals", "approve", &id, "--as", "agent:planner"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a user"), "{err}");
    let out = s.cli(&["approvals", "approve", &id, "--as", "user:alice"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("user:alice is in the chain"), "{err}");

    // The same call again is held on the same request; bob approves it from another process
    // while it waits, and it completes.
    std::thread::scope(|t| {
        t.spawn(|| {
            let pending = pending_id(&s);
            assert_eq!(pending, id);
            std::thread::sleep(Duration::from_millis(500));
            s.ok(&[
                "approvals",
                "approve",
                &id,
                "--as",
                "user:bob",
                "--reason",
                "cleanup",
            ]);
        });
        let v = delete(&s, &m, "todo");
        assert!(
            v["result"].is_object(),
            "the approved call went through: {v}"
        );
    });
    assert!(!notes(&s, &m).contains("todo"), "carried out once approved");

    // Exactly once: the same call again is a new request.
    let again = approval_id(&delete(&s, &m, "todo"));
    assert_ne!(again, id);
    // Other arguments are another request.
    let other = approval_id(&delete(&s, &m, "welcome"));
    assert_ne!(other, again);

    // The story in the log: requested, voted, approved, and the released call.
    let evs = events(&s);
    let story: Vec<String> = evs
        .iter()
        .filter(|e| e["approval_id"] == id.as_str())
        .map(|e| {
            format!(
                "{}:{}:{}",
                e["kind"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        story.contains(&"approval:approval.requested:ok".to_string()),
        "{story:?}"
    );
    assert!(
        story.contains(&"approval:approval.vote:ok".to_string()),
        "{story:?}"
    );
    assert!(
        story.contains(&"approval:approval.approved:ok".to_string()),
        "{story:?}"
    );
    let released: Vec<&Value> = evs
        .iter()
        .filter(|e| {
            e["approval_id"] == id.as_str() && e["kind"] == "tool.call" && e["result"] == "ok"
        })
        .collect();
    assert_eq!(released.len(), 1, "{story:?}");
    assert_eq!(released[0]["chain"], json!(["user:alice", "agent:planner"]));
    let out = s.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_denial_reaches_the_agent_with_the_approvers_reason() {
    let s = server_with(HOLD);
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let id = approval_id(&delete(&s, &m, "todo"));
    let shown = s.ok(&["approvals", "show", &id, "--as", "user:bob"]);
    assert!(shown.contains("delete_note on demo"), "{shown}");
    assert!(shown.contains("agent:planner"), "{shown}");
    assert!(shown.contains("\"todo\""), "{shown}");
    s.ok(&[
        "approvals",
        "deny",
        &id,
        "--as",
        "user:bob",
        "--reason",
        "keep the todo list",
    ]);
    let v = delete(&s, &m, "todo");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("denied by user:bob: keep the todo list"),
        "{message}"
    );
    assert_eq!(v["error"]["data"]["state"], "denied");
    // A decided request takes no more votes.
    let out = s.cli(&["approvals", "approve", &id, "--as", "user:carol"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already denied"));
    assert!(notes(&s, &m).contains("todo"));
}

#[test]
fn quorum_two_needs_two_distinct_humans_and_survives_a_restart() {
    let mut s = server_with(HOLD);
    let data = s.home().join("server/policies/data.json");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, text.replace("\"quorum\": 1", "\"quorum\": 2")).unwrap();
    s.restart();
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let v = delete(&s, &m, "todo");
    let id = approval_id(&v);
    assert_eq!(v["error"]["data"]["quorum"], 2, "{v}");
    s.ok(&["approvals", "approve", &id, "--as", "user:bob"]);
    // Bob again does not count twice.
    let out = s.cli(&["approvals", "approve", &id, "--as", "user:bob"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already voted"));
    // A restart keeps the request and its vote.
    s.restart();
    let shown = s.ok_json(&["approvals", "show", &id, "--as", "user:carol"]);
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["votes"].as_array().unwrap().len(), 1);
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    assert!(notes(&s, &m).contains("todo"));
    s.ok(&["approvals", "approve", &id, "--as", "user:carol"]);
    let v = delete(&s, &m, "todo");
    assert!(v["result"].is_object(), "{v}");
    assert!(!notes(&s, &m).contains("todo"));
}

#[test]
fn an_expired_request_says_so_and_a_retry_asks_anew() {
    let s = server_with("[gateway]\napproval_hold = \"8s\"");
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    std::thread::scope(|t| {
        t.spawn(|| {
            let id = pending_id(&s);
            // Expiry is at least a minute by policy; the clock is moved for the test.
            s.sql(&[&format!(
                "UPDATE approvals SET expires_at = {} WHERE id = '{id}'",
                common::now() - 1
            )]);
        });
        let v = delete(&s, &m, "todo");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("approval expired:"), "{message}");
    });
    let v = delete(&s, &m, "todo");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired unanswered"), "{message}");
    let expired = events(&s)
        .into_iter()
        .filter(|e| e["action"] == "approval.expired")
        .count();
    assert_eq!(expired, 1);
}
