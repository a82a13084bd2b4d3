# Tests for data.mandate.authz.decision. Run with `mandate policy test policies/default`
# (or `opa test policies/default`).
package mandate.authz_test

import data.mandate.authz

# ---------------------------------------------------------------------------
# Input builders
# ---------------------------------------------------------------------------

base_input := {
	"principal": {"id": "agent:coder", "type": "agent", "name": "coder"},
	"subject": "user:alice",
	"chain": ["user:alice", "agent:coder"],
	"scopes": [],
	"audience": ["https://api.github.com"],
	"mandate": {"jti": "m-1", "iat": 1795647000, "exp": 1795647900, "depth": 1, "max_depth": 5},
	"action": {
		"kind": "mcp",
		"server": "github",
		"tool": "list_repos",
		"mcp_method": "tools/call",
		"arguments": {},
	},
	"context": {
		"time": "2026-11-25T22:53:04Z",
		"time_ns": 1795647184000000000,
		"environment": "development",
		"client_address": "127.0.0.1",
	},
}

# An MCP call of `tool` on github with the given held scopes; `action` is merged
# into the action object (annotations, upstream, arguments, ...).
mcp_call(tool, scopes, action) := object.union(base_input, {
	"scopes": scopes,
	"action": object.union({"tool": tool}, action),
})

# An HTTP route on the "api" upstream that maps to action name `tool`.
http_call(method, tool, scopes, action) := object.union(base_input, {
	"scopes": scopes,
	"action": object.union(
		{"kind": "http", "server": "api", "tool": tool, "http": {"method": method, "path": "/things/1"}},
		action,
	),
})

read_only := {"annotations": {"readOnlyHint": true}}

production := {"upstream": {"environment": "production"}}

allowed(d) if {
	d.allow == true
	d.approval == null
	count(d.reasons) > 0
}

denied(d) if {
	d.allow == false
	d.approval == null
	count(d.reasons) > 0
}

held(d) if {
	d.allow == false
	d.approval != null
	d.approval.reason == d.reasons[0]
}

# ---------------------------------------------------------------------------
# Scope
# ---------------------------------------------------------------------------

test_read_only_tool_with_exact_scope_allowed if {
	d := authz.decision with input as mcp_call("list_repos", ["github:list_repos"], read_only)
	allowed(d)
	d.reasons == ["list_repos on github is read-only and within the mandate's scopes"]
	d.redact == []
}

test_read_scope_covers_read_only_tool if {
	allowed(authz.decision) with input as mcp_call("list_repos", ["github:read"], read_only)
}

test_read_scope_does_not_cover_write if {
	d := authz.decision with input as mcp_call("create_issue", ["github:read"], {})
	denied(d)
	d.reasons == ["needs scope github:create_issue (held: github:read)"]
}

test_read_scope_does_not_cover_tool_without_annotations if {
	denied(authz.decision) with input as mcp_call("list_repos", ["github:read"], {})
}

test_read_scope_of_other_server_does_not_cover if {
	d := authz.decision with input as mcp_call("list_repos", ["gitlab:read"], read_only)
	denied(d)
	d.reasons == ["needs scope github:list_repos or github:read (held: gitlab:read)"]
}

test_deny_reason_names_needed_scope if {
	d := authz.decision with input as mcp_call("delete_repo", ["github:read"], {})
	d.reasons == ["needs scope github:delete_repo (held: github:read)"]
}

test_no_scopes_held if {
	d := authz.decision with input as mcp_call("create_issue", [], {})
	d.reasons == ["needs scope github:create_issue (held: none)"]
}

test_missing_scopes_denied if {
	inp := json.remove(mcp_call("create_issue", [], {}), ["scopes"])
	d := authz.decision with input as inp
	d.reasons == ["needs scope github:create_issue (held: none)"]
}

test_star_scope_covers_everything if {
	allowed(authz.decision) with input as mcp_call("create_issue", ["*"], {})
}

test_server_wildcard_scope if {
	allowed(authz.decision) with input as mcp_call("create_issue", ["github:*"], {})
	denied(authz.decision) with input as mcp_call("create_issue", ["gitlab:*"], {})
}

test_prefix_wildcard_scope if {
	allowed(authz.decision) with input as mcp_call("list_repos", ["github:list_*"], {})
	denied(authz.decision) with input as mcp_call("create_issue", ["github:list_*"], {})
}

test_scope_must_match_whole_name if {
	denied(authz.decision) with input as mcp_call("create_issue", ["github:create"], {})
}

# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------

test_write_without_annotations_allowed if {
	d := authz.decision with input as mcp_call("create_issue", ["github:create_issue"], {})
	allowed(d)
	d.reasons == ["create_issue on github is within the mandate's scopes"]
}

test_write_without_upstream_allowed if {
	inp := json.remove(mcp_call("create_issue", ["github:*"], {}), ["action/upstream"])
	allowed(authz.decision) with input as inp
}

test_write_to_staging_allowed if {
	allowed(authz.decision) with input as mcp_call("create_issue", ["github:*"], {"upstream": {"environment": "staging"}})
}

# ---------------------------------------------------------------------------
# Destructive tools
# ---------------------------------------------------------------------------

test_destructive_name_needs_approval if {
	d := authz.decision with input as mcp_call("delete_repo", ["github:delete_repo"], {})
	held(d)
	d.approval == {
		"approvers": ["role:approver"],
		"quorum": 1,
		"reason": "delete_repo on github is destructive (name contains \"delete\")",
		"expires_in": 3600,
	}
}

test_destructive_hint_needs_approval if {
	d := authz.decision with input as mcp_call("archive_repo", ["github:*"], {"annotations": {"destructiveHint": true}})
	held(d)
	d.reasons == ["archive_repo on github is destructive (annotated destructiveHint)"]
}

test_destructive_hint_false_is_not_destructive if {
	allowed(authz.decision) with input as mcp_call("archive_repo", ["github:*"], {"annotations": {"destructiveHint": false}})
}

test_destructive_name_is_case_insensitive if {
	held(authz.decision) with input as mcp_call("DeployService", ["github:*"], {})
}

test_read_only_hint_does_not_override_destructive_name if {
	d := authz.decision with input as mcp_call("delete_cache", ["github:read"], read_only)
	held(d)
	d.reasons == ["delete_cache on github is destructive (name contains \"delete\")"]
}

test_destructive_outside_scope_is_denied_not_held if {
	denied(authz.decision) with input as mcp_call("delete_repo", ["github:create_issue"], {})
}

test_all_destructive_reasons_listed if {
	d := authz.decision with input as mcp_call("purge_and_delete", ["github:*"], {"annotations": {"destructiveHint": true}})
	d.approval.reason == "purge_and_delete on github is destructive (annotated destructiveHint; name contains \"delete\"; name contains \"purge\")"
}

test_destructive_verbs_configurable if {
	cfg := {"destructive_verbs": ["nuke"]}
	held(authz.decision) with input as mcp_call("nuke_it", ["github:*"], {}) with data.mandate_config as cfg
	allowed(authz.decision) with input as mcp_call("delete_repo", ["github:*"], {}) with data.mandate_config as cfg
}

test_approvers_and_quorum_configurable if {
	cfg := {"approvers": ["user:bob", "group:sre"], "quorum": 2, "approval_expires_in": 600}
	d := authz.decision with input as mcp_call("delete_repo", ["github:*"], {}) with data.mandate_config as cfg
	d.approval.approvers == ["user:bob", "group:sre"]
	d.approval.quorum == 2
	d.approval.expires_in == 600
}

test_built_in_defaults_without_config if {
	d := authz.decision with input as mcp_call("delete_repo", ["github:*"], {}) with data.mandate_config as {}
	d.approval.approvers == ["role:approver"]
	d.approval.quorum == 1
}

# ---------------------------------------------------------------------------
# Production upstreams
# ---------------------------------------------------------------------------

test_production_write_needs_approval if {
	d := authz.decision with input as mcp_call("create_issue", ["github:*"], production)
	held(d)
	d.reasons == ["create_issue on github is a production write (upstream environment production)"]
	d.approval.approvers == ["role:approver"]
}

test_production_label_needs_approval if {
	held(authz.decision) with input as mcp_call("create_issue", ["github:*"], {"upstream": {"labels": {"environment": "prod"}}})
}

test_production_read_allowed if {
	allowed(authz.decision) with input as mcp_call("list_repos", ["github:read"], object.union(read_only, production))
}

test_production_environments_configurable if {
	cfg := {"production_environments": ["live"]}
	held(authz.decision) with input as mcp_call("create_issue", ["github:*"], {"upstream": {"environment": "live"}}) with data.mandate_config as cfg
	allowed(authz.decision) with input as mcp_call("create_issue", ["github:*"], production) with data.mandate_config as cfg
}

test_destructive_in_production_gives_destructive_reason if {
	d := authz.decision with input as mcp_call("delete_repo", ["github:*"], production)
	d.reasons == ["delete_repo on github is destructive (name contains \"delete\")"]
}

# ---------------------------------------------------------------------------
# HTTP routes
# ---------------------------------------------------------------------------

test_http_get_is_read_only if {
	allowed(authz.decision) with input as http_call("GET", "get_thing", ["api:read"], {})
}

test_http_head_and_options_are_read_only if {
	allowed(authz.decision) with input as http_call("HEAD", "get_thing", ["api:read"], {})
	allowed(authz.decision) with input as http_call("options", "get_thing", ["api:read"], {})
}

test_http_post_needs_tool_scope if {
	d := authz.decision with input as http_call("POST", "create_thing", ["api:read"], {})
	d.reasons == ["needs scope api:create_thing (held: api:read)"]
	allowed(authz.decision) with input as http_call("POST", "create_thing", ["api:create_thing"], {})
}

test_http_production_write_held if {
	held(authz.decision) with input as http_call("PUT", "update_thing", ["api:*"], production)
}

test_http_get_with_destructive_name_held if {
	held(authz.decision) with input as http_call("GET", "purge_cache", ["api:read"], {})
}

# ---------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------

test_redact_sensitive_arguments if {
	args := {
		"name": "x",
		"password": "p",
		"GitHub_Token": "t",
		"apiKey": "k",
		"db_credentials": "c",
		"private_key": "k",
		"client_secret": "s",
		"tokens_used": 3,
	}
	d := authz.decision with input as mcp_call("create_issue", ["github:*"], {"arguments": args})
	d.redact == [
		"/action/arguments/GitHub_Token",
		"/action/arguments/apiKey",
		"/action/arguments/client_secret",
		"/action/arguments/db_credentials",
		"/action/arguments/password",
		"/action/arguments/private_key",
		"/action/arguments/tokens_used",
	]
}

test_redact_present_in_deny_and_approval if {
	args := {"password": "p"}
	d1 := authz.decision with input as mcp_call("create_issue", [], {"arguments": args})
	denied(d1)
	d1.redact == ["/action/arguments/password"]
	d2 := authz.decision with input as mcp_call("delete_repo", ["*"], {"arguments": args})
	held(d2)
	d2.redact == ["/action/arguments/password"]
}

test_redact_escapes_json_pointer if {
	d := authz.decision with input as mcp_call("create_issue", ["*"], {"arguments": {"a/b~token": 1}})
	d.redact == ["/action/arguments/a~1b~0token"]
}

test_redact_reaches_nested_objects_and_arrays if {
	args := {
		"repo": "x",
		"nested": {"password": "p", "deeper": {"API_KEY": "k"}},
		"items": [{"name": "a"}, {"client_secret": "s"}],
		"notes": "my password is not a key",
	}
	d := authz.decision with input as mcp_call("create_issue", ["*"], {"arguments": args})
	d.redact == [
		"/action/arguments/items/1/client_secret",
		"/action/arguments/nested/deeper/API_KEY",
		"/action/arguments/nested/password",
	]
}

test_redact_below_six_levels_takes_the_whole_deep_value if {
	args := {"a": {"b": {"c": {"d": {"e": {"f": {"password": "p"}}}}}}}
	d := authz.decision with input as mcp_call("create_issue", ["*"], {"arguments": args})
	d.redact == ["/action/arguments/a/b/c/d/e/f"]
}

test_redact_empty_without_arguments if {
	inp := json.remove(mcp_call("create_issue", ["*"], {}), ["action/arguments"])
	d := authz.decision with input as inp
	allowed(d)
	d.redact == []
}

# ---------------------------------------------------------------------------
# Malformed or foreign input
# ---------------------------------------------------------------------------

test_delegation_kind_denied if {
	d := authz.decision with input as mcp_call("create_issue", ["*"], {"kind": "delegation"})
	denied(d)
	d.reasons == ["action kind \"delegation\" is not a tool call (expected \"mcp\" or \"http\")"]
}

test_missing_kind_denied if {
	inp := json.remove(mcp_call("create_issue", ["*"], {}), ["action/kind"])
	d := authz.decision with input as inp
	denied(d)
	d.reasons == ["action kind (missing) is not a tool call (expected \"mcp\" or \"http\")"]
}

test_missing_tool_denied if {
	inp := json.remove(mcp_call("create_issue", ["*"], {}), ["action/tool"])
	d := authz.decision with input as inp
	denied(d)
	d.reasons == ["tool call does not name both a server and a tool"]
}

test_empty_input_denied if {
	denied(authz.decision) with input as {}
}

test_malformed_scopes_denied if {
	d := authz.decision with input as object.union(mcp_call("create_issue", [], {}), {"scopes": "github:*"})
	denied(d)
	d.reasons == ["needs scope github:create_issue (held: none)"]
}

# ---------------------------------------------------------------------------
# Unusable settings fail closed
# ---------------------------------------------------------------------------

test_unusable_destructive_verbs_deny_instead_of_allowing if {
	d := authz.decision with input as mcp_call("delete_repo", ["github:*"], {}) with data.mandate_config as {"destructive_verbs": ["rm (force"]}
	denied(d)
	contains(d.reasons[0], "destructive_verbs")
}

test_destructive_verbs_as_a_string_deny if {
	denied(authz.decision) with input as mcp_call("list_repos", ["github:*"], {}) with data.mandate_config as {"destructive_verbs": "delete"}
}

test_unusable_production_environments_deny_writes if {
	d := authz.decision with input as mcp_call("create_issue", ["github:*"], production) with data.mandate_config as {"production_environments": "production"}
	denied(d)
	contains(d.reasons[0], "production_environments")
}

test_unusable_production_environments_still_allow_reads if {
	allowed(authz.decision) with input as mcp_call("list_repos", ["github:read"], object.union(read_only, production)) with data.mandate_config as {"production_environments": "production"}
}

test_unusable_redact_keys_redact_every_argument if {
	d := authz.decision with input as mcp_call("list_repos", ["github:*"], object.union(read_only, {"arguments": {"password": "x", "repo": "r"}})) with data.mandate_config as {"redact_argument_keys": ["pass("]}
	d.redact == ["/action/arguments"]
}

# ---------------------------------------------------------------------------
# Argument rules: the coder may write only under /repo/src
# ---------------------------------------------------------------------------

src_only := {"argument_rules": [{
	"principals": ["agent:coder"], "server": "fs", "tools": ["write_file", "edit_file"],
	"argument": "path", "prefixes": ["/repo/src"],
}]}

fs_write(path) := object.union(base_input, {
	"scopes": ["fs:*"],
	"action": object.union(base_input.action, {"server": "fs", "tool": "write_file", "arguments": {"path": path}}),
})

test_argument_rule_allows_a_write_under_the_prefix if {
	allowed(authz.decision) with input as fs_write("/repo/src/main.rs") with data.mandate_config as src_only
	allowed(authz.decision) with input as fs_write("/repo/src") with data.mandate_config as src_only
}

test_argument_rule_refuses_a_write_elsewhere_and_says_where if {
	d := authz.decision with input as fs_write("/repo/secrets.env") with data.mandate_config as src_only
	denied(d)
	contains(d.reasons[0], "agent:coder may call write_file on fs only with path under /repo/src")
}

test_argument_rule_refuses_look_alike_prefixes_and_climbing_out if {
	denied(authz.decision) with input as fs_write("/repo/src-old/x") with data.mandate_config as src_only
	denied(authz.decision) with input as fs_write("/repo/src/../secrets.env") with data.mandate_config as src_only
	denied(authz.decision) with input as fs_write("src/main.rs") with data.mandate_config as src_only
}

# Each its own test: a test rule has the policy's time limit, and a debug build is slow.
test_argument_rule_refuses_a_backslash if {
	denied(authz.decision) with input as fs_write("/repo/src/..\\..\\etc") with data.mandate_config as src_only
}

test_argument_rule_refuses_a_nul if {
	denied(authz.decision) with input as fs_write("/repo/src/..\u0000/..\u0000/etc") with data.mandate_config as src_only
}

test_argument_rule_refuses_path_parameters if {
	denied(authz.decision) with input as fs_write("/repo/src/..;/..;/etc") with data.mandate_config as src_only
}

test_argument_rule_refuses_percent_encodings_an_upstream_may_decode if {
	denied(authz.decision) with input as fs_write("/repo/src/%2e%2e/etc") with data.mandate_config as src_only
	denied(authz.decision) with input as fs_write("/repo/src/%c0%ae%c0%ae/etc") with data.mandate_config as src_only
}

test_argument_rule_refuses_dot_look_alikes if {
	denied(authz.decision) with input as fs_write("/repo/src/\uff0e\uff0e/etc") with data.mandate_config as src_only
	denied(authz.decision) with input as fs_write("/repo/src/\u2025/etc") with data.mandate_config as src_only
}

test_argument_rule_allows_other_unicode_names if {
	allowed(authz.decision) with input as fs_write("/repo/src/naïve café.rs") with data.mandate_config as src_only
}

test_argument_rule_refuses_a_missing_or_non_string_argument if {
	no_path := object.union(base_input, {"scopes": ["fs:*"], "action": object.union(base_input.action, {"server": "fs", "tool": "write_file", "arguments": {}})})
	denied(authz.decision) with input as no_path with data.mandate_config as src_only
	denied(authz.decision) with input as fs_write(["/repo/src/a"]) with data.mandate_config as src_only
}

test_argument_rule_applies_only_to_the_principals_and_tools_it_names if {
	reviewer := object.union(fs_write("/etc/passwd"), {"principal": {"id": "agent:reviewer", "type": "agent", "name": "reviewer"}})
	allowed(authz.decision) with input as reviewer with data.mandate_config as src_only
	read := object.union(fs_write("/etc/hosts"), {"action": object.union(fs_write("/etc/hosts").action, {"tool": "read_file"})})
	allowed(authz.decision) with input as read with data.mandate_config as src_only
}


# An upstream that maps tools to another scope: the gateway says which in action.scope, and that
# is the scope the policy checks (the default "<server>:<tool>" only when none is said).
test_the_scope_the_gateway_requires_is_the_one_checked if {
	mapped := {"scope": "github:repos.write"}
	allowed(authz.decision) with input as mcp_call("create_issue", ["github:repos.write"], mapped)
	denied(authz.decision) with input as mcp_call("create_issue", ["github:create_issue"], mapped)
	allowed(authz.decision) with input as mcp_call("create_issue", ["github:create_issue"], {})
}
