//! Command line failures: exit code 1 and one `error: ` line on stderr.

mod common;

use common::{assert_one_line_error, free_port, init_home, mandate};

#[test]
fn init_twice_on_the_same_home_fails_with_one_line() {
    let port = free_port();
    let home = init_home(port, false);
    let listen = format!("127.0.0.1:{port}");
    let args = ["init", "--listen", listen.as_str()];
    let line = assert_one_line_error(&args, &mandate(home.path(), &args));
    assert!(line.contains("already initialised"), "{line}");
    // The first installation is untouched: the admin key is still there.
    assert!(home.path().join("keys/user_admin.jwk").exists());
}

#[test]
fn agent_list_without_a_running_server_fails_with_one_line() {
    let port = free_port();
    let home = init_home(port, false);
    let args = ["agent", "list"];
    let line = assert_one_line_error(&args, &mandate(home.path(), &args));
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let args = ["agent", "list", "--json"];
    assert_one_line_error(&args, &mandate(home.path(), &args));
}

#[test]
fn commands_without_a_configured_server_fail_with_one_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let args = ["keys", "list"];
    let line = assert_one_line_error(&args, &mandate(home.path(), &args));
    assert!(line.contains("--server"), "{line}");
}

#[test]
fn a_fresh_home_has_a_private_admin_key() {
    let home = init_home(free_port(), true);
    for p in ["user_admin", "user_alice", "agent_planner", "agent_coder"] {
        let f = home.path().join("keys").join(format!("{p}.jwk"));
        assert_eq!(common::mode(&f), 0o600, "{}", f.display());
    }
}
