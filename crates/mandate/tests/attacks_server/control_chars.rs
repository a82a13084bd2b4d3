//! Control characters from strangers and callers never reach the log, where `audit show` and
//! `audit tail` would print them to an operator's terminal.

use serde_json::json;

use super::amplification::evaluation;
use crate::common::{assertion_by, fresh_key, Server};
use mandate_core::assertion::ASSERTION_TYPE;

const ESCAPES: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}";

#[test]
fn identifiers_with_control_characters_are_refused_and_never_stored() {
    let s = Server::start_with(true, "[limits]\nrefusal_window = \"1s\"\n");
    let (who, m) = s.pep();
    for (field, e) in [
        (
            "tool",
            evaluation(
                json!({"type": "agent", "id": "coder"}),
                &format!("read{ESCAPES}"),
                json!({}),
            ),
        ),
        (
            "subject",
            evaluation(
                json!({"type": "agent", "id": format!("coder{ESCAPES}")}),
                "read",
                json!({}),
            ),
        ),
    ] {
        let (code, _, body) = s.post_json_dpop("/access/v1/evaluation", &who, &m, &e);
        assert_eq!(code, 400, "{field}: {body}");
        assert!(body.contains("control characters"), "{field}: {body}");
    }
    // A stranger's client_id with escapes, at the token endpoint.
    let key = fresh_key();
    let assertion = assertion_by(&key, "agent:nobody", &s.url);
    let client_id = format!("agent:x{ESCAPES}");
    let (code, _, _) = s.post_form(
        "/oauth2/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    );
    assert_eq!(code, 401);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let stored = s.event_bodies().join("\n");
    let bad = stored.lines().find(|l| {
        l.chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
    });
    assert!(
        bad.is_none(),
        "control characters stored in the log: {bad:?}"
    );
    assert!(
        !stored.contains("\\u001b") && !stored.contains("pwned"),
        "escape sequences stored in the log"
    );
}
