//! The audit log against the running server: what gets recorded, the delegation tree it shows,
//! failing closed when the log cannot be written, and surviving `kill -9`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{assert_token, jwt_payload, Proof, Server, GITHUB};
use serde_json::Value;

/// Runs `audit verify` until every event is in a checkpoint (the integrator signs one within a
/// second), and returns its JSON report.
fn verified(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = s.cli(&["--json", "audit", "verify"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let tail = v["unchecked_tail"].as_u64().unwrap_or(0);
            if out.status.success() && tail == 0 {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "audit verify did not pass: {}",
            common::describe(&["audit", "verify"], &out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn events(s: &Server, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "audit", "query", "--limit", "1000"];
    all.extend_from_slice(args);
    let v = s.ok_json(&all);
    v.as_array()
        .unwrap_or_else(|| panic!("query gives an array: {v}"))
        .iter()
        .map(|e| e.get("event").cloned().unwrap_or_else(|| e.clone()))
        .collect()
}

#[test]
fn the_chain_alice_planner_coder_is_recorded_and_shown_as_a_delegation_tree() {
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
    let coder_jti = jwt_payload(&coder_tok)["jti"].as_str().unwrap().to_string();
    let planner_jti = jwt_payload(&planner_tok)["jti"]
        .as_str()
        .unwrap()
        .to_string();

    let exchanged = events(&s, &["--party", "agent:coder", "--kind", "token.exchanged"]);
    let ev = exchanged
        .iter()
        .find(|e| e["jti"] == coder_jti.as_str())
        .unwrap_or_else(|| panic!("no event for the coder's mandate: {exchanged:?}"));
    assert_eq!(
        ev["chain"],
        serde_json::json!(["user:alice", "agent:planner", "agent:coder"])
    );
    assert_eq!(ev["principal"], "agent:planner");
    assert_eq!(ev["decision"], "allow");
    assert!(
        ev["decision_id"].is_string() && ev["policy_version"].is_string(),
        "{ev}"
    );
    assert_eq!(ev["details"]["scope"], "github:pulls.write");
    assert_eq!(ev["details"]["parent_jti"], planner_jti.as_str());
    assert_eq!(ev["details"]["depth"], 2);
    // The planner's delegation carries its reason.
    let planner_ev = events(
        &s,
        &["--party", "agent:planner", "--kind", "token.exchanged"],
    )
    .into_iter()
    .find(|e| e["jti"] == planner_jti.as_str())
    .expect("planner's event");
    assert_eq!(planner_ev["details"]["reason"], "fix the flaky test");
    // No token ever appears in the log.
    let export = s.ok(&["audit", "export", "--format", "jsonl"]);
    assert!(!export.contains(&coder_tok) && !export.contains(&planner_tok));
    assert!(!export.contains(coder_tok.split('.').nth(2).unwrap()));

    // `audit show` draws the chain root first, each hop indented under the previous one.
    let id = ev["id"].as_str().unwrap();
    let shown = s.ok(&["audit", "show", id]);
    let lines: Vec<&str> = shown.lines().collect();
    let at = |who: &str| {
        lines
            .iter()
            .position(|l| {
                l.trim_start_matches([' ', '│', '└', '├', '─'])
                    .starts_with(who)
            })
            .unwrap_or_else(|| panic!("{who} is not a line of the tree:\n{shown}"))
    };
    let (a, p, c) = (at("user:alice"), at("agent:planner"), at("agent:coder"));
    assert!(a < p && p < c, "tree out of order:\n{shown}");
    let indent = |i: usize| {
        lines[i]
            .chars()
            .take_while(|ch| !ch.is_alphanumeric())
            .count()
    };
    assert!(
        indent(a) < indent(p) && indent(p) < indent(c),
        "not a tree:\n{shown}"
    );

    // Its inclusion proof verifies offline, and the whole log verifies.
    verified(&s);
    let proof = s.ok_json(&["audit", "proof", id]);
    assert!(
        proof["inclusion_proof"].is_array() && proof["checkpoint"].is_string(),
        "{proof}"
    );
}

#[test]
fn refusals_admin_changes_and_revocations_are_recorded_with_reason_codes() {
    let s = Server::demo();
    // A scope beyond the planner's ceiling: invalid_scope.
    let out = s.cli(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "deploy:production",
    ]);
    assert!(!out.status.success());
    let refused = events(&s, &["--kind", "token.refused"]);
    assert!(
        refused.iter().any(|e| e["error"] == "invalid_scope"
            && e["principal"] == "user:alice"
            && e["result"] == "refused"),
        "{refused:?}"
    );
    s.ok(&[
        "agent",
        "create",
        "auditor-probe",
        "--scopes",
        "github:contents.read",
        "--audiences",
        GITHUB,
    ]);
    let changes = events(&s, &["--action", "principal.*"]);
    assert!(
        changes.iter().any(|e| e["action"] == "principal.create"
            && e["resource"] == "agent:auditor-probe"
            && e["principal"] == "user:admin"),
        "{changes:?}"
    );
    s.ok(&["revoke", "agent", "auditor-probe"]);
    let revoked = events(&s, &["--kind", "revocation"]);
    assert!(
        revoked
            .iter()
            .any(|e| e["resource"] == "auditor-probe" || e["resource"] == "agent:auditor-probe"),
        "{revoked:?}"
    );
    verified(&s);
}

/// Makes every insert into the audit log fail (as a full disk or a broken database would).
fn break_audit_log(s: &Server, broken: bool) {
    s.sql(&[if broken {
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END;"
        } else {
            "DROP TRIGGER audit_broken;"
        }],
    );
}

#[test]
fn nothing_is_issued_or_changed_when_the_audit_log_cannot_be_written() {
    let s = Server::demo();
    break_audit_log(&s, true);
    // Token issuance: refused, nothing handed out.
    let resp = s.as_client(
        "agent:planner",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "github:contents.read"),
            ("audience", GITHUB),
        ],
        Proof::Own,
    );
    assert_eq!(resp.0, 500, "{resp:?}");
    assert_eq!(resp.1["error"], "server_error", "{resp:?}");
    assert!(resp.1.get("access_token").is_none(), "{resp:?}");
    // An admin change: refused, and not made.
    let out = s.cli(&[
        "agent",
        "create",
        "never-made",
        "--scopes",
        "github:contents.read",
        "--audiences",
        GITHUB,
    ]);
    assert!(
        !out.status.success(),
        "{}",
        common::describe(&["agent", "create"], &out)
    );
    break_audit_log(&s, false);
    let out = s.cli(&["agent", "show", "never-made"]);
    assert!(
        !out.status.success(),
        "the change was made without its audit event"
    );
    // Once the log can be written again, everything works and verifies.
    let resp = s.as_client(
        "agent:planner",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "github:contents.read"),
            ("audience", GITHUB),
        ],
        Proof::Own,
    );
    assert_token(&resp);
    verified(&s);
}

#[test]
fn every_answered_issuance_survives_kill_9_and_the_log_verifies_after_restart() {
    let mut s = Server::demo();
    let pid = s.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill -9");
    });
    // Load from other processes too: CLI delegations (alice -> planner) running concurrently.
    let cli_load: Vec<_> = (0..3)
        .map(|_| {
            let home = s.home().to_path_buf();
            std::thread::spawn(move || {
                let mut jtis = vec![];
                let args = [
                    "delegate",
                    "--as",
                    "user:alice",
                    "--to",
                    "planner",
                    "--aud",
                    GITHUB,
                    "--scope",
                    "github:contents.read",
                ];
                loop {
                    let out = common::mandate(&home, &args);
                    if !out.status.success() {
                        return jtis;
                    }
                    let tok = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    jtis.push(jwt_payload(&tok)["jti"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    let mut answered: Vec<String> = vec![];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let Ok(resp) = s.try_as_client(
            "agent:planner",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "github:contents.read"),
                ("audience", GITHUB),
            ],
        ) else {
            break;
        };
        let tok = assert_token(&resp);
        answered.push(jwt_payload(&tok)["jti"].as_str().unwrap().to_string());
    }
    killer.join().unwrap();
    let direct = answered.len();
    for t in cli_load {
        answered.extend(t.join().unwrap());
    }
    assert!(
        direct > 10 && answered.len() > direct,
        "too few requests before the kill: {}",
        answered.len()
    );
    s.restart_after_kill();
    let export = s.ok(&["audit", "export", "--format", "jsonl"]);
    let recorded: HashSet<String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event")
        .filter(|v| v["event"]["kind"] == "token.issued" || v["event"]["kind"] == "token.exchanged")
        .filter_map(|v| v["event"]["jti"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|j| !recorded.contains(*j)).collect();
    assert!(
        missing.is_empty(),
        "{} answered issuances have no event: {missing:?}",
        missing.len()
    );
    let report = verified(&s);
    assert!(
        report["events"].as_u64().unwrap() >= answered.len() as u64,
        "{report}"
    );
}

/// alice -> planner, then waits until the log verifies with every event checkpointed.
fn delegate_alice_to_planner_and_verify(s: &Server) {
    s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        "github:contents.read",
    ]);
    verified(s);
}

#[test]
fn deleting_the_checkpoints_to_hide_a_rewrite_is_caught_and_the_server_refuses_to_extend_it() {
    let s = Server::demo();
    delegate_alice_to_planner_and_verify(&s);
    // Stop the server, then rewrite history and remove every trace the database held of it.
    std::process::Command::new("kill")
        .args(["-9", &s.pid().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.sql(&[
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_nodes",
            "UPDATE audit_events SET body = replace(body, 'user:alice', 'user:bob') WHERE kind = 'token.exchanged'",
        ],
    );
    let out = s.cli(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        common::describe(&["audit", "verify"], &out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED at checkpoint") && text.contains("audit-checkpoint"),
        "{text}"
    );
    // The server will not sign a rewritten log.
    let mut child = std::process::Command::new(common::bin())
        .args(["serve"])
        .env("MANDATE_HOME", s.home())
        .env("HOME", s.home())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started on a rewritten audit log");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("refusing to serve"), "{err}");
    // The fixture reaps the killed child on drop.
    drop(s);
}

#[test]
fn an_export_with_its_checkpoints_stripped_does_not_verify() {
    let s = Server::demo();
    delegate_alice_to_planner_and_verify(&s);
    let export = s.ok(&["audit", "export", "--format", "jsonl"]);
    let header: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    let key = header["verifier_keys"][0].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.jsonl");
    std::fs::write(&whole, &export).unwrap();
    let ok = s.cli(&[
        "audit",
        "verify",
        "--file",
        whole.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        common::describe(&["audit", "verify"], &ok)
    );
    let stripped: String = export
        .lines()
        .filter(|l| !l.contains("\"type\":\"checkpoint\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.path().join("stripped.jsonl");
    std::fs::write(&path, stripped).unwrap();
    let out = s.cli(&[
        "audit",
        "verify",
        "--file",
        path.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        common::describe(&["audit", "verify"], &out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not covered by any signed checkpoint"));
}
