//! Amplification: what one request can make the authority write, hold or compute.

use serde_json::{json, Value};

use crate::common::{assert_oauth_error, Server, GITHUB};

/// One AuthZEN evaluation of `tool` on the github server for `subject`.
pub fn evaluation(subject: Value, tool: &str, arguments: Value) -> Value {
    json!({
        "subject": subject,
        "resource": {"type": "mcp_tool", "id": tool, "properties": {"server": "github"}},
        "action": {"name": "tools/call", "properties": {"arguments": arguments}},
    })
}

#[test]
fn the_pdp_scope_is_never_implied_by_a_star_ceiling() {
    let s = Server::demo();
    // Every user's ceiling is `*`; it no longer includes Mandate's own privileges.
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", "mandate:pdp"),
        ("audience", s.url.as_str()),
    ];
    let r = s.as_client("user:alice", &params, crate::common::Proof::Own);
    assert_oauth_error(&r, "invalid_scope");
    assert!(
        r.1["error_description"]
            .as_str()
            .unwrap()
            .contains("explicitly"),
        "{}",
        r.1
    );
    // Named explicitly in a ceiling, it is granted (and the admin holds it by role).
    s.pep();
    s.own_mandate("user:admin", "mandate:pdp", &s.url);
    // A ceiling cannot grant the admin scope or a wildcard over Mandate's namespace.
    for scopes in ["mandate:admin", "mandate:*"] {
        let out = s.cli(&["agent", "create", "sneaky", "--scopes", scopes]);
        assert!(!out.status.success(), "{scopes} in a ceiling was accepted");
    }
}

#[test]
fn a_maximal_decision_batch_adds_one_bounded_event() {
    let s = Server::demo();
    let (who, m) = s.pep();
    let chain: Vec<String> = (0..17).map(|i| format!("agent:a{i:03}")).collect();
    let subject = json!({"type": "agent", "id": "agent:a016", "properties": {"chain": chain}});
    let big = "x".repeat(700);
    let items: Vec<Value> = (0..64)
        .map(|i| json!({"resource": {"type": "mcp_tool", "id": format!("tool_{i}"), "properties": {"server": "github"}},
                         "action": {"name": "tools/call", "properties": {"arguments": {"blob": big}}}}))
        .collect();
    let batch = json!({"subject": subject, "action": {"name": "tools/call"}, "evaluations": items});
    let body_len = serde_json::to_vec(&batch).unwrap().len();
    assert!(
        body_len > 48 * 1024,
        "the batch is near the 64 KiB body limit ({body_len})"
    );
    let (events0, bytes0) = (
        s.db_i64("SELECT COUNT(*) FROM audit_events"),
        s.db_i64("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM audit_events"),
    );
    let (code, _, text) = s.post_json_dpop("/access/v1/evaluations", &who, &m, &batch);
    assert_eq!(code, 200, "{text}");
    let answers: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answers["evaluations"].as_array().unwrap().len(), 64);
    let events = s.db_i64("SELECT COUNT(*) FROM audit_events") - events0;
    let bytes = s.db_i64("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM audit_events") - bytes0;
    assert_eq!(events, 1, "one batch, one event");
    assert!(bytes <= 16 * 1024, "the batch's event is {bytes} bytes");

    // Over the bounds: refused before anything is decided or written.
    let mut too_many = batch.clone();
    too_many["evaluations"] = json!(vec![
        json!({"resource": {"type": "mcp_tool", "id": "t", "properties": {"server": "github"}}});
        65
    ]);
    let (code, _, text) = s.post_json_dpop("/access/v1/evaluations", &who, &m, &too_many);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("at most 64"), "{text}");
    let long: Vec<String> = (0..18).map(|i| format!("agent:a{i}")).collect();
    let one = evaluation(
        json!({"type": "agent", "id": "agent:x", "properties": {"chain": long}}),
        "t",
        json!({}),
    );
    let (code, _, text) = s.post_json_dpop("/access/v1/evaluation", &who, &m, &one);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("at most 17"), "{text}");
}

#[test]
fn a_mandate_is_never_issued_over_the_verifiers_size_limit() {
    let s = Server::demo();
    // 1,500 scopes made a 21 KB mandate that no verifier accepts; now refused at issuance.
    let scopes: Vec<String> = (0..1500).map(|i| format!("github:scope.{i:04}")).collect();
    let scopes = scopes.join(" ");
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", scopes.as_str()),
        ("audience", GITHUB),
    ];
    let r = s.as_client("user:alice", &params, crate::common::Proof::Own);
    assert_oauth_error(&r, "invalid_scope");
    // Scopes that fit the count but not the size are refused too.
    let long: Vec<String> = (0..120)
        .map(|i| format!("github:{}{i:03}", "s".repeat(190)))
        .collect();
    let long = long.join(" ");
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", long.as_str()),
        ("audience", GITHUB),
    ];
    let r = s.as_client("user:alice", &params, crate::common::Proof::Own);
    assert_oauth_error(&r, "invalid_scope");
    assert!(
        r.1["error_description"].as_str().unwrap().contains("bytes"),
        "{}",
        r.1
    );
}

#[test]
fn a_request_head_over_64_kib_is_refused_with_431() {
    use std::io::{Read, Write};
    let s = Server::demo();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let mut head = b"GET /oauth2/jwks HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..90 {
        head.extend_from_slice(format!("X-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    c.write_all(&head).unwrap();
    let mut answer = [0u8; 64];
    let n = c.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

/// Sends `batch` to the decision point `count` times in a row, from a thread of its own, and
/// gives how long each answer took.
fn send_batches(
    s: &Server,
    who: &str,
    m: &str,
    batch: &Value,
    count: usize,
) -> std::thread::JoinHandle<Vec<std::time::Duration>> {
    let (url, key, m, batch) = (s.url.clone(), s.key(who), m.to_string(), batch.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = reqwest::Client::new();
            let mut took = vec![];
            for _ in 0..count {
                let target = format!("{url}/access/v1/evaluations");
                let proof = mandate_core::dpop::make_proof(
                    &key,
                    "POST",
                    &target,
                    crate::common::now(),
                    &crate::common::random_id(),
                    Some(&m),
                );
                let t = std::time::Instant::now();
                let r = http
                    .post(&target)
                    .header("Authorization", format!("DPoP {m}"))
                    .header("DPoP", proof)
                    .json(&batch)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                took.push(t.elapsed());
            }
            took
        })
    })
}

/// The slowest of `count` JWKS requests, `pause` apart.
fn slowest_jwks(s: &Server, count: usize, pause: std::time::Duration) -> std::time::Duration {
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..count {
        let t = std::time::Instant::now();
        let (code, _) = s.get("/oauth2/jwks");
        assert_eq!(code, 200);
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(pause);
    }
    slowest
}

#[test]
fn an_enforcement_points_costliest_batches_do_not_stall_other_callers() {
    use std::time::Duration;
    let s = Server::demo();
    let (who, m) = s.pep();
    // Items whose arguments make every decision expensive (thousands of keys to scan, one of them
    // secret-looking), as many as a batch holds.
    let mut args = serde_json::Map::new();
    for i in 0..4000 {
        args.insert(format!("k{i:04}"), json!(1));
    }
    args.insert("token".into(), json!("t"));
    let item =
        json!({"resource": {"type": "mcp_tool", "id": "t", "properties": {"server": "github"}}});
    let batch = json!({
        "subject": {"type": "agent", "id": "agent:coder", "properties": {"scopes": ["github:*"]}},
        "action": {"name": "tools/call", "properties": {"arguments": args}},
        "evaluations": vec![item; 64],
    });
    // Baselines measured in this run on this machine, so that the bounds below scale with how
    // loaded it is: a stranger's request and one costly batch, each alone.
    let jwks_alone = slowest_jwks(&s, 10, Duration::from_millis(20));
    let batch_alone = send_batches(&s, &who, &m, &batch, 2)
        .join()
        .unwrap()
        .into_iter()
        .max()
        .unwrap();

    // The attack: two callers sending such batches back to back.
    let senders: Vec<_> = (0..2)
        .map(|_| send_batches(&s, &who, &m, &batch, 2))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile, a stranger's request is answered promptly.
    let slowest = slowest_jwks(&s, 10, Duration::from_millis(200));
    let measured = format!("(alone: a batch {batch_alone:?}, JWKS {jwks_alone:?})");
    for h in senders {
        for took in h.join().unwrap() {
            // One batch gets at most its evaluation budget, plus the wait for its turn (the other
            // caller's batch ahead of it in the FIFO lane): about twice a batch alone. Twice that
            // again, plus a second, still fails a batch made to wait for every other batch or
            // held past its budget, but not a machine that is slow for everyone.
            let bound = batch_alone * 4 + Duration::from_secs(1);
            assert!(
                took < bound,
                "a batch took {took:?}, over {bound:?} {measured}"
            );
        }
    }
    // Batches evaluate in a lane that leaves a core to everything else: a stranger waits a few
    // times its usual latency at most, never for a batch to finish (a batch alone takes far
    // longer than this bound unless the machine is idle and fast, where the floor holds it).
    let bound = jwks_alone * 10 + Duration::from_millis(500);
    assert!(
        slowest < bound,
        "JWKS took {slowest:?} meanwhile, over {bound:?} {measured}"
    );
}

#[test]
fn a_long_data_api_path_within_its_bounds_is_answered_with_one_event() {
    // Found by the second outside review: ten segments of 128 characters (within the documented
    // 32 x 128) made regorus refuse the query: a 500 echoing it, and two events.
    let s = Server::demo();
    let (who, m) = s.pep();
    let long = "a".repeat(128);
    let path = format!(
        "/v1/data/mandate/authz/decision/{}",
        [long.as_str(); 10].join("/")
    );
    let events0 = s.db_i64("SELECT COUNT(*) FROM audit_events");
    let (code, _, text) = s.post_json_dpop(&path, &who, &m, &json!({"input": {}}));
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v.get("result").is_none(), "undefined: {v}");
    // Wait out the refusal layer and the writer, then count.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(s.db_i64("SELECT COUNT(*) FROM audit_events") - events0, 1);
}
