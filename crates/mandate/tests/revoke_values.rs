//! `mandate revoke key|agent|user VALUE` with a whole mandate pasted as VALUE: refused by the CLI
//! before anything is sent, so the token reaches neither the server nor its audit log, nor the
//! terminal. `revoke token` still takes a whole token and revokes it by its jti.

mod common;

use common::{assert_one_line_error, jwt_payload, Server, GITHUB};

#[test]
fn a_whole_token_given_as_a_kid_agent_or_user_is_refused_locally_and_never_logged() {
    let s = Server::demo();
    let token = s.own_mandate("user:alice", "github:pulls.write", GITHUB);
    let signature = token.rsplit('.').next().unwrap().to_string();
    let pasted = format!("  {token}\n");
    for (kind, what) in [
        ("key", "kid"),
        ("agent", "agent name"),
        ("user", "user name"),
    ] {
        for value in [token.as_str(), pasted.as_str()] {
            let args = ["revoke", kind, value];
            let out = s.cli(&args);
            let line = assert_one_line_error(&args, &out);
            assert!(
                line.contains(&format!("pass the {what}, not a token")),
                "{line}"
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains(&signature),
                "the token was printed: {line}"
            );
        }
    }
    // The server never saw it: no audit event holds the token (nor its signature).
    let log = s.ok(&["--json", "audit", "query", "--limit", "100000"]);
    assert!(
        !log.contains(&signature),
        "the token reached the audit log: {log}"
    );

    // `revoke token` with the whole token still revokes it, by its jti only.
    let jti = jwt_payload(&token)["jti"].as_str().unwrap().to_string();
    let v = s.ok_json(&["revoke", "token", &token]);
    assert!(v["seq"].as_i64().is_some(), "{v}");
    s.assert_inactive(&token, "the revoked mandate");
    let log = s.ok(&["--json", "audit", "query", "--kind", "revocation"]);
    assert!(log.contains(&jti) && !log.contains(&signature), "{log}");
}
