//! Terminal escape sequences from unauthenticated input never reach the operator's terminal. The
//! server refuses identifiers carrying control characters (an AuthZEN tool or subject name with
//! OSC/CSI sequences, a C1 control and a bidi override is a 400), and a log that holds them anyway
//! (written by an older version, or by someone with the database) is printed escaped by
//! `mandate audit tail`, `audit query` and `audit show`. A server refusal quoting such sequences
//! is printed escaped, on the one `error:` line.

mod common;

use common::fake::{metadata, Fake};
use common::{assert_one_line_error, describe, Server, GITHUB};
use serde_json::json;

/// An OSC (set the window title) and a CSI (clear the screen), as in the brief's attack.
const ATTACK: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";

/// Whether `c` is a character a terminal acts on rather than shows: C0, DEL, C1 or a bidi
/// control.
fn active(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Asserts that a command's stdout holds no byte or character a terminal would interpret, apart
/// from the newlines between lines.
fn assert_inert(args: &[&str], out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", describe(args, out));
    for bad in [0x1b_u8, 0x07, 0x9b] {
        assert!(
            !out.stdout.contains(&bad),
            "byte {bad:#04x} reached the terminal: {}",
            describe(args, out)
        );
    }
    let text = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    for line in text.lines() {
        if let Some(c) = line.chars().find(|&c| active(c)) {
            panic!(
                "character U+{:04X} reached the terminal in {line:?}",
                c as u32
            );
        }
    }
    text
}

#[test]
fn escape_sequences_in_a_pdp_request_are_refused_and_a_log_holding_them_is_shown_escaped() {
    let s = Server::start(false);
    // The enforcement point: a ceiling naming mandate:pdp and the issuer explicitly.
    let (pep, mandate) = s.pep();
    let pep = pep.as_str();
    let tool = format!("x{ATTACK}\u{202e}y");
    let subject = format!("agent:evil{ATTACK}\u{9b}31m\u{202e}");
    let request = json!({
        "subject": {"type": "agent", "id": subject},
        "resource": {"type": "mcp_tool", "id": tool, "properties": {"server": "github"}},
        "action": {"name": "tools/call"}
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", pep, &mandate, &request);
    assert_eq!(
        code, 400,
        "identifiers with control characters are refused: {body}"
    );

    // A log that holds them anyway: the event such a request wrote before they were refused.
    let ev = mandate_audit::event::Event {
        id: "evt_0000000000escapes0000000".into(),
        time: "2026-11-30T10:00:00.000Z".into(),
        kind: "policy.decision".into(),
        principal: pep.into(),
        chain: vec![subject.clone()],
        action: "pdp.evaluation".into(),
        resource: Some(format!("github:{tool}")),
        decision: Some("deny".into()),
        reasons: vec![format!("needs scope github:{tool}")],
        result: "ok".into(),
        ..Default::default()
    };
    let r = mandate_store::AuditRecord::from_event(&ev);
    let db = s.home().join("server/mandate.db");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query("INSERT INTO audit_events (id, time_ms, kind, principal, action, decision, result, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&r.id).bind(r.time_ms).bind(&r.kind).bind(&r.principal).bind(&r.action)
                .bind(&r.decision).bind(&r.result).bind(&r.body)
                .execute(&mut c)
                .await
                .unwrap();
        });
    let id = ev.id.clone();

    let escaped_attack = "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J";
    for args in [
        vec!["audit", "tail"],
        vec!["audit", "query"],
        vec!["audit", "show", id.as_str()],
    ] {
        let out = s.cli(&args);
        let text = assert_inert(&args, &out);
        assert!(
            text.contains(escaped_attack) && text.contains("\\u{202e}"),
            "the escaped form is not visible: {}",
            describe(&args, &out)
        );
    }
    // `--json` output too (found by the second outside review: C1 and bidi controls, which JSON
    // does not require escaping, reached the terminal raw): JSON `\u` escapes, same values.
    for args in [
        vec!["--json", "audit", "tail"],
        vec!["--json", "audit", "query"],
        vec!["--json", "audit", "show", id.as_str()],
    ] {
        let out = s.cli(&args);
        let text = assert_inert(&args, &out);
        assert!(
            text.contains("\\u202e") && text.contains("\\u001b"),
            "the JSON escapes are not visible: {}",
            describe(&args, &out)
        );
    }
    let args = ["audit", "show", id.as_str()];
    let text = assert_inert(&args, &s.cli(&args));
    assert!(
        text.contains(&format!(
            "agent:evil{escaped_attack}\\u{{9b}}31m\\u{{202e}}"
        )),
        "the chain shows the subject escaped: {text}"
    );
}

#[test]
fn a_refusal_quoting_escape_sequences_is_printed_escaped_on_one_line() {
    let s = Server::demo();
    let fake = Fake::start(|req, me| {
        match req.path.as_str() {
        "/.well-known/oauth-authorization-server" => (200, metadata(me, me)),
        _ => (
            400,
            r#"{"error":"invalid_client","error_description":"bad\u001b]0;pwned\u0007\u001b[2J\nerror: forged line\u202e"}"#
                .into(),
        ),
    }
    });
    let args = [
        "token",
        "issue",
        "--as",
        "user:alice",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write",
    ];
    let mut all = vec!["--server", fake.url.as_str()];
    all.extend_from_slice(&args);
    let out = s.cli(&all);
    let refs = all;
    let line = assert_one_line_error(&refs, &out);
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "{}",
        describe(&refs, &out)
    );
    assert!(
        line.contains("bad\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{a}error: forged line\\u{202e}"),
        "{line}"
    );
}
