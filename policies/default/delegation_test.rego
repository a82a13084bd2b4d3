# Tests for data.mandate.delegation.decision.
package mandate.delegation_test

import data.mandate.delegation

# 2026-11-25 is a Wednesday.
wed_10_utc := 1795600800000000000

wed_14_utc := 1795615200000000000

wed_17_59_59_utc := 1795629599000000000

wed_18_utc := 1795629600000000000

wed_22_53_utc := 1795647184000000000

sat_10_utc := 1795860000000000000

# A push delegation from agent:planner to agent:coder issued at time_ns `ns`.
push(from, to, ttl, depth, ns) := {
	"principal": {"id": from, "type": "agent", "name": trim_prefix(from, "agent:")},
	"subject": "user:alice",
	"chain": ["user:alice", from, to],
	"scopes": ["github:pulls.write"],
	"audience": ["https://api.github.com"],
	"mandate": {"jti": "m-2", "iat": 1795647184, "exp": 1795647184 + ttl, "depth": depth, "max_depth": 5},
	"action": {
		"kind": "delegation",
		"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
		"mode": "push",
		"from": from,
		"to": to,
		"ttl_seconds": ttl,
	},
	"context": {"time_ns": ns, "environment": "development"},
}

plain := push("agent:planner", "agent:coder", 900, 2, wed_22_53_utc)

allowed(d) if {
	d == {"allow": true, "approval": null, "reasons": ["delegation allowed"], "redact": []}
}

denied(d) if {
	d.allow == false
	d.approval == null
	count(d.reasons) > 0
	d.redact == []
}

ttl_rule := {"delegation": {"max_ttl_outside_hours_seconds": 3600}}

# ---------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------

test_default_pack_allows_delegation if {
	allowed(delegation.decision) with input as plain
}

test_default_pack_allows_deep_long_night_delegation if {
	allowed(delegation.decision) with input as push("agent:a", "agent:support-1", 86400, 9, sat_10_utc)
}

test_allowed_without_any_config if {
	allowed(delegation.decision) with input as plain with data.mandate_config as {}
}

test_client_credentials_self_allowed if {
	inp := object.union(plain, {"action": {
		"grant_type": "client_credentials", "mode": "self",
		"from": "agent:coder", "to": "agent:coder",
	}})
	allowed(delegation.decision) with input as inp
}

test_tool_call_kind_denied if {
	d := delegation.decision with input as object.union(plain, {"action": {"kind": "mcp"}})
	denied(d)
	d.reasons == ["action is not a delegation (expected action kind \"delegation\")"]
}

# ---------------------------------------------------------------------------
# max_depth
# ---------------------------------------------------------------------------

test_max_depth_exceeded_denied if {
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 3, wed_10_utc) with data.mandate_config as {"delegation": {"max_depth": 2}}
	denied(d)
	d.reasons == ["delegation depth 3 exceeds the configured maximum of 2"]
}

test_max_depth_reached_allowed if {
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 900, 2, wed_10_utc) with data.mandate_config as {"delegation": {"max_depth": 2}}
}

test_max_depth_unknown_depth_denied if {
	d := delegation.decision with input as object.union(plain, {"mandate": null}) with data.mandate_config as {"delegation": {"max_depth": 2}}
	denied(d)
}

test_max_depth_null_is_off if {
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 900, 50, wed_10_utc) with data.mandate_config as {"delegation": {"max_depth": null}}
}

# ---------------------------------------------------------------------------
# forbidden
# ---------------------------------------------------------------------------

test_forbidden_exact_pair_denied if {
	cfg := {"delegation": {"forbidden": [{"from": "agent:planner", "to": "agent:coder"}]}}
	d := delegation.decision with input as plain with data.mandate_config as cfg
	denied(d)
	d.reasons == ["delegation from agent:planner to agent:coder is forbidden by policy (rule: from agent:planner to agent:coder)"]
}

test_forbidden_glob_denied if {
	cfg := {"delegation": {"forbidden": [{"from": "*", "to": "agent:support-*"}]}}
	denied(delegation.decision) with input as push("agent:planner", "agent:support-7", 900, 2, wed_10_utc) with data.mandate_config as cfg
}

test_forbidden_glob_other_principal_allowed if {
	cfg := {"delegation": {"forbidden": [{"from": "*", "to": "agent:support-*"}]}}
	allowed(delegation.decision) with input as push("agent:planner", "agent:supporter", 900, 2, wed_10_utc) with data.mandate_config as cfg
}

test_forbidden_from_must_match_too if {
	cfg := {"delegation": {"forbidden": [{"from": "user:*", "to": "agent:coder"}]}}
	allowed(delegation.decision) with input as plain with data.mandate_config as cfg
	denied(delegation.decision) with input as push("user:bob", "agent:coder", 900, 1, wed_10_utc) with data.mandate_config as cfg
}

# Naming may_act is decided as a delegation from the caller to the named principal.
may_act_decision(from, to) := object.union(push(from, to, 900, 2, wed_10_utc), {
	"action": {"mode": "may_act", "may_act": to},
})

test_forbidden_pair_applies_to_naming_may_act if {
	cfg := {"delegation": {"forbidden": [{"from": "agent:planner", "to": "agent:evil"}]}}
	denied(delegation.decision) with input as may_act_decision("agent:planner", "agent:evil") with data.mandate_config as cfg
	allowed(delegation.decision) with input as may_act_decision("agent:planner", "agent:reviewer") with data.mandate_config as cfg
}

# A pull: evil pulls coder's mandate, allowed by the may_act planner named.
pull(granted_by, holder, puller) := object.union(push(granted_by, puller, 900, 3, wed_10_utc), {
	"principal": {"id": puller, "type": "agent", "name": trim_prefix(puller, "agent:")},
	"action": {"mode": "pull", "holder": holder},
})

test_pull_is_decided_on_who_allowed_it_and_on_the_holder if {
	by_grantor := {"delegation": {"forbidden": [{"from": "agent:planner", "to": "agent:evil"}]}}
	denied(delegation.decision) with input as pull("agent:planner", "agent:coder", "agent:evil") with data.mandate_config as by_grantor
	by_holder := {"delegation": {"forbidden": [{"from": "agent:coder", "to": "agent:evil"}]}}
	d := delegation.decision with input as pull("agent:planner", "agent:coder", "agent:evil") with data.mandate_config as by_holder
	denied(d)
	d.reasons == ["a pull of agent:coder's mandate by agent:evil is forbidden by policy (rule: from agent:coder to agent:evil)"]
	allowed(delegation.decision) with input as pull("agent:planner", "agent:coder", "agent:reviewer") with data.mandate_config as by_holder
}

# ---------------------------------------------------------------------------
# max_ttl_outside_hours_seconds
# ---------------------------------------------------------------------------

test_long_ttl_inside_working_hours_allowed if {
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, wed_10_utc) with data.mandate_config as ttl_rule
}

test_long_ttl_outside_working_hours_denied if {
	d := delegation.decision with input as push("agent:a", "agent:b", 28800, 1, wed_22_53_utc) with data.mandate_config as ttl_rule
	denied(d)
	d.reasons == ["a mandate of 28800 seconds exceeds the 3600 seconds allowed outside working hours (8:00-18:00 UTC, Monday to Friday)"]
}

test_short_ttl_outside_working_hours_allowed if {
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 3600, 1, wed_22_53_utc) with data.mandate_config as ttl_rule
}

test_working_hours_end_is_exclusive if {
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, wed_17_59_59_utc) with data.mandate_config as ttl_rule
	denied(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, wed_18_utc) with data.mandate_config as ttl_rule
}

test_weekend_is_outside_working_hours if {
	denied(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, sat_10_utc) with data.mandate_config as ttl_rule
}

test_weekend_allowed_when_not_weekdays_only if {
	cfg := {"delegation": {
		"max_ttl_outside_hours_seconds": 3600,
		"working_hours": {"weekdays_only": false},
	}}
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, sat_10_utc) with data.mandate_config as cfg
}

test_working_hours_time_zone if {
	# 14:00 UTC is 09:00 in New York (inside); 10:00 UTC is 05:00 there (outside).
	cfg := {"delegation": {
		"max_ttl_outside_hours_seconds": 3600,
		"working_hours": {"start": 9, "end": 17, "timezone": "America/New_York"},
	}}
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, wed_14_utc) with data.mandate_config as cfg
	denied(delegation.decision) with input as push("agent:a", "agent:b", 28800, 1, wed_10_utc) with data.mandate_config as cfg
}

test_missing_time_counts_as_outside_working_hours if {
	inp := json.remove(push("agent:a", "agent:b", 28800, 1, wed_10_utc), ["context/time_ns"])
	denied(delegation.decision) with input as inp with data.mandate_config as ttl_rule
}

# ---------------------------------------------------------------------------
# Several rules at once
# ---------------------------------------------------------------------------

test_all_fired_rules_reported if {
	cfg := {"delegation": {
		"max_depth": 1,
		"forbidden": [{"from": "agent:a", "to": "agent:*"}],
		"max_ttl_outside_hours_seconds": 60,
	}}
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 2, sat_10_utc) with data.mandate_config as cfg
	denied(d)
	count(d.reasons) == 3
}

test_unknown_ttl_outside_working_hours_denied if {
	inp := json.remove(push("agent:a", "agent:b", 900, 1, wed_22_53_utc), ["action/ttl_seconds"])
	denied(delegation.decision) with input as inp with data.mandate_config as ttl_rule
	allowed(delegation.decision) with input as inp
}

# ---------------------------------------------------------------------------
# Mistyped settings deny instead of switching their rule off
# ---------------------------------------------------------------------------

test_max_depth_as_a_string_denies if {
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 1, wed_10_utc) with data.mandate_config as {"delegation": {"max_depth": "1"}}
	denied(d)
	contains(concat(" ", d.reasons), "max_depth must be a number")
}

test_forbidden_entry_without_to_denies if {
	denied(delegation.decision) with input as push("agent:a", "agent:b", 900, 1, wed_10_utc) with data.mandate_config as {"delegation": {"forbidden": [{"from": "agent:a"}]}}
}

test_forbidden_as_an_object_denies if {
	denied(delegation.decision) with input as push("agent:a", "agent:b", 900, 1, wed_10_utc) with data.mandate_config as {"delegation": {"forbidden": {"from": "agent:a", "to": "agent:b"}}}
}

test_ttl_limit_as_a_string_denies if {
	denied(delegation.decision) with input as push("agent:a", "agent:b", 900, 1, wed_10_utc) with data.mandate_config as {"delegation": {"max_ttl_outside_hours_seconds": "60"}}
}

test_a_mandate_granting_an_approval_scope_is_held_with_the_configured_approvers if {
	cfg := {"approvers": ["user:bob"], "quorum": 2, "approval_expires_in": 600, "delegation": {"approval_scopes": ["github:pulls.*"]}}
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 2, wed_10_utc) with data.mandate_config as cfg
	d.allow == false
	d.approval == {
		"approvers": ["user:bob"],
		"quorum": 2,
		"reason": "a mandate for agent:b granting github:pulls.write needs approval",
		"expires_in": 600,
	}
}

test_approval_scopes_default_to_the_pack_approvers_and_leave_other_scopes_alone if {
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 2, wed_10_utc) with data.mandate_config as {"delegation": {"approval_scopes": ["github:pulls.write"]}}
	d.approval.approvers == ["role:approver"]
	d.approval.quorum == 1
	d.approval.expires_in == 3600
	allowed(delegation.decision) with input as push("agent:a", "agent:b", 900, 2, wed_10_utc) with data.mandate_config as {"delegation": {"approval_scopes": ["deploy:*"]}}
}

test_a_principals_own_mandate_is_not_held_for_an_approval_scope if {
	inp := object.union(plain, {"action": {
		"grant_type": "client_credentials", "mode": "self",
		"from": "agent:coder", "to": "agent:coder",
	}})
	allowed(delegation.decision) with input as inp with data.mandate_config as {"delegation": {"approval_scopes": ["*"]}}
}

test_a_deny_rule_wins_over_an_approval_scope if {
	cfg := {"delegation": {"approval_scopes": ["github:*"], "max_depth": 1}}
	d := delegation.decision with input as push("agent:a", "agent:b", 900, 2, wed_10_utc) with data.mandate_config as cfg
	d.approval == null
	d.allow == false
}
