//! Terminal escape sequences from unauthenticated input never reach the operator's terminal: an
//! enforcement point asks the real server's AuthZEN decision point about a tool and a subject
//! whose names carry OSC/CSI sequences, a C1 control and a bidi override; the audit log records
//! them as given, and `mandate audit tail`, `audit query` and `audit show` print them escaped.

mod common;

use common::{describe, Server};
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
