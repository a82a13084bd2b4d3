//! Audit log retention against the real binary: `mandate audit archive` with the server stopped
//! verifies the log, writes it to a file that verifies offline, and starts a new log (own origin,
//! seq 1) whose first event names the old root; the server then serves and extends the new log,
//! which verifies. Archiving is refused while the server runs, and a tampered log is not archived.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_one_line_error, describe, Server, GITHUB};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Runs `audit verify --json` until every event is in a checkpoint; returns the report.
fn settled(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = s.cli(&["--json", "audit", "verify"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if out.status.success() && v["unchecked_tail"] == 0 {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "audit verify did not pass: {}",
            describe(&["audit", "verify"], &out)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn delegate(s: &Server, scope: &str) {
    s.ok(&[
        "delegate",
        "--as",
        "user:alice",
        "--to",
        "planner",
        "--aud",
        GITHUB,
        "--scope",
        scope,
    ]);
}

fn keys_dir(s: &Server) -> PathBuf {
    s.home().join("server").join("issuer-keys")
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The origins the checkpoints of an export name.
fn export_origins(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut origins: Vec<String> = vec![];
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "checkpoint" {
            let origin = v["note"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    origins
}

#[test]
fn an_archive_verifies_offline_and_the_new_log_starts_at_seq_1_naming_the_old_root() {
    let mut s = Server::demo();
    delegate(&s, "github:contents.read");
    delegate(&s, "github:pulls.write");
    let before = settled(&s);
    s.stop();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit-log-1.jsonl");
    let file_arg = file.to_str().unwrap();
    let keys = keys_dir(&s);
    let keys_arg = keys.to_str().unwrap().to_string();

    let out = s.ok_json(&["audit", "archive", "--out", file_arg]);
    // The server's final checkpoint on SIGTERM may cover events signed after `before`.
    let old_size = out["previous"]["size"].as_u64().unwrap();
    assert!(old_size >= before["events"].as_u64().unwrap(), "{out}");
    let old_root = out["previous"]["root"].as_str().unwrap().to_string();
    let host = format!("127.0.0.1:{}", s.port);
    assert_eq!(out["previous"]["log"], 1, "{out}");
    assert_eq!(out["previous"]["origin"], host, "{out}");
    assert_eq!(out["log"], 2, "{out}");
    assert_eq!(out["origin"], format!("{host}/log/2"), "{out}");
    assert_eq!(out["sha256"], sha256_hex(&file), "{out}");
    assert_eq!(common::mode(&file), 0o600);

    // The archive verifies offline, alone, with the issuer keys directory as the trust.
    let v = s.ok_json(&["audit", "verify", "--file", file_arg, "--key", &keys_arg]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["events"], old_size, "{v}");
    assert_eq!(v["root"], old_root.as_str(), "{v}");
    assert_eq!(export_origins(&file), vec![host.clone()]);
    // The old log's kept checkpoint was moved aside, named by log and size.
    assert!(!keys.join("audit-checkpoint").exists());
    assert!(keys
        .join(format!("audit-checkpoint.log1-{old_size}"))
        .exists());

    // The server accepts the new log and extends it; it verifies, under its own origin.
    s.start_again();
    delegate(&s, "github:contents.read");
    let after = settled(&s);
    assert_eq!(
        after["origins"],
        serde_json::json!([format!("{host}/log/2")])
    );
    assert!(after["events"].as_u64().unwrap() >= 2, "{after}");

    // Its first event chains it to the archive.
    let first = s.ok_json(&["audit", "show", "1"]);
    let ev = &first["event"];
    assert_eq!(first["seq"], 1, "{first}");
    assert_eq!(ev["kind"], "admin.change", "{ev}");
    assert_eq!(ev["action"], "audit.log_started", "{ev}");
    assert_eq!(ev["principal"], "local:archive", "{ev}");
    assert_eq!(ev["details"]["previous_root"], old_root.as_str(), "{ev}");
    assert_eq!(ev["details"]["previous_size"], old_size, "{ev}");
    assert_eq!(ev["details"]["archive_sha256"], out["sha256"], "{ev}");
    assert_eq!(
        ev["details"]["previous_checkpoint"], out["previous"]["checkpoint"],
        "{ev}"
    );
    let text = s.ok(&["audit", "show", "1"]);
    assert!(text.contains(&old_root), "{text}");

    // Archives are never overwritten; a second archive starts log 3, chained to log 2.
    s.stop();
    let args = ["audit", "archive", "--out", file_arg];
    let line = assert_one_line_error(&args, &s.cli(&args));
    assert!(line.contains("already exists"), "{line}");
    let file2 = dir.path().join("audit-log-2.jsonl");
    let out2 = s.ok_json(&["audit", "archive", "--out", file2.to_str().unwrap()]);
    assert_eq!(out2["log"], 3, "{out2}");
    assert_eq!(
        out2["previous"]["origin"],
        format!("{host}/log/2"),
        "{out2}"
    );
    let v = s.ok_json(&[
        "audit",
        "verify",
        "--file",
        file2.to_str().unwrap(),
        "--key",
        &keys_arg,
    ]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(export_origins(&file2), [format!("{host}/log/2")]);
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(&file2)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["origin"], format!("{host}/log/2"), "{header}");
    // Both archives still verify with the same keys directory (old note keys are kept).
    let v = s.ok_json(&["audit", "verify", "--file", file_arg, "--key", &keys_arg]);
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn archiving_while_the_server_runs_is_refused() {
    let s = Server::demo();
    delegate(&s, "github:contents.read");
    let before = settled(&s);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.jsonl");
    let args = ["audit", "archive", "--out", file.to_str().unwrap()];
    let line = assert_one_line_error(&args, &s.cli(&args));
    assert!(
        line.contains("server is running") && line.contains("serve.lock"),
        "{line}"
    );
    assert!(!file.exists(), "no archive is written");
    assert_eq!(settled(&s)["events"], before["events"]);
}

#[test]
fn a_tampered_log_is_not_archived_and_stays_as_it_was() {
    let mut s = Server::demo();
    delegate(&s, "github:contents.read");
    settled(&s);
    s.stop();
    s.sql(&["UPDATE audit_events SET body = replace(body, 'user:alice', 'user:bob') WHERE kind = 'token.exchanged'"],
    );
    let count = |s: &Server| {
        s.ok_json(&["audit", "query", "--limit", "100000"])
            .as_array()
            .unwrap()
            .len()
    };
    let events = count(&s);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.jsonl");
    let args = ["audit", "archive", "--out", file.to_str().unwrap()];
    let line = assert_one_line_error(&args, &s.cli(&args));
    assert!(
        line.contains("does not verify") && line.contains("FAILED"),
        "{line}"
    );
    assert!(!file.exists(), "no archive is written");
    assert_eq!(count(&s), events, "the log was not replaced");
    let keys = keys_dir(&s);
    assert!(keys.join("audit-checkpoint").exists());
    assert!(!keys.join("audit-log-number").exists());
}
