//! Enrollment: an admin issues a one-time code; the agent's own machine makes its key and joins.

mod common;

use common::{assert_one_line_error, describe, jwt_payload, key_path, mandate, mode, Server, CI};
use mandate_core::SecretKey;

#[test]
fn an_agent_joins_from_another_home_with_a_single_use_code() {
    let s = Server::start(false);
    let enrolled = s.ok_json(&["agent", "enroll", "remote", "--scopes", "ci:read"]);
    assert_eq!(enrolled["name"], "agent:remote", "{enrolled}");
    let code = enrolled["code"].as_str().expect("code").to_string();
    assert!(!code.is_empty());
    // No key was made in the admin's home: the agent makes its own.
    assert!(!key_path(s.home(), "agent:remote").exists());
    let shown = s.ok_json(&["agent", "show", "remote"]);
    assert!(shown["kid"].is_null(), "no key before joining: {shown}");

    let home2 = tempfile::tempdir().expect("tempdir");
    let args = [
        "agent",
        "join",
        "--code",
        code.as_str(),
        "--server",
        s.url.as_str(),
        "--json",
    ];
    let out = mandate(home2.path(), &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    let joined: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(joined["name"], "agent:remote", "{joined}");

    let file = key_path(home2.path(), "agent:remote");
    assert!(file.exists(), "{} missing", file.display());
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    let key = SecretKey::parse(&std::fs::read_to_string(&file).expect("read key")).expect("key");
    let kid = key.public().thumbprint();
    assert_eq!(joined["kid"], kid.as_str());
    // The server now knows that key.
    assert_eq!(s.ok_json(&["agent", "show", "remote"])["kid"], kid.as_str());

    // From the agent's home, with the server remembered by `join`.
    let args = [
        "token", "issue", "--as", "remote", "--aud", CI, "--scope", "ci:read",
    ];
    let out = mandate(home2.path(), &args);
    assert!(out.status.success(), "{}", describe(&args, &out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let c = jwt_payload(&token);
    assert_eq!(c["sub"], "agent:remote");
    assert_eq!(c["scope"], "ci:read");
    assert_eq!(c["cnf"]["jkt"], kid.as_str());
    assert_eq!(s.ok_json(&["token", "inspect", &token])["valid"], true);

    // The ceiling given at enrollment holds.
    let args = [
        "token", "issue", "--as", "remote", "--aud", CI, "--scope", "ci:write",
    ];
    let line = assert_one_line_error(&args, &mandate(home2.path(), &args));
    assert!(line.contains("invalid_scope"), "{line}");

    // The code is spent: a third machine cannot use it, and keeps no key.
    let home3 = tempfile::tempdir().expect("tempdir");
    let args = [
        "agent",
        "join",
        "--code",
        code.as_str(),
        "--server",
        s.url.as_str(),
    ];
    assert_one_line_error(&args, &mandate(home3.path(), &args));
    assert!(!key_path(home3.path(), "agent:remote").exists());
    // And the registered key is still the first machine's.
    assert_eq!(s.ok_json(&["agent", "show", "remote"])["kid"], kid.as_str());
}

#[test]
fn an_unknown_enrollment_code_is_refused() {
    let s = Server::start(false);
    let home2 = tempfile::tempdir().expect("tempdir");
    let args = [
        "agent",
        "join",
        "--code",
        "mdt-enroll-nonsense",
        "--server",
        s.url.as_str(),
    ];
    assert_one_line_error(&args, &mandate(home2.path(), &args));
    assert!(
        !home2.path().join("keys").exists()
            || std::fs::read_dir(home2.path().join("keys"))
                .expect("dir")
                .next()
                .is_none()
    );
}
