//! The stdio sandbox with the real binary: `mandate sandbox check`, sandboxed upstreams served by
//! `mandate serve`, declared paths checked before anything starts, `sandbox = "off"` listed and
//! audited, and a child killed by its CPU limit restarted and counted. The hostile server and the
//! npm servers run sandboxed in interop/python/test_sandbox.py.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[test]
fn sandbox_check_reports_what_the_kernel_supports_and_its_self_test_passes() {
    let home = tempfile::tempdir().unwrap();
    let out = mandate(home.path(), &["sandbox", "check", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["sandbox", "check"], &out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert!(v["landlock_abi"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["seccomp"], true, "{v}");
    assert_eq!(v["self_test"]["passed"], true, "{v}");
    let checks: Vec<&str> = v["self_test"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for c in [
        "read_outside",
        "write_outside",
        "tcp_connect",
        "parent_environ",
        "ptrace_parent",
        "fork_beyond_limit",
        "memory_beyond_limit",
    ] {
        assert!(checks.contains(&c), "{c} missing from {checks:?}");
    }
}

#[test]
fn the_demo_upstream_runs_sandboxed_and_upstream_show_prints_the_sandbox() {
    let s = Server::demo();
    let m = s.own_mandate("agent:coder", "demo:list_notes", "mcp:demo");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "list_notes", "arguments": {}}});
    let (status, _, body) = s.post_json_dpop("/mcp/demo", "agent:coder", &m, &call);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("welcome"), "{body}");
    let list = s.ok_json(&["upstream", "list"]);
    let demo = list["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["sandbox"], "on", "{demo}");
    let shown = s.ok(&["upstream", "show", "demo"]);
    assert!(shown.contains("sandbox on"), "{shown}");
    assert!(shown.contains("network     none"), "{shown}");
    assert!(shown.contains("memory      2GiB"), "{shown}");
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("mandate_gateway_upstream_sandboxed{upstream=\"demo\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_sandbox_reaching_into_mandate_home_or_a_missing_path_is_refused_when_added() {
    let s = Server::start(false);
    let exe = bin();
    let server_dir = s.home().join("server").display().to_string();
    for (path, why) in [
        (server_dir.as_str(), "would reach"),
        ("/no/such/dir", "cannot be used"),
        ("/", "whole machine"),
    ] {
        let out = s.cli(&[
            "upstream",
            "add",
            "boxed",
            "--allow-read",
            path,
            "--stdio",
            "--",
            exe,
            "demo-mcp",
        ]);
        let err = assert_one_line_error(&["upstream", "add"], &out);
        assert!(err.contains(why), "{path}: {err}");
    }
    // Nothing was stored or started.
    let list = s.ok_json(&["upstream", "list"]);
    assert_eq!(list["upstreams"].as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn sandbox_off_is_listed_and_written_to_the_audit_log_as_an_admin_change() {
    let exe = bin();
    let s = Server::start_with(
        false,
        &format!(
            "[upstream.raw]\nstdio = [{exe:?}, \"demo-mcp\"]\npass_env = []\nsandbox = \"off\"\n"
        ),
    );
    let list = s.ok(&["upstream", "list"]);
    let row = list.lines().find(|l| l.starts_with("raw")).unwrap();
    assert!(row.contains(" off "), "{list}");
    let events = s.event_bodies();
    let ev = events
        .iter()
        .find(|e| e.contains("upstream.sandbox_off"))
        .expect("the unsandboxed upstream is audited");
    let ev: Value = serde_json::from_str(ev).unwrap();
    assert_eq!(ev["kind"], "admin.change");
    assert_eq!(ev["resource"], "raw");
    assert_eq!(ev["principal"], "config:server.toml");
    // Added through the admin API, the change event carries the setting.
    s.ok(&[
        "upstream",
        "add",
        "raw2",
        "--sandbox",
        "off",
        "--stdio",
        "--",
        exe,
        "demo-mcp",
    ]);
    assert!(s
        .event_bodies()
        .iter()
        .any(|e| e.contains("upstream.add") && e.contains("\"sandbox\":\"off\"")));
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("mandate_gateway_upstream_sandboxed{upstream=\"raw\"} 0"),
        "{metrics}"
    );
}

#[test]
fn a_child_killed_by_its_cpu_limit_is_restarted_counted_and_calls_get_a_clear_error() {
    // A "server" that only spins: one second of CPU, then the kernel kills it (SIGXCPU).
    let s = Server::start_with(
        false,
        "[upstream.spin]\nstdio = [\"sh\", \"-c\", \"while :; do :; done\"]\npass_env = [\"PATH\"]\n[upstream.spin.sandbox]\ncpu = \"1s\"\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        metrics = s.get("/metrics").1;
        if metrics.contains("mandate_gateway_upstream_killed_total{upstream=\"spin\"} 2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        metrics.contains("mandate_gateway_upstream_killed_total{upstream=\"spin\"} 2"),
        "{metrics}"
    );
    assert!(
        s.log().contains("CPU time limit"),
        "the log says why: {}",
        s.log()
    );
    // A call while it restarts: a JSON-RPC error that says so, not a hang.
    s.ok(&[
        "agent",
        "create",
        "spinner",
        "--scopes",
        "spin:x",
        "--audiences",
        "mcp:spin",
    ]);
    let m = s.own_mandate("agent:spinner", "spin:x", "mcp:spin");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "x", "arguments": {}}});
    let (_, _, body) = s.post_json_dpop("/mcp/spin", "agent:spinner", &m, &call);
    assert!(body.contains("not running"), "{body}");
}

#[test]
fn a_trampoline_that_cannot_set_up_the_sandbox_runs_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let spec = json!({
        "read": ["/usr", "/lib", "/lib64", "/bin"],
        "write": [dir.path()],
        "ports": null,
        "limits": {"memory": 1u64 << 30, "processes": 64, "open_files": 256, "cpu_seconds": 60, "disk": 1u64 << 20},
        "workdir": dir.path(),
        "cgroup": "/nonexistent/mandate-cgroup",
        "program": "/usr/bin/touch",
        "args": [marker],
        "nonce": "0123456789abcdef",
    });
    let out = std::process::Command::new(bin())
        .args(["sandbox-exec", &spec.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mandate sandbox 0123456789abcdef: process limit:"),
        "{err}"
    );
    assert!(err.contains("sandbox = \"off\""), "{err}");
    assert!(!marker.exists(), "the program ran unsandboxed");
    // An unreadable spec runs nothing either.
    let out = std::process::Command::new(bin())
        .args(["sandbox-exec", "{not json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreadable spec"));
}
