//! Policy edits on a running server: used by tests/policy.rs and tests/attacks_server.rs.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Server;

pub const DEFAULT_DATA: &str = include_str!("../../../../policies/default/data.json");

/// Rewrites `mandate_config.delegation` in the server's policy data and waits until the server
/// runs the new version.
pub fn set_delegation_rules(s: &Server, rules: Value) {
    let mut data: Value = serde_json::from_str(DEFAULT_DATA).unwrap();
    for (k, v) in rules.as_object().unwrap() {
        data["mandate_config"]["delegation"][k] = v.clone();
    }
    write_and_wait(
        s,
        "data.json",
        &serde_json::to_string_pretty(&data).unwrap(),
    );
}

pub fn policy_dir(s: &Server) -> std::path::PathBuf {
    s.home().join("server/policies")
}

/// Writes a policy file and waits until the server's policy version changes (or 10 s pass).
pub fn write_and_wait(s: &Server, file: &str, text: &str) {
    let before = mandate_policy::Sources::read_dir(&policy_dir(s))
        .unwrap()
        .version();
    std::fs::write(policy_dir(s).join(file), text).unwrap();
    let after = mandate_policy::Sources::read_dir(&policy_dir(s))
        .unwrap()
        .version();
    assert_ne!(before, after, "the edit changed nothing");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains(&format!("version={after}")) {
        assert!(
            Instant::now() < deadline,
            "policy {after} was not loaded: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
