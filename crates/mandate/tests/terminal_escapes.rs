//! Terminal escape sequences from unauthenticated input never reach the operator's terminal: an
//! enforcement point asks the real server's AuthZEN decision point about a tool and a subject
//! whose names carry OSC/CSI sequences, a C1 control and a bidi override; the audit log records
//! them as given, and `mandate audit tail`, `audit query` and `audit show` print them escaped.
//! A server refusal quoting such sequences is printed escaped, on the one `error:` line.

mod common;

use common::fake::{metadata, Fake};
use common::{assert_one_line_error, describe, Server, GITHUB};
use serde_json::{json, Value};

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
fn escape_sequences_in_a_pdp_request_are_shown_escaped_by_audit_tail_query_and_show() {
    let s = Server::start(false);
    // The enforcement point: a ceiling naming mandate:pdp and the issuer explicitly.
    s.ok(&[
        "agent",
        "create",
        "pep",
        "--scopes",
        "mandate:pdp",
        "--audiences",
        &s.url,
    ]);
    let pep = "agent:pep";
    let mandate = s.own_mandate(pep, "mandate:pdp", &s.url);
    let tool = format!("x{ATTACK}\u{202e}y");
    let subject = format!("agent:evil{ATTACK}\u{9b}31m\u{202e}");
    let request = json!({
        "subject": {"type": "agent", "id": subject},
        "resource": {"type": "mcp_tool", "id": tool, "properties": {"server": "github"}},
        "action": {"name": "tools/call"}
    });
    let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", pep, &mandate, &request);
    assert_eq!(code, 200, "{body}");

    // The log holds the values as they were given (JSON output is serde's, unchanged).
    let events = s.ok_json(&["audit", "query", "--kind", "policy.decision"]);
    let ev = events
        .as_array()
        .and_then(|a| a.last())
        .map(|e| e["event"].clone())
        .unwrap_or(Value::Null);
    assert_eq!(ev["resource"], format!("github:{tool}"), "{events}");
    assert!(
        ev["chain"].as_array().unwrap().contains(&json!(subject)),
        "{ev}"
    );
    let id = ev["id"].as_str().unwrap().to_string();

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
