//! `mandate audit` against a log built without a server: events appended with the store's own
//! writer and integrated with a fresh checkpoint key, then read, proved, exported and verified
//! by the real binary; and every kind of tampering with the SQLite file (an edited event, a
//! deleted row, swapped rows, a deleted tail, an edited index) makes `audit verify` fail at the
//! right position.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{assert_one_line_error, describe, mandate};
use ed25519_dalek::SigningKey;
use mandate_audit::checkpoint::{self, Checkpoint};
use mandate_audit::event::{self, Event};
use mandate_store::{AuditRecord, Integrator, Store};
use serde_json::{json, Value};
use tempfile::TempDir;

const ISSUER: &str = "https://auth.audit.test";
const ORIGIN: &str = "auth.audit.test";
const HMAC_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A MANDATE_HOME whose server config points at a database holding a log of `events.len()`
/// events, checkpointed every `every` events (and at the end unless `unsigned_tail`).
struct Log {
    home: TempDir,
    key: SigningKey,
    /// Event ids in log order.
    ids: Vec<String>,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn now_ms() -> i64 {
    common::now() * 1000
}

/// The i-th event of the fixture: alternately issuances by alice, delegations alice -> planner
/// -> coder, and refusals; one minute apart, the last one a minute ago.
fn sample_event(i: usize, n: usize) -> Event {
    let ms = now_ms() - (n - i) as i64 * 60_000;
    let mut e = Event {
        id: event::new_event_id(ms as u64, rand::random()),
        time: event::rfc3339_millis(ms),
        result: "ok".into(),
        ..Event::default()
    };
    match i % 3 {
        0 => {
            e.kind = "token.issued".into();
            e.principal = "user:alice".into();
            e.chain = vec!["user:alice".into()];
            e.action = "token.client_credentials".into();
            e.decision = Some("allow".into());
        }
        1 => {
            e.kind = "token.exchanged".into();
            e.principal = "agent:planner".into();
            e.chain = vec![
                "user:alice".into(),
                "agent:planner".into(),
                "agent:coder".into(),
            ];
            e.action = "token.exchange".into();
            e.resource = Some("https://api.github.com".into());
            e.decision = Some("allow".into());
            e.reasons = vec!["planner may delegate pull requests to coder".into()];
            e.policy_version = Some("sha256:abc".into());
            e.jti = Some(format!("jti-{i}"));
            e.details.insert("depth".into(), json!(2));
            e.details
                .insert("scope".into(), json!("github:pulls.write"));
        }
        _ => {
            e.kind = "token.refused".into();
            e.principal = "agent:coder".into();
            e.chain = vec!["agent:coder".into()];
            e.action = "token.exchange".into();
            e.decision = Some("deny".into());
            e.result = "refused".into();
            e.error = Some("invalid_scope".into());
            e.reasons = vec!["scope github:admin is beyond the ceiling".into()];
        }
    }
    e
}

fn record(e: &Event) -> AuditRecord {
    AuditRecord::from_event(e)
}

async fn integrate(store: &Store, key: &SigningKey) {
    let mut integrator = Integrator::new();
    while integrator
        .step(store, now_ms(), |size, root| {
            let body = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root: *root,
                extensions: vec![],
            }
            .body();
            checkpoint::sign(&body, ORIGIN, key).map_err(|e| e.to_string())
        })
        .await
        .expect("integrate")
        .is_some()
    {}
}

impl Log {
    fn build(n: usize, every: usize, unsigned_tail: usize) -> Log {
        let home = tempfile::tempdir().expect("tempdir");
        let server = home.path().join("server");
        std::fs::create_dir_all(server.join("issuer-keys")).unwrap();
        std::fs::write(
            server.join("server.toml"),
            format!("listen = \"127.0.0.1:1\"\nissuer = \"{ISSUER}\"\ndatabase = \"mandate.db\"\nissuer_keys = \"issuer-keys\"\n"),
        )
        .unwrap();
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let events: Vec<Event> = (0..n).map(|i| sample_event(i, n)).collect();
        rt().block_on(async {
            let store = Store::open_sqlite(&server.join("mandate.db"))
                .await
                .unwrap();
            for (i, e) in events.iter().enumerate() {
                store.audit(record(e)).await.expect("append");
                if (i + 1) % every == 0 && i < n - unsigned_tail {
                    integrate(&store, &key).await;
                }
            }
            if unsigned_tail == 0 {
                integrate(&store, &key).await;
            }
        });
        let keys = server.join("issuer-keys");
        std::fs::write(
            keys.join("audit-note-keys"),
            format!(
                "{}\n",
                checkpoint::verifier_key(ORIGIN, &key.verifying_key())
            ),
        )
        .unwrap();
        std::fs::write(keys.join("audit-hmac.key"), HMAC_KEY).unwrap();
        Log {
            home,
            key,
            ids: events.into_iter().map(|e| e.id).collect(),
        }
    }

    fn db(&self) -> PathBuf {
        self.home.path().join("server/mandate.db")
    }

    fn cli(&self, args: &[&str]) -> Output {
        mandate(self.home.path(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "{}", describe(args, &out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The checkpoint key as a bare public key (base64 of the raw 32 bytes).
    fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    fn sql(&self, statements: &[&str]) {
        let db = self.db();
        rt().block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("open the database");
            for s in statements {
                sqlx::query(s).execute(&mut c).await.expect(s);
            }
            c.close().await.unwrap();
        });
    }

    /// Runs `audit verify` expecting a failure verdict; returns the FAILED line.
    fn verify_fails(&self, extra: &[&str]) -> String {
        let mut args = vec!["audit", "verify"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
        let stdout = String::from_utf8(out.stdout.clone()).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{}", describe(&args, &out));
        assert!(
            lines[0].starts_with("FAILED at "),
            "{}",
            describe(&args, &out)
        );
        lines[0].to_string()
    }
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn query_filters_by_principal_party_action_kind_decision_result_and_time() {
    let log = Log::build(12, 4, 0);
    let all = log.ok_json(&["audit", "query"]);
    assert_eq!(ids_of(&all), log.ids, "all events, in log order");
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(all[0]["index"], 0);
    let by = |args: &[&str]| {
        let mut a = vec!["audit", "query"];
        a.extend_from_slice(args);
        ids_of(&log.ok_json(&a))
    };
    let pick = |f: fn(usize) -> bool| -> Vec<String> {
        (0..12)
            .filter(|i| f(*i))
            .map(|i| log.ids[i].clone())
            .collect()
    };
    // A bare name is an agent.
    assert_eq!(by(&["--principal", "planner"]), pick(|i| i % 3 == 1));
    assert_eq!(by(&["--principal", "user:alice"]), pick(|i| i % 3 == 0));
    // Anyone in the chain.
    assert_eq!(by(&["--party", "agent:coder"]), pick(|i| i % 3 != 0));
    assert_eq!(by(&["--party", "user:alice"]), pick(|i| i % 3 != 2));
    assert_eq!(by(&["--action", "token.ex*"]), pick(|i| i % 3 != 0));
    assert_eq!(
        by(&["--action", "token.client_credentials"]),
        pick(|i| i % 3 == 0)
    );
    assert_eq!(by(&["--kind", "token.refused"]), pick(|i| i % 3 == 2));
    assert_eq!(by(&["--decision", "deny"]), pick(|i| i % 3 == 2));
    assert_eq!(
        by(&["--result", "ok", "--party", "agent:coder"]),
        pick(|i| i % 3 == 1)
    );
    // One event a minute, the last one a minute ago.
    assert_eq!(by(&["--since", "270s"]), log.ids[8..].to_vec());
    assert_eq!(by(&["--until", "270s"]), log.ids[..8].to_vec());
    let since = event::rfc3339_millis(now_ms() - 150_000);
    assert_eq!(by(&["--since", &since]), log.ids[10..].to_vec());
    assert_eq!(
        by(&["--limit", "2"]),
        log.ids[10..].to_vec(),
        "the newest ones"
    );
    // The table has a header and one line per event.
    let table = log.ok(&["audit", "query", "--kind", "token.refused"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("REASONS"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[1].contains("refused (invalid_scope)") && lines[1].contains("beyond the ceiling"),
        "{table}"
    );
    // Bad values are one-line errors.
    for args in [
        &["audit", "query", "--since", "yesterday"][..],
        &["audit", "query", "--principal", "robot:x"],
    ] {
        let line = assert_one_line_error(args, &log.cli(args));
        assert!(
            line.contains("--since") || line.contains("principal"),
            "{line}"
        );
    }
}

#[test]
fn the_4m30s_duration_is_refused() {
    // parse_duration takes one unit; a compound duration is a one-line error, not zero events.
    let log = Log::build(3, 3, 0);
    let args = ["audit", "query", "--since", "4m30s"];
    let line = assert_one_line_error(&args, &log.cli(&args));
    assert!(line.contains("--since \"4m30s\""), "{line}");
}

#[test]
fn show_draws_the_delegation_chain_as_a_tree() {
    let log = Log::build(6, 6, 0);
    let id = &log.ids[4];
    let shown = log.ok(&["audit", "show", id]);
    let tree = "  user:alice\n  └─ agent:planner\n     └─ agent:coder\n";
    assert!(shown.contains(tree), "{shown}");
    for want in [
        "decision   allow",
        "policy     sha256:abc",
        "jti        jti-4",
        "- planner may delegate pull requests to coder",
        "depth  2",
        "scope  github:pulls.write",
        "log        position 4, in the signed checkpoint of size 6",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    // By seq too; --json gives seq, index and the event.
    let v = log.ok_json(&["audit", "show", "5"]);
    assert_eq!((v["seq"].clone(), v["index"].clone()), (json!(5), json!(4)));
    assert_eq!(v["event"]["id"], id.as_str());
    assert_eq!(
        v["event"]["chain"],
        json!(["user:alice", "agent:planner", "agent:coder"])
    );
    let args = ["audit", "show", "evt_nope"];
    let line = assert_one_line_error(&args, &log.cli(&args));
    assert!(line.contains("no audit event \"evt_nope\""), "{line}");
}

#[test]
fn tail_prints_the_newest_events_and_follow_prints_new_ones() {
    let log = Log::build(8, 8, 0);
    let out = log.ok(&["--json", "audit", "tail", "-n", "3"]);
    let got: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got, log.ids[5..].to_vec());
    let table = log.ok(&["audit", "tail"]);
    assert_eq!(table.lines().count(), 9, "header and 8 events:\n{table}");

    let mut child = Command::new(common::bin())
        .args(["--json", "audit", "tail", "-n", "1", "-f"])
        .env("MANDATE_HOME", log.home.path())
        .env("HOME", log.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&log.ids[7]), "{first}");
    let new = sample_event(8, 9);
    rt().block_on(async {
        let store = Store::open_sqlite(&log.db()).await.unwrap();
        store.audit(record(&new)).await.unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let seen = rx
        .recv_timeout(deadline - Instant::now())
        .expect("tail -f printed the new event");
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(v["event"]["id"], new.id.as_str());
    assert_eq!(v["seq"], 9);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_proof_verifies_offline_and_fails_for_a_changed_event() {
    let log = Log::build(10, 4, 2);
    let proof: Value = serde_json::from_str(&log.ok(&["audit", "proof", &log.ids[5]])).unwrap();
    assert_eq!(proof["index"], 5);
    assert_eq!(
        proof["tree_size"], 8,
        "the smallest checkpoint that covers it"
    );
    assert_eq!(proof["event"]["id"], log.ids[5].as_str());
    assert_eq!(proof["inclusion_proof"].as_array().unwrap().len(), 3);
    let note_key = checkpoint::verifier_key(ORIGIN, &log.key.verifying_key());
    assert_eq!(proof["verifier_keys"], json!([note_key]));
    let dir = log.home.path();
    let file = write(dir, "proof.json", &proof.to_string());
    for key in [note_key.as_str(), &log.public_key()] {
        let out = log.ok(&["audit", "verify-proof", &file, "--key", key]);
        assert!(
            out.starts_with(&format!(
                "ok: event {} is entry 5 of the log {ORIGIN} signed at size 8",
                log.ids[5]
            )),
            "{out}"
        );
    }
    // Against a later checkpoint, too.
    let later = log.ok(&["audit", "proof", &log.ids[5], "--tree-size", "8"]);
    assert_eq!(
        serde_json::from_str::<Value>(&later).unwrap()["tree_size"],
        8
    );
    // A changed event, or a key that did not sign: FAILED, exit 1.
    let mut changed = proof.clone();
    changed["event"]["decision"] = json!("allow");
    let bad = write(dir, "changed.json", &changed.to_string());
    let other = base64::engine::general_purpose::STANDARD.encode(
        SigningKey::generate(&mut rand::rngs::OsRng)
            .verifying_key()
            .as_bytes(),
    );
    for (f, key, want) in [
        (
            &bad,
            note_key.as_str(),
            "leaf hash in the proof is not the hash of the event",
        ),
        (&file, other.as_str(), "not signed by a key trusted"),
    ] {
        let args = ["audit", "verify-proof", f.as_str(), "--key", key];
        let out = log.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("FAILED: ") && text.contains(want),
            "{}",
            describe(&args, &out)
        );
    }
    // The unsigned tail has no proof yet; a size that does not hold it is refused.
    for (args, want) in [
        (
            vec!["audit", "proof", log.ids[9].as_str()],
            "not yet in a checkpoint; retry in a second",
        ),
        (
            vec!["audit", "proof", log.ids[5].as_str(), "--tree-size", "4"],
            "outside a tree of size 4",
        ),
        (
            vec!["audit", "proof", log.ids[5].as_str(), "--tree-size", "9"],
            "no signed checkpoint of size 9",
        ),
    ] {
        let line = assert_one_line_error(&args, &log.cli(&args));
        assert!(line.contains(want), "{line}");
    }
}

#[test]
fn verify_passes_on_a_clean_log_and_reports_the_unsigned_tail() {
    let log = Log::build(20, 5, 3);
    let out = log.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["audit", "verify"], &out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: 20 events, 3 checkpoints, last checkpoint size 15 root "),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("the last 5 events are not in a signed checkpoint"));
    let v = log.ok_json(&["audit", "verify"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], 20);
    assert_eq!(v["unchecked_tail"], 5);
    assert_eq!(v["last_checkpoint"]["size"], 15);
    assert_eq!(v["origins"], json!([ORIGIN]));
    // The same with explicit keys, and with --database instead of MANDATE_HOME's config.
    let db = log.db().display().to_string();
    let keys = log
        .home
        .path()
        .join("server/issuer-keys")
        .display()
        .to_string();
    let note_keys = format!("{keys}/audit-note-keys");
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        vec!["audit", "verify", "--key", &log.public_key()],
        vec!["audit", "verify", "--key", &note_keys],
        vec!["audit", "verify", "--key", &keys],
    ] {
        log.ok(&args);
    }
    let args = ["audit", "verify", "--database", &db, "--keys-dir", &keys];
    let out = mandate(elsewhere.path(), &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    // A database from elsewhere is not checked against keys nobody named.
    let args = ["audit", "verify", "--database", &db];
    let line = assert_one_line_error(&args, &mandate(elsewhere.path(), &args));
    assert!(line.contains("pass --key"), "{line}");
    // A key that did not sign the checkpoints.
    let other = base64::engine::general_purpose::STANDARD.encode(
        SigningKey::generate(&mut rand::rngs::OsRng)
            .verifying_key()
            .as_bytes(),
    );
    let failed = log.verify_fails(&["--key", &other]);
    assert!(
        failed.starts_with("FAILED at checkpoint 5: ")
            && failed.contains("not signed by a key trusted for that origin"),
        "{failed}"
    );
}

#[test]
fn an_export_verifies_offline_with_the_issuer_key() {
    let log = Log::build(9, 4, 0);
    let dir = log.home.path();
    let file = dir.join("audit.jsonl").display().to_string();
    let done = log.ok(&["audit", "export", "--format", "jsonl", "--output", &file]);
    assert!(
        done.contains("exported 9 events and 3 checkpoints"),
        "{done}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["format"], "mandate-audit-export/1");
    assert_eq!(lines[0]["origin"], ORIGIN);
    let kinds: Vec<String> = lines[1..]
        .iter()
        .map(|l| match l["type"].as_str().unwrap() {
            "event" => format!("e{}", l["index"]),
            _ => format!("c{}", l["size"]),
        })
        .collect();
    assert_eq!(kinds.join(" "), "e0 e1 e2 e3 c4 e4 e5 e6 e7 c8 e8 c9");
    assert_eq!(lines[1]["id"], log.ids[0].as_str());
    // The event is the stored body, byte for byte.
    let body = text.lines().nth(1).unwrap();
    assert!(body.ends_with(&format!(
        ",\"event\":{}}}",
        record(&Event::parse(&lines[1]["event"].to_string()).unwrap()).body
    )));
    // Standard output gives the same bytes.
    assert_eq!(log.ok(&["audit", "export"]), text);

    let out = log.ok(&[
        "audit",
        "verify",
        "--file",
        &file,
        "--key",
        &log.public_key(),
    ]);
    assert!(
        out.starts_with("ok: 9 events, 3 checkpoints, last checkpoint size 9 root "),
        "{out}"
    );
    // Trust must be given for an export; only jsonl exists.
    for (args, want) in [
        (
            vec!["audit", "verify", "--file", file.as_str()],
            "an export is verified against the issuer's public key: pass --key",
        ),
        (
            vec!["audit", "export", "--format", "csv"],
            "use --format jsonl",
        ),
        (
            vec![
                "audit",
                "verify",
                "--file",
                file.as_str(),
                "--key",
                "nonsense",
            ],
            "--key nonsense",
        ),
    ] {
        let line = assert_one_line_error(&args, &log.cli(&args));
        assert!(line.contains(want), "{line}");
    }
    // An edited line in the export fails at its position.
    let edited = text.replacen("\"result\":\"ok\"", "\"result\":\"failed\"", 1);
    let bad = write(dir, "edited.jsonl", &edited);
    let failed = log.verify_fails(&["--file", &bad, "--key", &log.public_key()]);
    assert!(
        failed.starts_with("FAILED at positions 0..3: checkpoint 4's signed root does not match"),
        "{failed}"
    );
}

#[test]
fn an_edited_event_fails_verification_at_its_position() {
    let log = Log::build(12, 4, 0);
    log.sql(&[r#"UPDATE audit_events SET body = replace(body, '"decision":"deny"', '"decision":"allow"'), decision = 'allow' WHERE seq = 6"#]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with(&format!(
            "FAILED at position 5 (event {}): the event was changed",
            log.ids[5]
        )),
        "{failed}"
    );
    assert!(failed.contains("checkpoint 8"), "{failed}");
}

#[test]
fn an_edited_event_with_its_stored_leaf_rewritten_fails_at_the_checkpoint_range() {
    let log = Log::build(12, 4, 0);
    log.sql(&[r#"UPDATE audit_events SET body = replace(body, '"decision":"deny"', '"decision":"allow"'), decision = 'allow' WHERE seq = 6"#]);
    let body: String = rt().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", log.db().display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT body FROM audit_events WHERE seq = 6")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    let leaf = mandate_store::hex(&mandate_audit::merkle::leaf_hash(body.as_bytes()));
    log.sql(&[&format!(
        "UPDATE audit_nodes SET hash = '{leaf}' WHERE level = 0 AND idx = 5"
    )]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with(
            "FAILED at positions 4..7: checkpoint 8's signed root does not match the log"
        ),
        "{failed}"
    );
}

#[test]
fn a_deleted_event_fails_verification_at_its_position() {
    let log = Log::build(12, 4, 0);
    log.sql(&["DELETE FROM audit_events WHERE seq = 8"]);
    let failed = log.verify_fails(&[]);
    assert_eq!(
        failed,
        "FAILED at position 7: entry 7 is missing (the log goes on with entry 8): events were deleted"
    );
    // An export of it fails the same way.
    let export = log.ok(&["audit", "export"]);
    let file = write(log.home.path(), "x.jsonl", &export);
    assert_eq!(
        log.verify_fails(&["--file", &file, "--key", &log.public_key()]),
        failed
    );
}

#[test]
fn swapped_events_fail_verification_at_the_first_of_them() {
    let log = Log::build(12, 4, 0);
    log.sql(&[
        "CREATE TEMP TABLE copy AS SELECT * FROM audit_events WHERE seq IN (3, 10)",
        "UPDATE audit_events SET body = (SELECT body FROM copy WHERE copy.seq = 13 - audit_events.seq) WHERE seq IN (3, 10)",
    ]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with(&format!(
            "FAILED at position 2 (event {}): the entry holds event {} but is recorded as {}",
            log.ids[2], log.ids[9], log.ids[2]
        )),
        "{failed}"
    );
    // Whole rows swapped (ids, columns and bodies): the stored leaf hashes and the signed root
    // no longer match the order.
    let log = Log::build(12, 4, 0);
    log.sql(&[
        "CREATE TEMP TABLE copy AS SELECT * FROM audit_events WHERE seq IN (3, 10)",
        "UPDATE audit_events SET id = 'moving' WHERE seq = 3",
        "UPDATE audit_events SET (id, time_ms, kind, principal, action, decision, result, body) = (SELECT id, time_ms, kind, principal, action, decision, result, body FROM copy WHERE copy.seq = 3) WHERE seq = 10",
        "UPDATE audit_events SET (id, time_ms, kind, principal, action, decision, result, body) = (SELECT id, time_ms, kind, principal, action, decision, result, body FROM copy WHERE copy.seq = 10) WHERE seq = 3",
    ]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with(&format!(
            "FAILED at position 2 (event {}): the event was changed",
            log.ids[9]
        )),
        "{failed}"
    );
}

#[test]
fn a_deleted_tail_fails_verification_as_truncated() {
    let log = Log::build(20, 5, 0);
    log.sql(&["DELETE FROM audit_events WHERE seq > 13"]);
    let failed = log.verify_fails(&[]);
    assert_eq!(
        failed,
        "FAILED at position 13: truncated: checkpoint signs 20 entries but the log holds 13"
    );
    // Also when the checkpoints beyond it are deleted too: the stored tree remembers.
    log.sql(&["DELETE FROM audit_checkpoints WHERE size > 13"]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with("FAILED at position 13: truncated: the stored tree holds 20 leaves"),
        "{failed}"
    );
}

#[test]
fn an_edited_query_index_fails_verification() {
    let log = Log::build(6, 6, 0);
    log.sql(&["UPDATE audit_events SET time_ms = time_ms + 3600000 WHERE seq = 2"]);
    let failed = log.verify_fails(&[]);
    assert!(
        failed.starts_with(&format!(
            "FAILED at position 1 (event {}): its time_ms column",
            log.ids[1]
        )),
        "{failed}"
    );
}

#[test]
fn hash_gives_the_redacted_form_of_a_value() {
    let log = Log::build(1, 1, 0);
    let key = mandate_store::unhex(HMAC_KEY).unwrap();
    let out = log.ok(&["audit", "hash", "hunter2"]);
    assert_eq!(out.trim(), event::redact_value(&key, &json!("hunter2")));
    let out = log.ok(&["audit", "hash", "--json-value", "{\"b\":1,\"a\":[2]}"]);
    assert_eq!(
        out.trim(),
        event::redact_value(&key, &json!({"a": [2], "b": 1}))
    );
    std::fs::remove_file(log.home.path().join("server/issuer-keys/audit-hmac.key")).unwrap();
    let args = ["audit", "hash", "x"];
    let line = assert_one_line_error(&args, &log.cli(&args));
    assert!(line.contains("audit-hmac.key"), "{line}");
}

#[test]
fn without_a_database_every_command_fails_with_one_line() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nope.db").display().to_string();
    for args in [
        vec!["audit", "tail"],
        vec!["audit", "query"],
        vec!["audit", "verify"],
        vec!["audit", "export"],
        vec!["audit", "show", "1"],
        vec!["audit", "proof", "1"],
        vec!["audit", "query", "--database", &missing],
    ] {
        let line = assert_one_line_error(&args, &mandate(home.path(), &args));
        assert!(line.contains("--database"), "{line}");
    }
    assert!(!home.path().join("nope.db").exists(), "nothing is created");
}
