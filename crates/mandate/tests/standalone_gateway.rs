//! `mandate gateway --authority URL` as a separate process in front of the binary's own demo MCP
//! server (stdio, `sandbox = "off"`), with a real `mandate serve` as the authority: calls are
//! decided locally, recorded in the authority's log as asserted by the gateway's principal,
//! revocations reach it within a second, and without the authority's log it refuses (fail
//! closed), and once the authority is back its health endpoint clears `/healthz` without a call.
//! Calls the policy holds for humans wait at the authority's approval desk, and the requests the
//! gateway opens there are recorded as its word. Also the authority's `/audit/v1/*` and
//! `/approvals/v1/holds` endpoints on their own, and the one-line errors the command starts with.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Server};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A running `mandate gateway`, killed on drop.
struct Gateway {
    home: TempDir,
    url: String,
    child: Child,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The authority with the demo fleet and a `gateway` principal holding `mandate:audit`.
fn authority() -> Server {
    let s = Server::demo();
    s.ok(&["agent", "create", "gateway", "--scopes", "mandate:audit"]);
    s
}

/// A MANDATE_HOME for the gateway holding the keys of `principals` from the authority's home.
fn gateway_home(s: &Server, principals: &[&str]) -> TempDir {
    gateway_home_with(s, principals, "")
}

/// [`gateway_home`], with `extra` appended to its gateway.toml.
fn gateway_home_with(s: &Server, principals: &[&str], extra: &str) -> TempDir {
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for p in principals {
        let from = common::key_path(s.home(), p);
        let to = common::key_path(home.path(), p);
        std::fs::copy(&from, &to).unwrap();
    }
    let config = format!(
        "[upstream.demo]\nstdio = [{:?}, \"demo-mcp\"]\npass_env = []\nsandbox = \"off\"\n{extra}\n",
        common::bin()
    );
    std::fs::write(home.path().join("gateway.toml"), config).unwrap();
    home
}

fn gateway_cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    c.arg("gateway")
        .args(args)
        .env("MANDATE_HOME", home)
        .env("HOME", home)
        .env_remove("MANDATE_SERVER")
        .stdin(Stdio::null());
    c
}

/// Starts `mandate gateway --authority` for `s` and waits until `/healthz` answers 200.
fn start_gateway(s: &Server) -> Gateway {
    start_gateway_with(s, "")
}

/// [`start_gateway`], with `extra` appended to its gateway.toml.
fn start_gateway_with(s: &Server, extra: &str) -> Gateway {
    let home = gateway_home_with(s, &["agent:gateway"], extra);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(home.path().join("gateway.log")).unwrap();
    let child = gateway_cmd(home.path(), &["--authority", &s.url, "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mandate gateway");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = {
        let _in = rt.enter();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let g = Gateway {
        url: format!("http://{listen}"),
        home,
        child,
        rt,
        http,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health =
            g.rt.block_on(async { g.http.get(format!("{}/healthz", g.url)).send().await });
        if health.is_ok_and(|r| r.status().as_u16() == 200) {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not become ready: {}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Gateway {
    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("gateway.log")).unwrap_or_default()
    }

    /// A GET on the gateway: status and body text.
    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let r = self
                .http
                .get(&url)
                .send()
                .await
                .expect("the gateway answers");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        })
    }

    /// POSTs `body` to `/mcp/demo` as `principal` with `mandate` and a fresh DPoP proof for this
    /// gateway's URL: status and body text.
    fn call(&self, s: &Server, principal: &str, mandate: &str, body: &Value) -> (u16, String) {
        let url = format!("{}/mcp/demo", self.url);
        let proof = mandate_core::dpop::make_proof(
            &s.key(principal),
            "POST",
            &url,
            common::now(),
            &common::random_id(),
            Some(mandate),
        );
        self.rt.block_on(async {
            let r = self
                .http
                .post(&url)
                .header("Authorization", format!("DPoP {mandate}"))
                .header("DPoP", proof)
                .header("Accept", "application/json, text/event-stream")
                .json(body)
                .send()
                .await
                .expect("the gateway answers");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        })
    }
}

fn tool(name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// The authority's stored events of kind `tool.call` on `resource`.
fn tool_events(s: &Server, resource: &str) -> Vec<Value> {
    s.event_bodies()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .filter(|e| e["kind"] == "tool.call" && e["resource"] == resource)
        .collect()
}

/// `audit verify` until every event is in a checkpoint.
fn assert_log_verifies(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = s.cli(&["--json", "audit", "verify"]);
        let v: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if out.status.success() && v.is_some_and(|v| v["unchecked_tail"].as_u64() == Some(0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "audit verify did not pass: {}",
            common::describe(&["audit", "verify"], &out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_allowed_call_reaches_the_upstream_and_is_recorded_at_the_authority_as_asserted_by_the_gateway(
) {
    let s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    let (status, body) = g.call(
        &s,
        "agent:coder",
        &m,
        &tool("read_note", json!({"name": "welcome"})),
    );
    assert_eq!(status, 200, "{body}\n{}", g.log());
    assert!(body.contains("demo notes"), "{body}");
    let events = tool_events(&s, "demo/read_note");
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    // What the authority verified is the gateway; the caller is the gateway's word.
    assert_eq!(ev["principal"], "agent:gateway", "{ev}");
    assert_eq!(ev["chain"], json!(["agent:gateway"]));
    assert_eq!(ev["asserted"]["by"], "agent:gateway");
    assert_eq!(ev["asserted"]["principal"], "agent:coder");
    assert_eq!(ev["asserted"]["chain"], json!(["agent:coder"]));
    assert_eq!(ev["decision"], "allow");
    assert!(ev["details"]["gateway_event"]
        .as_str()
        .unwrap()
        .starts_with("evt_"));
    // The gateway redacts with the installation's key: its hashes match `mandate audit hash` on
    // the authority.
    let (status, _) = g.call(
        &s,
        "agent:coder",
        &m,
        &tool("list_notes", json!({"api_key": "hunter2"})),
    );
    assert_eq!(status, 200);
    let listed = tool_events(&s, "demo/list_notes");
    let hashed = listed[0]["details"]["action"]["arguments"]["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", listed[0]))
        .to_string();
    assert!(hashed.starts_with("hmac-sha256:"), "{hashed}");
    assert_eq!(s.ok(&["audit", "hash", "hunter2"]).trim(), hashed);
    // The caller is an asserted party only: a query by party finds it only when asked to.
    let party = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "audit",
            "query",
            "--limit",
            "1000",
            "--party",
            "agent:coder",
        ];
        args.extend_from_slice(extra);
        let out = s.ok(&args);
        out.contains("demo/read_note")
    };
    assert!(!party(&[]), "the gateway's word is not a verified party");
    assert!(party(&["--asserted"]));
    assert_log_verifies(&s);
    // MCP clients discover the authority through the gateway's RFC 9728 metadata.
    let (status, body) = g.get("/.well-known/oauth-protected-resource/mcp/demo");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["resource"], format!("{}/mcp/demo", g.url));
    assert_eq!(v["authorization_servers"], json!([s.url]));
    let (status, metrics) = g.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mandate_gateway_calls_total{upstream=\"demo\",outcome=\"allowed\"} 2"),
        "{metrics}"
    );
}

#[test]
fn a_call_outside_the_mandates_scope_is_refused_and_recorded_at_the_authority() {
    let s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let (status, body) = g.call(
        &s,
        "agent:coder",
        &m,
        &tool("read_note", json!({"name": "welcome"})),
    );
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("demo notes"), "{body}");
    let events = tool_events(&s, "demo/read_note");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"], "refused");
    assert_eq!(events[0]["error"], "insufficient_scope");
    assert_eq!(events[0]["asserted"]["principal"], "agent:coder");
    // SIGTERM: connections drain, the stdio child is stopped, the process ends cleanly.
    let mut g = g;
    let _ = Command::new("kill")
        .args(["-TERM", &g.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = g.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop: {}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", g.log());
}

#[test]
fn revoking_the_agent_at_the_authority_makes_the_gateway_refuse_within_a_second() {
    let s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let (status, _) = g.call(&s, "agent:coder", &m, &tool("list_notes", json!({})));
    assert_eq!(status, 200);
    s.ok(&["revoke", "agent", "coder"]);
    let revoked = Instant::now();
    loop {
        let (status, body) = g.call(&s, "agent:coder", &m, &tool("list_notes", json!({})));
        if status == 401 {
            assert!(body.contains("revoked") || body.is_empty(), "{body}");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted {:?} after the revocation: {status} {body}",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_the_authoritys_audit_log_the_gateway_refuses_the_call_instead_of_forwarding_it() {
    let mut s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    s.stop();
    let (status, body) = g.call(
        &s,
        "agent:coder",
        &m,
        &tool("read_note", json!({"name": "welcome"})),
    );
    assert_eq!(status, 503, "{body}\n{}", g.log());
    assert!(!body.contains("demo notes"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32050, "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit log cannot be written"),
        "{body}"
    );
}

#[test]
fn healthz_is_503_while_the_audit_log_cannot_be_written_and_200_once_an_append_succeeds() {
    let mut s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    let read = tool("read_note", json!({"name": "welcome"}));
    s.stop();
    let (status, body) = g.call(&s, "agent:coder", &m, &read);
    assert_eq!(status, 503, "{body}\n{}", g.log());
    // The failed append is named (first, unless the revocation view has also gone stale, on a
    // machine slow enough to take 10 s over this).
    let (status, body) = g.get("/healthz");
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["status"] == "audit_unavailable" || v["status"] == "revocations_stale",
        "{body}"
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("audit log could not be written"),
        "{body}"
    );
    // Back: once the feed is followed again a call is recorded, and the gateway is healthy.
    s.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = g.call(&s, "agent:coder", &m, &read);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call went through after the authority came back: {status} {body}\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = g.get("/healthz");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn healthz_recovers_without_any_call_once_the_authority_is_back() {
    let mut s = authority();
    let g = start_gateway(&s);
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    let read = tool("read_note", json!({"name": "welcome"}));
    s.stop();
    let (status, body) = g.call(&s, "agent:coder", &m, &read);
    assert_eq!(status, 503, "{body}\n{}", g.log());
    let (status, body) = g.get("/healthz");
    assert_eq!(status, 503, "{body}");
    s.start_again();
    let back = Instant::now();
    // No call is made from here on: the gateway probes the authority's /audit/v1/health itself.
    loop {
        let (status, body) = g.get("/healthz");
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(8),
            "/healthz still {status} {body} {:?} after the authority came back\n{}",
            back.elapsed(),
            g.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        tool_events(&s, "demo/read_note").is_empty(),
        "recovered by the probe, not by a recorded call"
    );
    // And calls go through again.
    let (status, body) = g.call(&s, "agent:coder", &m, &read);
    assert_eq!(status, 200, "{body}\n{}", g.log());
}

#[test]
fn the_audit_health_endpoint_needs_mandate_audit_and_writes_nothing() {
    let s = authority();
    let gm = s.own_mandate("agent:gateway", "mandate:audit", &s.url);
    let (_, pep) = s.pep();
    let events = |s: &Server| s.event_bodies().len();
    let before = events(&s);
    for _ in 0..5 {
        let (status, body) = s.get_dpop("/audit/v1/health", "agent:gateway", &gm);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"status": "ok"})
        );
    }
    assert_eq!(events(&s), before, "a probe is no event");
    // Refused as the events endpoint refuses: another privilege is 403 (and recorded, naming
    // the caller), no presentation 401.
    let (status, body) = s.get_dpop("/audit/v1/health", "agent:pep", &pep);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("mandate:audit"), "{body}");
    assert!(s.event_bodies().iter().any(|b| {
        b.contains("\"audit.request\"") && b.contains("agent:pep") && b.contains("refused")
    }));
    let (status, _) = s.get("/audit/v1/health");
    assert_eq!(status, 401);
}

#[test]
fn the_audit_endpoints_need_mandate_audit_and_take_only_tool_call_events() {
    let s = authority();
    let event = |kind: &str| {
        json!([{
            "id": "evt_0000000000000000000000000a", "time": "2026-01-01T00:00:00.000Z",
            "kind": kind, "principal": "agent:coder", "action": "mcp.tools/call", "result": "ok"
        }])
    };
    // A decision point's mandate is not an audit appender's.
    let (_, pep) = s.pep();
    let (status, _, body) =
        s.post_json_dpop("/audit/v1/events", "agent:pep", &pep, &event("tool.call"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("mandate:audit"), "{body}");
    let (status, body) = s.get_dpop("/audit/v1/key", "agent:pep", &pep);
    assert_eq!(status, 403, "{body}");
    // The refusals are recorded, naming the caller.
    assert!(s.event_bodies().iter().any(|b| {
        b.contains("\"audit.request\"") && b.contains("agent:pep") && b.contains("refused")
    }));
    // With mandate:audit: only tool.call events.
    let gm = s.own_mandate("agent:gateway", "mandate:audit", &s.url);
    let (status, _, body) = s.post_json_dpop(
        "/audit/v1/events",
        "agent:gateway",
        &gm,
        &event("token.issued"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tool.call"), "{body}");
    let (status, _, body) = s.post_json_dpop(
        "/audit/v1/events",
        "agent:gateway",
        &gm,
        &event("tool.call"),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["seqs"].as_array().unwrap().len(), 1);
    let (status, body) = s.get_dpop("/audit/v1/key", "agent:gateway", &gm);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["key"].as_str().unwrap().len(), 43, "32 bytes, base64url");
    // Unauthenticated: 401.
    let (status, _, _) = s.post_json_plain("/audit/v1/events", &event("tool.call"));
    assert_eq!(status, 401);
}

#[test]
fn the_gateway_says_in_one_line_why_it_cannot_start() {
    let s = authority();
    s.ok(&["agent", "create", "weak", "--scopes", "demo:list_notes"]);
    let home = gateway_home(&s, &["agent:gateway", "agent:weak"]);
    let run = |args: &[&str]| {
        let out = gateway_cmd(home.path(), args).output().unwrap();
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        common::assert_one_line_error(&all, &out)
    };
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let line = run(&["--authority", &unreachable, "--listen", "127.0.0.1:0"]);
    assert!(line.contains("cannot reach the authority"), "{line}");
    let other = s.url.replace("127.0.0.1", "localhost");
    let line = run(&["--authority", &other, "--listen", "127.0.0.1:0"]);
    assert!(line.contains("names another issuer"), "{line}");
    let line = run(&[
        "--authority",
        &s.url,
        "--as",
        "nobody",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(line.contains("no key for nobody"), "{line}");
    let line = run(&[
        "--authority",
        &s.url,
        "--as",
        "weak",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(line.contains("may not hold mandate:audit"), "{line}");
}

/// The newest pending request `user:bob` can see, waiting for it to appear.
fn pending_request(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.ok_json(&[
            "approvals",
            "list",
            "--state",
            "pending",
            "--as",
            "user:bob",
        ]);
        if v["approvals"][0]["id"].is_string() {
            return v["approvals"][0].clone();
        }
        assert!(Instant::now() < deadline, "no pending request: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_call_held_at_a_gateway_run_apart_waits_at_the_authoritys_desk_and_goes_through_once_approved()
{
    let s = authority();
    s.ok(&["user", "create", "bob", "--role", "approver"]);
    let g = std::sync::Arc::new(start_gateway_with(&s, "[gateway]\napproval_hold = \"25s\""));
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let delete = tool("delete_note", json!({"name": "todo"}));
    // The call waits (longer than one 20 s wait at the desk would be, were bob slower) while bob
    // approves from another process.
    let started = Instant::now();
    let held = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| g.call(&s, "agent:planner", &m, &delete));
        let request = pending_request(&s);
        // The gateway's word, recorded as such.
        assert_eq!(request["requested_by"], "agent:planner", "{request}");
        assert_eq!(request["chain"], json!(["agent:planner"]));
        assert_eq!(request["asserted_by"], "agent:gateway");
        std::thread::sleep(Duration::from_secs(1));
        s.ok(&[
            "approvals",
            "approve",
            request["id"].as_str().unwrap(),
            "--as",
            "user:bob",
        ]);
        (
            request["id"].as_str().unwrap().to_string(),
            waiting.join().unwrap(),
        )
    });
    let (id, (status, body)) = held;
    assert_eq!(status, 200, "{body}\n{}", g.log());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_null(), "the approved call was made: {v}");
    assert!(body.contains("deleted"), "{body}");
    // Its story at the authority: the request opened by the gateway (its word under
    // `asserted`), bob's vote, the approval, and the one call it released.
    let out = s.ok(&[
        "--json",
        "audit",
        "query",
        "--approval",
        &id,
        "--limit",
        "50",
    ]);
    let story: Vec<Value> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    let actions: Vec<&str> = story
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "approval.requested",
            "approval.vote",
            "approval.approved",
            "approval.released",
            "mcp.tools/call"
        ],
        "{out}"
    );
    assert_eq!(story[0]["principal"], "agent:gateway");
    assert_eq!(story[0]["asserted"]["principal"], "agent:planner");
    assert_eq!(story[0]["asserted"]["chain"], json!(["agent:planner"]));
    assert_eq!(story[2]["asserted"]["by"], "agent:gateway", "{}", story[2]);
    assert_eq!(story[3]["principal"], "agent:gateway");
    assert_eq!(story[3]["result"], "ok");
    assert_eq!(story[4]["result"], "ok");

    // Exactly once: the same call again is a new request, which the admin withdraws while the
    // call waits; the call is told who withdrew it.
    let (status, body) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| g.call(&s, "agent:planner", &m, &delete));
        let again = pending_request(&s);
        assert_ne!(again["id"], id.as_str());
        s.ok(&[
            "approvals",
            "cancel",
            again["id"].as_str().unwrap(),
            "--reason",
            "wrong note",
        ]);
        waiting.join().unwrap()
    });
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert_eq!(v["error"]["data"]["state"], "cancelled", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong note"),
        "{v}"
    );
    assert_log_verifies(&s);
}

#[test]
fn the_hold_endpoint_needs_mandate_audit_and_bounds_what_a_gateway_asserts() {
    // The authority's own gateway answers held calls at once here.
    let s = Server::start_with(true, "[gateway]\napproval_hold = \"0s\"");
    s.ok(&["agent", "create", "gateway", "--scopes", "mandate:audit"]);
    let gw = s.own_mandate("agent:gateway", "mandate:audit", &s.url);
    let ask = |chain: Value, digest: &str| {
        json!({"ask": {
            "binding": {"chain": chain, "upstream": "demo", "tool": "delete_note",
                        "arguments_sha256": digest, "policy_version": "v1"},
            "requested_by": "agent:planner", "jti": "j1",
            "approval": {"approvers": ["role:approver"], "quorum": 1, "reason": null},
            "decision_id": "d1", "call": {}},
            "wait_ms": 0})
    };
    let good = "ab".repeat(32);
    let (status, _, body) = s.post_json_dpop(
        "/approvals/v1/holds",
        "agent:gateway",
        &gw,
        &ask(json!(["agent:planner"]), &good),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "pending", "{v}");
    let id = v["request"]["id"].as_str().unwrap().to_string();
    for (bad, why) in [
        (
            ask(json!(["agent:someone"]), &good),
            "must end with requested_by",
        ),
        (ask(json!(["agent:planner"]), "xyz"), "64 lowercase hex"),
        (
            ask(json!(["not a principal"]), &good),
            "invalid principal name",
        ),
        (json!({"ask": {}}), "the body must be"),
    ] {
        let (status, _, body) = s.post_json_dpop("/approvals/v1/holds", "agent:gateway", &gw, &bad);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    // Not approved: nothing to release.
    let release = |id: &str| {
        let (status, _, body) = s.post_json_dpop(
            "/approvals/v1/releases",
            "agent:gateway",
            &gw,
            &json!({"id": id, "jti": "j1"}),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["released"].clone()
    };
    assert_eq!(release(&id), json!(false));
    // Only principals the authority knows.
    let (status, _, body) = s.post_json_dpop(
        "/approvals/v1/holds",
        "agent:gateway",
        &gw,
        &ask(json!(["agent:ghost"]), &good),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must end with requested_by"), "{body}");
    // A request the authority's own gateway holds is not the gateway's: asking for the same
    // binding finds another request, and the approved one cannot be spent from there.
    s.ok(&["user", "create", "bob", "--role", "approver"]);
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let delete = tool("delete_note", json!({"name": "todo"}));
    let (_, _, body) = s.post_json_dpop("/mcp/demo", "agent:planner", &m, &delete);
    let held: Value = serde_json::from_str(&body).unwrap();
    let own_id = held["error"]["data"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{held}"))
        .to_string();
    let shown = s.ok_json(&["approvals", "show", &own_id, "--as", "user:bob"]);
    let same = |chain: Value, requested_by: &str| {
        json!({"ask": {
            "binding": {"chain": chain, "upstream": "demo", "tool": "delete_note",
                        "arguments_sha256": shown["arguments_sha256"],
                        "policy_version": shown["policy_version"]},
            "requested_by": requested_by, "jti": "j2",
            "approval": {"approvers": ["user:bob"], "quorum": 1, "reason": "harmless"},
            "decision_id": "d2", "call": {"tool": "delete_note", "arguments": {"name": "welcome"}}},
            "wait_ms": 0})
    };
    let (status, _, body) = s.post_json_dpop(
        "/approvals/v1/holds",
        "agent:gateway",
        &gw,
        &same(json!(["agent:ghost"]), "agent:ghost"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not know"), "{body}");
    let (status, _, body) = s.post_json_dpop(
        "/approvals/v1/holds",
        "agent:gateway",
        &gw,
        &same(json!(["agent:planner"]), "agent:planner"),
    );
    assert_eq!(status, 200, "{body}");
    let theirs: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(theirs["request"]["id"], own_id.as_str(), "{theirs}");
    s.ok(&["approvals", "approve", &own_id, "--as", "user:bob"]);
    assert_eq!(
        release(&own_id),
        json!(false),
        "another's approval is not spent"
    );
    let (_, _, body) = s.post_json_dpop("/mcp/demo", "agent:planner", &m, &delete);
    assert!(
        body.contains("deleted"),
        "the approval was kept for its own call: {body}"
    );
    // An agent without mandate:audit cannot open requests in others' names.
    let own = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let (status, _, body) = s.post_json_dpop(
        "/approvals/v1/holds",
        "agent:planner",
        &own,
        &ask(json!(["agent:planner"]), &good),
    );
    assert!(matches!(status, 401 | 403), "{status} {body}");
}

#[test]
fn a_gateway_running_an_upstream_unsandboxed_records_it_at_the_authority_before_starting_it() {
    let s = authority();
    let _g = start_gateway(&s);
    let ev: Value = s
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .find(|e| e["action"] == "upstream.sandbox_off")
        .expect("the unsandboxed demo upstream is on the authority's record");
    assert_eq!(ev["kind"], "admin.change");
    assert_eq!(ev["resource"], "demo");
    assert_eq!(ev["principal"], "agent:gateway");
    assert_eq!(ev["asserted"]["by"], "agent:gateway");
    assert_eq!(ev["details"]["config"]["sandbox"], "off");
}
