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

/// `mandate delegate` from user:alice to agent:planner.
fn alice_to_planner<'a>(aud: &'a str, scope: &'a str) -> [&'a str; 9] {
    [
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        aud,
        "--scope",
        scope,
    ]
}

/// The first approval request id (`apr_` and 22 base64url characters) in `text`.
fn request_id_in(text: &str) -> String {
    let at = text
        .find("apr_")
        .unwrap_or_else(|| panic!("no request id: {text}"));
    text[at..at + 26].to_string()
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
    let m = s.ok(&alice_to_planner("mcp:demo", "demo:*"));
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
fn the_user_who_delegated_the_call_withdraws_its_request_and_an_approver_cannot() {
    let s = server_with("[gateway]\napproval_hold = \"0s\"");
    let m = s.ok(&alice_to_planner("mcp:demo", "demo:*"));
    let m = m.trim();
    let id = approval_id(&delete(&s, m, "todo"));
    // An approver outside the chain denies instead; withdrawing is the delegator's (or an
    // admin's).
    let out = s.cli(&["approvals", "cancel", &id, "--as", "user:bob"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not withdraw"), "{err}");
    s.ok(&[
        "approvals",
        "cancel",
        &id,
        "--as",
        "user:alice",
        "--reason",
        "wrong note",
    ]);
    let shown = s.ok_json(&["approvals", "show", &id, "--as", "user:bob"]);
    assert_eq!(shown["state"], "cancelled", "{shown}");
    assert_eq!(shown["resolved_by"], "user:alice");
    // A withdrawn request takes no vote; the same call made again asks anew.
    let out = s.cli(&["approvals", "approve", &id, "--as", "user:bob"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already cancelled"));
    let again = approval_id(&delete(&s, m, "todo"));
    assert_ne!(again, id);
    assert!(notes(&s, m).contains("todo"));
    // Newest first; a page after the newer request holds the older one, and says no more.
    let listed = s.ok_json(&["approvals", "list", "--as", "user:bob"]);
    let ids: Vec<&str> = listed["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [again.as_str(), id.as_str()], "{listed}");
    assert!(listed["next"].is_null());
    let older = s.ok_json(&["approvals", "list", "--as", "user:bob", "--before", &again]);
    assert_eq!(older["approvals"][0]["id"], id.as_str(), "{older}");
    assert_eq!(older["approvals"].as_array().unwrap().len(), 1);
    let story = s.ok_json(&["audit", "query", "--approval", &id]);
    let actions: Vec<&str> = story
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"approval.cancelled"), "{actions:?}");
    assert!(
        actions.contains(&"approval.cancel"),
        "bob's refused try: {actions:?}"
    );
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

#[test]
fn two_approvers_voting_at_the_same_moment_both_count() {
    let mut s = server_with("[gateway]\napproval_hold = \"0s\"");
    let data = s.home().join("server/policies/data.json");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, text.replace("\"quorum\": 1", "\"quorum\": 2")).unwrap();
    s.restart();
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    for round in 0..3 {
        let id = approval_id(&delete(&s, &m, &format!("race-{round}")));
        std::thread::scope(|t| {
            for who in ["user:bob", "user:carol"] {
                let (s, id) = (&s, &id);
                t.spawn(move || s.ok(&["approvals", "approve", id, "--as", who]));
            }
        });
        let shown = s.ok_json(&["approvals", "show", &id, "--as", "user:bob"]);
        assert_eq!(shown["state"], "approved", "round {round}: {shown}");
    }
}

#[test]
fn what_cannot_be_bound_exactly_or_alone_is_refused_and_requests_per_agent_are_bounded() {
    let s = server_with("[gateway]\napproval_hold = \"0s\"");
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    // A number whose canonical form is another number.
    let raw = r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete_note", "arguments": {"name": "todo", "n": 9007199254740993.0}}}"#;
    let (_, _, body) = s.dpop_send(
        "POST",
        DEMO,
        "agent:planner",
        &m,
        &[("content-type", "application/json")],
        Some(raw.as_bytes().to_vec()),
    );
    assert!(body.contains("cannot be bound exactly"), "{body}");
    // In a batch, which is forwarded whole or not at all.
    let batch = json!([call("delete_note", json!({"name": "todo"})), {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_notes", "arguments": {}}}]);
    let (_, _, body) = s.post_json_dpop(DEMO, "agent:planner", &m, &batch);
    assert!(body.contains("send it alone"), "{body}");
    // At most 32 waiting requests per agent.
    for i in 0..32 {
        approval_id(&delete(&s, &m, &format!("n{i}")));
    }
    let v = delete(&s, &m, "one-more");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("already has 32 approval requests waiting"),
        "{message}"
    );
    assert!(notes(&s, &m).contains("todo"));
}

/// `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, computed here from the Standard Webhooks
/// description (not with the server's code).
fn standard_signature(key: &[u8], id: &str, ts: &str, body: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn webhooks_are_signed_as_standard_webhooks_retried_and_renderable() {
    use base64::Engine;
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = tries.clone();
    // The first delivery fails: it must be retried with the same webhook-id.
    let hook = common::fake::Fake::start(move |_, _| {
        if t.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            (500, "try again".into())
        } else {
            (204, String::new())
        }
    });
    let key = [7u8; 32];
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("whsec");
    std::fs::write(
        &secret,
        format!(
            "whsec_{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
    )
    .unwrap();
    let s = server_with(&format!(
        "[gateway]\napproval_hold = \"0s\"\n[approvals]\nwebhooks = [{{ url = \"{}/hook\", secret = \"@{}\" }}]\n",
        hook.url,
        secret.display()
    ));
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let id = approval_id(&delete(&s, &m, "todo"));
    s.ok(&[
        "approvals",
        "deny",
        &id,
        "--as",
        "user:bob",
        "--reason",
        "not today",
    ]);
    // Delivered: requested (after one retry), vote-less denial.
    let start = Instant::now();
    let delivered = loop {
        let got = hook.requests();
        let kinds: Vec<String> = got
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if kinds.iter().filter(|k| *k == "approval.requested").count() >= 2
            && kinds.iter().any(|k| k == "approval.denied")
        {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{kinds:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let header = |r: &common::fake::Request, n: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let requested: Vec<&common::fake::Request> = delivered
        .iter()
        .filter(|r| r.body.contains("\"approval.requested\""))
        .collect();
    assert_eq!(
        header(requested[0], "webhook-id"),
        header(requested[1], "webhook-id"),
        "a retry keeps the message id"
    );
    for r in &delivered {
        let (id_h, ts) = (header(r, "webhook-id"), header(r, "webhook-timestamp"));
        assert!(id_h.starts_with("msg_"), "{id_h}");
        let age = common::now() - ts.parse::<i64>().unwrap();
        assert!(
            (0..=30).contains(&age),
            "timestamp within the window: {age}"
        );
        assert_eq!(
            header(r, "webhook-signature"),
            standard_signature(&key, &id_h, &ts, &r.body)
        );
        assert_eq!(r.path, "/hook");
    }
    let denied: Value = serde_json::from_str(
        &delivered
            .iter()
            .find(|r| r.body.contains("\"approval.denied\""))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(denied["data"]["id"], id.as_str());
    assert_eq!(denied["data"]["state"], "denied");
    assert_eq!(denied["data"]["by"], "user:bob");
    assert_eq!(denied["data"]["resolution"], "not today");
    assert!(denied["data"]["text"]
        .as_str()
        .unwrap()
        .contains("denied by user:bob"));
    let requested: Value = serde_json::from_str(&requested[0].body).unwrap();
    assert_eq!(requested["data"]["call"]["arguments"]["name"], "todo");
    assert!(requested["data"]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("mandate approvals approve {id}")));
}

#[test]
fn the_event_stream_shows_an_approver_the_changes_as_they_happen() {
    use std::io::{BufRead, BufReader, Write};
    let s = server_with("[gateway]\napproval_hold = \"0s\"");
    let url = format!("{}/approvals/v1/events", s.url);
    let token = s.own_mandate("user:bob", "mandate:approve", &s.url);
    let proof = mandate_core::dpop::make_proof(
        &s.key("user:bob"),
        "GET",
        &url,
        common::now(),
        &common::random_id(),
        Some(&token),
    );
    let mut sock = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET /approvals/v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: DPoP {token}\r\nDPoP: {proof}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(sock).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let id = approval_id(&delete(&s, &m, "todo"));
    s.ok(&["approvals", "approve", &id, "--as", "user:carol"]);
    let mut seen = vec![];
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(kind) = line.strip_prefix("event: ") {
            seen.push(kind.to_string());
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["id"], id.as_str());
        }
        if seen.last().map(String::as_str) == Some("approval.approved") {
            break;
        }
    }
    assert_eq!(seen, ["approval.requested", "approval.approved"]);
    // Revoking the user ends the stream within a second (the read would time out otherwise).
    let revoked = Instant::now();
    s.ok(&["revoke", "user", "bob"]);
    // The response ends with the last chunk (`0`); the connection itself stays open.
    for line in lines {
        match line {
            Ok(l) if l.trim() == "0" => break,
            Ok(_) => {}
            Err(e) => panic!("the stream did not end: {e}"),
        }
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(5),
        "{:?}",
        revoked.elapsed()
    );
}

#[test]
fn a_delegation_the_policy_holds_is_issued_once_after_a_human_approves_it() {
    // The token endpoint holds for its request deadline less 5 s: 3 s here.
    let mut s = server_with("[limits]\nrequest_timeout = \"8s\"");
    let data = s.home().join("server/policies/data.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    v["mandate_config"]["delegation"]["approval_scopes"] = json!(["github:pulls.write"]);
    std::fs::write(&data, v.to_string()).unwrap();
    s.restart();
    let args = alice_to_planner("https://api.github.com", "github:pulls.write");
    let started = Instant::now();
    let out = s.cli(&args);
    assert!(!out.status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "held for the hold"
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("delegation needs approval"), "{err}");
    let id = request_id_in(&err);
    // Scopes the rule does not name are not held.
    s.ok(&alice_to_planner(
        "https://api.github.com",
        "github:contents.read",
    ));
    s.ok(&["approvals", "approve", &id, "--as", "user:bob"]);
    let token = s.ok(&args);
    assert_eq!(common::jwt_payload(&token)["scope"], "github:pulls.write");
    let issued = events(&s)
        .into_iter()
        .find(|e| e["kind"] == "token.exchanged" && e["approval_id"] == id.as_str())
        .expect("the issuance names the approval");
    assert_eq!(issued["decision"], "approval");
    // Once: the same request again is a new approval request.
    let out = s.cli(&args);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&id));
}
