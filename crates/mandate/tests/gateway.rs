//! The gateway served by `mandate up --demo` (the real binary, its demo upstream over stdio):
//! filtering, an allowed and a refused call, the refusal's wording, the audit event, and the
//! endpoints MCP clients discover it by. The suites with npm and PyPI servers and the official
//! MCP SDK are in interop/python/test_gateway.py.

mod common;

use common::Server;
use serde_json::{json, Value};

const DEMO: &str = "/mcp/demo";

fn call(tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

#[test]
fn the_demo_upstream_lists_only_what_the_coder_may_call_and_runs_a_read() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &list);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list_notes", "read_note"]);
    let (status, _, body) = s.post_json_dpop(
        DEMO,
        "agent:coder",
        &m,
        &call("read_note", json!({"name": "welcome"})),
    );
    assert_eq!(status, 200);
    assert!(body.contains("demo notes"), "{body}");
}

#[test]
fn a_destructive_call_is_held_for_approval_and_recorded() {
    let s = Server::start_with(true, "[gateway]\napproval_hold = \"1s\"");
    let m = s.own_mandate("agent:planner", "demo:*", "mcp:demo");
    let (status, _, body) = s.post_json_dpop(
        DEMO,
        "agent:planner",
        &m,
        &call("delete_note", json!({"name": "todo"})),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32004, "{body}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("approval pending: delete_note on demo"),
        "{message}"
    );
    let decision = v["error"]["data"]["decision_id"].as_str().unwrap();
    assert!(message.contains(decision));
    // Not carried out: the note is still listed.
    let (_, _, listed) =
        s.post_json_dpop(DEMO, "agent:planner", &m, &call("list_notes", json!({})));
    assert!(listed.contains("todo"), "{listed}");
    // Recorded with the decision, before anything would have been forwarded.
    let events = s.event_bodies();
    let ev: Value = events
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap())
        .find(|e| e["kind"] == "tool.call" && e["resource"] == "demo/delete_note")
        .expect("the refused call is an audit event");
    assert_eq!(ev["decision"], "approval");
    assert_eq!(ev["decision_id"], decision);
    assert_eq!(ev["error"], "approval_pending");
    assert_eq!(ev["approval_id"], v["error"]["data"]["approval_id"]);
    assert_eq!(ev["chain"], json!(["agent:planner"]));
}

#[test]
fn an_unauthenticated_call_gets_401_naming_the_resource_metadata() {
    let s = Server::demo();
    let (status, headers, _) = s.post_json_plain(
        DEMO,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(status, 401);
    let challenge: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp/demo", s.url);
    assert!(
        challenge
            .iter()
            .any(|c| c.contains(&format!("resource_metadata=\"{metadata}\""))),
        "{challenge:?}"
    );
    let (status, body) = s.get("/.well-known/oauth-protected-resource/mcp/demo");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["resource"], format!("{}{DEMO}", s.url));
    assert_eq!(v["authorization_servers"], json!([s.url]));
}

#[test]
fn a_mandate_for_another_audience_is_refused() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "github:pulls.read", "https://api.github.com");
    let (status, headers, _) = s.post_json_dpop(
        DEMO,
        "agent:coder",
        &m,
        &call("read_note", json!({"name": "welcome"})),
    );
    assert_eq!(status, 401);
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

#[test]
fn metrics_count_calls_and_show_the_upstream_up() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    s.post_json_dpop(DEMO, "agent:coder", &m, &call("list_notes", json!({})));
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("mandate_gateway_calls_total{upstream=\"demo\",outcome=\"allowed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mandate_gateway_upstream_up{upstream=\"demo\",transport=\"stdio\"} 1"),
        "{text}"
    );
}

#[test]
fn a_method_or_notification_the_gateway_does_not_know_is_refused_and_not_forwarded() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    // A near miss of tools/call: refused as unknown, recorded.
    let near = json!({"jsonrpc": "2.0", "id": 1, "method": "Tools/Call", "params": {"name": "delete_note", "arguments": {"name": "todo"}}});
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &near);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32601, "{body}");
    assert!(s
        .event_bodies()
        .iter()
        .any(|e| e.contains("\"mcp.unknown_method\"")
            && e.contains("demo/Tools/Call")
            && e.contains("method_not_found")));
    // A notification that is not one of the client's: 400, not relayed.
    let note = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_note", "arguments": {"name": "todo"}}});
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &note);
    assert_eq!(status, 400, "{body}");
    // Refused before any policy question, but recorded all the same (outside attack): the
    // notification-form call, params as an array, and a body that is not JSON-RPC at all.
    let array =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": ["delete_note"]});
    let (_, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &array);
    assert!(body.contains("-32602"), "{body}");
    let (status, _, _) = s.post_json_dpop(DEMO, "agent:coder", &m, &json!({"id": 3}));
    assert_eq!(status, 400);
    let events = s.event_bodies();
    let refused = |label: &str, code: &str| {
        events.iter().any(|e| {
            e.contains(&format!("\"action\":\"{label}\""))
                && e.contains("\"result\":\"refused\"")
                && e.contains(code)
        })
    };
    assert!(refused("mcp.tools/call", "method_not_found"), "{events:?}");
    assert!(refused("mcp.tools/call", "invalid_params"), "{events:?}");
    assert!(refused("mcp.invalid", "invalid_request"), "{events:?}");
    // A session this caller did not open: 404, and on record.
    let (status, _, body) = s.dpop_send(
        "POST",
        DEMO,
        "agent:coder",
        &m,
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", "not-yours"),
        ],
        Some(serde_json::to_vec(&call("list_notes", json!({}))).unwrap()),
    );
    assert_eq!(status, 404, "{body}");
    let sessions = s
        .event_bodies()
        .into_iter()
        .filter(|e| e.contains("\"mcp.session\"") && e.contains("unknown_session"))
        .count();
    assert_eq!(sessions, 1);
    let (_, _, listed) = s.post_json_dpop(DEMO, "agent:coder", &m, &call("list_notes", json!({})));
    assert!(listed.contains("todo"), "{listed}");
}

#[test]
fn each_message_of_a_batch_counts_against_the_agents_rate() {
    let s = Server::start_with(true, "[gateway]\nper_agent_rps = 5\nper_agent_burst = 5\n");
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let batch: Vec<Value> = (0..8)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "list_notes"}}))
        .collect();
    let (status, headers, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &Value::Array(batch));
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32029);
}

#[test]
fn a_large_body_counts_as_more_calls_by_its_bytes_and_values_but_always_fits_the_burst() {
    let s = Server::start_with(true, "[gateway]\nper_agent_rps = 5\nper_agent_burst = 5\n");
    let m = s.own_mandate("agent:coder", "demo:read_note", "mcp:demo");
    // About 1,000 values: four calls' worth more, so the whole allowance (5) at once.
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_note", "arguments": {"name": "welcome", "pad": vec![0; 1_000]}}});
    let small = call("read_note", json!({"name": "welcome"}));
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &big);
    assert_eq!(status, 200, "{body}");
    // The allowance is spent: even a small call waits now.
    let (status, headers, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &small);
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some());
    // A body worth more than the whole burst is charged the burst, not refused for ever.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let huge = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "read_note", "arguments": {"name": "welcome", "pad": vec![0; 10_000]}}});
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &huge);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &small);
    assert_eq!(status, 429, "{body}");
    // One long string is a single value, but its bytes count (16 KiB a call).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let long = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "read_note", "arguments": {"name": "welcome", "pad": "A".repeat(100_000)}}});
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &long);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &m, &small);
    assert_eq!(status, 429, "{body}");
}

#[test]
fn a_mandate_is_refused_at_the_gateway_from_the_second_it_expires() {
    let s = Server::demo();
    let good = s.own_mandate("agent:coder", "demo:read_note", "mcp:demo");
    let header = common::jwt_header(&good);
    let issuer = s.issuer_key(header["kid"].as_str().unwrap());
    // The same claims re-signed with the issuer key and a fresh jti, ending `exp_in` from now.
    let ending = |exp_in: i64| {
        let mut c = common::jwt_payload(&good);
        let now = common::now();
        c["jti"] = json!(common::random_id());
        c["iat"] = json!(now - 60);
        c["nbf"] = json!(now - 60);
        c["exp"] = json!(now + exp_in);
        common::sign_jws(&header, &c, &issuer)
    };
    let read = call("read_note", json!({"name": "welcome"}));
    let (status, _, body) = s.post_json_dpop(DEMO, "agent:coder", &ending(30), &read);
    assert_eq!(
        status, 200,
        "control: a re-signed live mandate works: {body}"
    );
    // The issuer's own gateway shares its clock: no skew allowance after `exp`.
    let (status, headers, body) = s.post_json_dpop(DEMO, "agent:coder", &ending(-2), &read);
    assert_eq!(status, 401, "{body}");
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert!(body.contains("expired"), "{body}");
}

#[test]
fn two_dpop_headers_are_refused() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let url = format!("{}{DEMO}", s.url);
    let key = s.key("agent:coder");
    let proof = |jti: &str| {
        mandate_core::dpop::make_proof(&key, "POST", &url, common::now(), jti, Some(&m))
    };
    let headers = [
        ("Authorization", format!("DPoP {m}")),
        ("DPoP", proof(&common::random_id())),
        ("DPoP", "garbage".to_string()),
    ];
    let (status, body) = s.post_json_with_headers(DEMO, &headers, &call("list_notes", json!({})));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("exactly one DPoP header"), "{body}");
}

#[test]
fn connect_prints_the_client_configuration_that_launches_it() {
    let s = Server::demo();
    for (client, root) in [
        ("claude", "mcpServers"),
        ("cursor", "mcpServers"),
        ("vscode", "servers"),
    ] {
        let v = s.ok_json(&[
            "connect",
            "--print-config",
            client,
            "--as",
            "coder",
            "--server",
            "demo",
        ]);
        let entry = &v[root]["mandate-demo"];
        assert!(
            entry["command"].as_str().unwrap().ends_with("mandate"),
            "{v}"
        );
        assert_eq!(
            entry["args"],
            json!(["connect", "--as", "coder", "--server", "demo"])
        );
        assert_eq!(entry["env"]["MANDATE_HOME"], s.home().display().to_string());
    }
    let out = s.cli(&["connect", "--print-config", "emacs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give claude, cursor or vscode"));
}

#[test]
fn an_upstream_added_live_is_served_at_once_audited_and_kept_across_a_restart() {
    let mut s = Server::demo();
    let exe = common::bin();
    // The server's own files are never a secret source.
    let hmac = s.home().join("server/issuer-keys/audit-hmac.key");
    let header = format!("X-Key=@{}", hmac.display());
    let out = s.cli(&[
        "upstream",
        "add",
        "leak",
        "--url",
        "http://127.0.0.1:9/mcp",
        "--secret-header",
        &header,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server's own directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A sandbox declared wrong is refused with its reason, before anything is stored.
    let out = s.cli(&[
        "upstream",
        "add",
        "boxed",
        "--allow-read",
        "relative/dir",
        "--stdio",
        "--",
        exe,
        "demo-mcp",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not absolute"));
    // `--json` before `--`: what follows `--` is the upstream's command (sandboxed by default).
    let added: Value = serde_json::from_str(&s.ok(&[
        "upstream",
        "add",
        "notes",
        "--json",
        "--scope-rule",
        "read_*=notes:read",
        "--stdio",
        "--",
        exe,
        "demo-mcp",
    ]))
    .unwrap();
    assert_eq!(added["audience"], "mcp:notes");
    s.ok(&[
        "agent",
        "create",
        "reader",
        "--scopes",
        "notes:read",
        "--audiences",
        "mcp:notes",
    ]);
    // The mapped scope is the one the gateway and the default policy check.
    let m = s.own_mandate("agent:reader", "notes:read", "mcp:notes");
    let read = call("read_note", json!({"name": "welcome"}));
    let (status, _, body) = s.post_json_dpop("/mcp/notes", "agent:reader", &m, &read);
    assert_eq!(status, 200);
    assert!(body.contains("demo notes"), "{body}");
    let shown = s.ok_json(&["upstream", "show", "notes"]);
    let read_tool = shown["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "read_note")
        .unwrap()
        .clone();
    assert_eq!(read_tool["scope"], "notes:read");
    assert!(
        read_tool["callers"]
            .as_array()
            .unwrap()
            .contains(&json!("agent:reader")),
        "{shown}"
    );
    // server.toml's upstreams are changed there, not here.
    let out = s.cli(&["upstream", "remove", "demo"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("declared in server.toml"));
    s.restart();
    let listed = s.ok_json(&["upstream", "list"]);
    let names: Vec<&str> = listed["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo", "notes"]);
    s.ok(&["upstream", "remove", "notes"]);
    let m = s.own_mandate("agent:reader", "notes:read", "mcp:notes");
    let (status, _, _) = s.post_json_dpop("/mcp/notes", "agent:reader", &m, &read);
    assert_eq!(status, 404, "a removed upstream is not served");
    let events = s.event_bodies();
    for action in ["upstream.add", "upstream.remove"] {
        assert!(
            events
                .iter()
                .any(|e| e.contains(&format!("\"action\":\"{action}\""))),
            "{action} not audited"
        );
    }
}

/// A server whose upstream `api` is an HTTP API at `fake` (its key in a file: the key is
/// returned), routed GET and DELETE `/items/*` and POST `/items`.
fn api_server(fake: &common::fake::Fake) -> (Server, String) {
    let home_key = "api-key-".to_string() + &common::random_id();
    // The secret is written where the server reads it: a file beside the test's home.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{home_key}\n")).unwrap();
    let patch = format!(
        "[gateway]\napproval_hold = \"1s\"\n[upstream.api]\nhttp = \"{}/v1\"\nsecret_header = {{ X-Api-Key = \"@{}\" }}\nroutes = [\n  {{ method = \"GET\", path = \"/items/*\", action = \"get_item\" }},\n  {{ method = \"DELETE\", path = \"/items/*\", action = \"delete_item\" }},\n  {{ method = \"POST\", path = \"/items\", action = \"create_item\" }},\n]\n",
        fake.url,
        key_file.display()
    );
    let s = Server::start_with(true, &patch);
    std::mem::forget(dir);
    (s, home_key)
}

/// Registers agent:reader, which may call `api:get_item` on the `api` upstream.
fn create_reader(s: &Server) {
    s.ok(&[
        "agent",
        "create",
        "reader",
        "--scopes",
        "api:get_item",
        "--audiences",
        "http:api",
    ]);
}

#[test]
fn an_http_api_is_served_by_its_routes_with_the_same_scope_policy_and_injected_credentials() {
    let fake =
        common::fake::Fake::start(|req, _| (200, format!("{{\"served\":\"{}\"}}", req.path)));
    let (s, home_key) = api_server(&fake);
    create_reader(&s);
    s.ok(&[
        "agent",
        "create",
        "ops",
        "--scopes",
        "api:*",
        "--audiences",
        "http:api",
    ]);
    let reader = s.own_mandate("agent:reader", "api:get_item", "http:api");
    let ops = s.own_mandate("agent:ops", "api:*", "http:api");
    let get = |who: &str, m: &str, path: &str| s.get_dpop(path, who, m);
    // Allowed: forwarded below the base URL, with the upstream's key and none of the caller's.
    let (status, body) = get("agent:reader", &reader, "/http/api/items/7?full=1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/v1/items/7?full=1"), "{body}");
    let seen = fake.requests();
    let r = seen.last().unwrap();
    assert!(r.has_header("x-api-key", &home_key));
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k == "authorization" || k == "dpop"),
        "{:?}",
        r.headers
    );
    assert!(!body.contains(&home_key) && !s.log().contains(&home_key));
    // No route: refused, never forwarded.
    let before = fake.requests().len();
    let (status, _) = get("agent:reader", &reader, "/http/api/admin");
    assert_eq!(status, 404);
    // A path that could mean another one: refused (HTTP clients may normalise it first, into a
    // path no route matches; serve::plain_path's tests cover what arrives unnormalised).
    let (status, _) = get("agent:reader", &reader, "/http/api/items/%2e%2e");
    assert!(matches!(status, 400 | 404), "{status}");
    // An argument given twice could be read either way: refused; so are names in two cases and
    // method overrides.
    for path in [
        "/http/api/items/7?path=a&path=b",
        "/http/api/items/7?path=a&Path=b",
        "/http/api/items/7?_method=DELETE",
    ] {
        let (status, body) = get("agent:reader", &reader, path);
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert_eq!(
        fake.requests().len(),
        before,
        "nothing refused reached the API"
    );
    // Out of scope: 403 insufficient_scope naming the scope.
    let (status, _, body) = s.dpop_call("DELETE", "/http/api/items/7", "agent:reader", &reader);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("api:delete_item"), "{body}");
    // In scope, but destructive by name: held for approval, and not made while pending.
    let (status, _, body) = s.dpop_call("DELETE", "/http/api/items/7", "agent:ops", &ops);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("approval_required"), "{body}");
    assert!(
        body.contains("approval pending: delete_item on api"),
        "{body}"
    );
    assert_eq!(
        fake.requests().len(),
        before,
        "nothing refused reached the API"
    );
    let events = s.event_bodies();
    assert!(events
        .iter()
        .any(|e| e.contains("\"action\":\"http.GET\"")
            && e.contains("\"resource\":\"api/get_item\"")));
}

#[test]
fn an_http_api_request_the_upstream_could_read_otherwise_is_refused_and_never_forwarded() {
    let fake =
        common::fake::Fake::start(|req, _| (200, format!("{{\"served\":\"{}\"}}", req.path)));
    let (s, _) = api_server(&fake);
    s.ok(&[
        "agent",
        "create",
        "ops",
        "--scopes",
        "api:*",
        "--audiences",
        "http:api",
    ]);
    let ops = s.own_mandate("agent:ops", "api:*", "http:api");
    let send = |method: &str, path: &str, content_type: &str, body: Option<&[u8]>| {
        let (status, _, text) = s.dpop_send(
            method,
            path,
            "agent:ops",
            &ops,
            &[("content-type", content_type)],
            body.map(<[u8]>::to_vec),
        );
        (status, text)
    };
    let body: &[u8] = br#"{"name":"seven"}"#;
    // JSON labelled as text: the upstream reads it by the type forwarded, not as the policy did.
    let (status, text) = send("POST", "/http/api/items", "text/plain", Some(body));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Content-Type: application/json"), "{text}");
    // A GET is decided on its query alone: a body would reach the upstream undecided.
    let (status, text) = send("GET", "/http/api/items/7", "application/json", Some(body));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("no body"), "{text}");
    // Bracketed query names are arrays or nested keys to many upstreams.
    for path in ["/http/api/items/7?path[]=a", "/http/api/items/7?a%5Bb%5D=c"] {
        let (status, text) = send("GET", path, "application/json", None);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("'[' or ']'"), "{path}: {text}");
    }
    // Methods are case-sensitive: `get` is not the GET route; a leading `//` is an empty segment.
    let (status, text) = send("get", "/http/api/items/7", "application/json", None);
    assert_eq!(status, 404, "{text}");
    let (status, text) = send("GET", "/http/api//items/7", "application/json", None);
    assert_eq!(status, 400, "{text}");
    // Each refusal of this authenticated caller is on record (outside attack): not one was lost.
    let events = s.event_bodies();
    let refused = |label: &str, code: &str| {
        events
            .iter()
            .filter(|e| {
                e.contains(&format!("\"action\":\"{label}\""))
                    && e.contains("\"result\":\"refused\"")
                    && e.contains(code)
            })
            .count()
    };
    assert_eq!(refused("http.get", "not_found"), 1, "{events:?}");
    assert_eq!(
        refused("http.GET", "invalid_request") + refused("http.POST", "invalid_request"),
        5,
        "{events:?}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing refused reached the API: {:?}",
        fake.requests()
    );
    // The same body sent as JSON is decided and forwarded as it came.
    let (status, text) = send("POST", "/http/api/items", "application/json", Some(body));
    assert_eq!(status, 200, "{text}");
    let posted = fake.with_method("POST");
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0].body.as_bytes(), body);
}

#[test]
fn a_secret_file_swapped_for_a_link_to_the_servers_keys_is_never_sent() {
    // The outside attack's case: the file is harmless when configured, then replaced by a link to
    // a key of the server's own; the next call must fail, not carry the key to the upstream.
    let fake = common::fake::Fake::start(|_, _| (200, "{}".into()));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "harmless\n").unwrap();
    let patch = format!(
        "[upstream.api]\nhttp = \"{}/v1\"\nsecret_header = {{ X-Api-Key = \"@{}\" }}\nroutes = [\n  {{ method = \"GET\", path = \"/items/*\", action = \"get_item\" }},\n]\n",
        fake.url,
        key_file.display()
    );
    let s = Server::start_with(true, &patch);
    create_reader(&s);
    let reader = s.own_mandate("agent:reader", "api:get_item", "http:api");
    let (status, body) = s.get_dpop("/http/api/items/1", "agent:reader", &reader);
    assert_eq!(status, 200, "{body}");
    let before = fake.requests().len();
    let hmac = s.home().join("server/issuer-keys/audit-hmac.key");
    let secret = std::fs::read_to_string(&hmac).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    std::os::unix::fs::symlink(&hmac, &key_file).unwrap();
    let (status, body) = s.get_dpop("/http/api/items/2", "agent:reader", &reader);
    assert!(status >= 500, "{status}: {body}");
    assert!(!body.contains(secret.trim()), "{body}");
    assert_eq!(
        fake.requests().len(),
        before,
        "the call never left the gateway"
    );
    // A hard link to it is refused the same way (where both are on one file system).
    std::fs::remove_file(&key_file).unwrap();
    if std::fs::hard_link(&hmac, &key_file).is_ok() {
        let (status, _) = s.get_dpop("/http/api/items/3", "agent:reader", &reader);
        assert!(status >= 500, "{status}");
        assert_eq!(
            fake.requests().len(),
            before,
            "the call never left the gateway"
        );
    }
    assert!(!s.log().contains(secret.trim()));
}

#[test]
fn an_unknown_protocol_revision_is_400_and_a_body_that_is_not_json_415() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let list =
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).unwrap();
    let send = |headers: &[(&str, &str)]| {
        s.dpop_send("POST", DEMO, "agent:coder", &m, headers, Some(list.clone()))
    };
    let (status, _, body) = send(&[
        ("content-type", "application/json"),
        ("mcp-protocol-version", "1999-01-01"),
    ]);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("unsupported MCP-Protocol-Version \\\"1999-01-01\\\"")
            && body.contains("2025-11-25"),
        "{body}"
    );
    let (status, _, body) = send(&[("content-type", "text/plain")]);
    assert_eq!(status, 415, "{body}");
    assert!(
        body.contains("Content-Type must be application/json"),
        "{body}"
    );
    // Every revision the gateway knows, with a charset, passes.
    for v in ["2025-06-18", "2025-11-25", "2026-07-28"] {
        let (status, _, body) = send(&[
            ("content-type", "application/json; charset=utf-8"),
            ("mcp-protocol-version", v),
        ]);
        assert_eq!(status, 200, "{v}: {body}");
    }
    let events = s.event_bodies();
    assert!(events
        .iter()
        .any(|e| e.contains("unsupported_protocol_version")));
    assert!(events.iter().any(|e| e.contains("unsupported_media_type")));
}

#[test]
fn a_list_whose_upstream_cannot_be_reached_is_recorded_as_failed_with_the_reason() {
    // Nothing listens on the discard port of loopback: the connection is refused.
    let s = Server::start_with(true, "[upstream.dead]\nurl = \"http://127.0.0.1:9/mcp\"\n");
    s.ok(&[
        "agent",
        "create",
        "lister",
        "--scopes",
        "dead:*",
        "--audiences",
        "mcp:dead",
    ]);
    let m = s.own_mandate("agent:lister", "dead:*", "mcp:dead");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, body) = s.post_json_dpop("/mcp/dead", "agent:lister", &m, &list);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("upstream dead could not be reached"),
        "{body}"
    );
    // The gateway's own error answers the request's id.
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["id"],
        1,
        "{body}"
    );
    let failed: Vec<Value> = s
        .event_bodies()
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter(|e| e["principal"] == "agent:lister" && e["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["action"], "mcp.tools/list", "{}", failed[0]);
    assert_eq!(
        failed[0]["reasons"],
        json!(["the upstream could not be reached"]),
        "{}",
        failed[0]
    );
    assert!(
        failed[0]["details"]["call_event"].is_string(),
        "{}",
        failed[0]
    );
}

#[test]
fn a_call_in_flight_when_its_agent_is_revoked_gets_no_answer_from_the_upstream() {
    let fake = common::fake::Fake::start(|req, _| {
        if req.path.ends_with("/slow") {
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        (200, "{\"served\":\"late\"}".into())
    });
    let (s, _) = api_server(&fake);
    create_reader(&s);
    let reader = s.own_mandate("agent:reader", "api:get_item", "http:api");
    let started = std::time::Instant::now();
    let ((status, body), revoked_at) = std::thread::scope(|t| {
        let revoker = t.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            s.ok(&["revoke", "agent", "reader"]);
            started.elapsed()
        });
        let answer = s.get_dpop("/http/api/items/slow", "agent:reader", &reader);
        (answer, revoker.join().unwrap())
    });
    let answered_at = started.elapsed();
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("revoked while the call was in flight"),
        "{body}"
    );
    assert!(!body.contains("late"), "{body}");
    assert!(
        answered_at < revoked_at + std::time::Duration::from_millis(1500),
        "answered {answered_at:?}, revoked {revoked_at:?}"
    );
    // The call reached the upstream, and the log says its answer was withheld.
    assert_eq!(fake.requests().len(), 1);
    let events = s.event_bodies();
    assert!(
        events.iter().any(|e| e.contains("\"result\":\"failed\"")
            && e.contains("answer was withheld")
            && e.contains("api/get_item")),
        "{events:?}"
    );
}

#[test]
fn an_http_api_that_echoes_its_injected_key_does_not_hand_it_to_the_agent() {
    let fake = common::fake::Fake::start(|req, _| {
        let key = req
            .headers
            .iter()
            .find(|(k, _)| k == "x-api-key")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        (
            500,
            format!("{{\"error\":\"key {key} is not valid here\"}}"),
        )
    });
    let (s, home_key) = api_server(&fake);
    create_reader(&s);
    let reader = s.own_mandate("agent:reader", "api:get_item", "http:api");
    let (status, body) = s.get_dpop("/http/api/items/7", "agent:reader", &reader);
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, "{\"error\":\"key [redacted] is not valid here\"}");
    // The upstream did get it, asked for an uncompressed answer (so that it can be scrubbed).
    let seen = fake.requests();
    let r = seen.last().unwrap();
    assert!(r.has_header("x-api-key", &home_key));
    assert!(r.has_header("accept-encoding", "identity"));
}

#[test]
fn a_request_whose_mandate_is_revoked_while_its_body_arrives_is_not_forwarded() {
    use std::io::{Read, Write};
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes demo:read_note", "mcp:demo");
    let url = format!("{}{DEMO}", s.url);
    let proof = mandate_core::dpop::make_proof(
        &s.key("agent:coder"),
        "POST",
        &url,
        common::now(),
        &common::random_id(),
        Some(&m),
    );
    let body = call("read_note", json!({"name": "welcome"})).to_string();
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST {DEMO} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: DPoP {m}\r\nDPoP: {proof}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Headers (authenticated when they arrive) and the first bytes of the body; then the agent
    // is revoked; then the rest of the body.
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.ok(&["revoke", "agent", "coder"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    sock.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    let _ = sock.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("while the request's body was arriving, so nothing was forwarded"),
        "{answer}"
    );
    assert!(!answer.contains("demo notes"), "{answer}");
    let events = s.event_bodies();
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"action\":\"mcp.request\"") && e.contains("invalid_token")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.contains("\"action\":\"mcp.tools/call\"")),
        "the call was judged: {events:?}"
    );
}
