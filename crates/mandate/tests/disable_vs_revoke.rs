//! `agent disable` and `revoke agent` do different things, and the CLI says so: disable is the
//! reversible "no new mandates" switch (mandates already issued stay valid at enforcement points
//! until they expire), revoke is the emergency cut-off of every mandate the agent appears in.

mod common;

use common::{Server, GITHUB};

#[test]
fn agent_disable_says_existing_mandates_stay_valid_and_how_to_cut_them_off() {
    let s = Server::demo();
    s.ok(&[
        "agent",
        "create",
        "builder",
        "--scopes",
        "github:contents.read",
        "--audiences",
        GITHUB,
        "--max-ttl",
        "30m",
    ]);
    let out = s.ok(&["agent", "disable", "builder"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Disabled agent:builder"), "{out}");
    assert!(
        lines[1].contains("remain valid until they expire")
            && lines[1].contains("at most 30m")
            && lines[1].contains("mandate revoke agent builder"),
        "{out}"
    );
    // --json stays the principal as the server answered it.
    let v = s.ok_json(&["agent", "show", "builder"]);
    assert_eq!(v["disabled"], true, "{v}");
}

#[test]
fn a_disabled_agents_mandates_stay_valid_until_revoke_agent_cuts_them_off() {
    let s = Server::demo();
    let alice = s.own_mandate("user:alice", "github:pulls.write", GITHUB);
    let planner = common::assert_token(&s.push("user:alice", &alice, "agent:planner", &[]));
    s.ok(&["agent", "disable", "planner"]);
    s.assert_active(&planner, "a disabled agent's existing mandate");
    // No new mandates for it.
    let (code, body) = s.push("user:alice", &alice, "agent:planner", &[]);
    assert_eq!(code, 400, "{body}");
    s.ok(&["revoke", "agent", "planner"]);
    s.assert_inactive(&planner, "a revoked agent's mandate");
    s.assert_active(&alice, "alice's own mandate");
}
