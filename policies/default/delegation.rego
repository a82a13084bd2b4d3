# Default Mandate policy for token issuance and delegation.
#
# Query: data.mandate.delegation.decision
# Input: describes the mandate that WOULD be issued (chain ends with action.to,
#        mandate.depth is its depth, scopes are the scopes it would grant).
#        action.mode is self, push, pull or may_act:
#        - push: action.from (the caller, holder of the subject token) hands it to action.to;
#        - pull: action.to pulls the subject token held by action.holder, allowed by the
#          subject token's may_act, which action.from named;
#        - may_act: asked in addition when a new mandate names a may_act: action.from (the
#          caller) lets action.to pull it later; scopes are what it could pull, and the chain
#          ends with action.to as it would after the pull.
#
# The authority already enforces scope ceilings, narrowing and the mandate's own
# max_depth, so this pack allows every delegation unless a configured rule fires.
# All rules are off in the shipped data.json; each one is switched on by a setting
# under data.mandate_config.delegation:
#   max_depth                      - deny when the new mandate would be deeper than this
#   forbidden                      - deny delegation between matching principals
#   max_ttl_outside_hours_seconds  - outside working hours, deny mandates longer than this
#   approval_scopes                - hold for human approval a delegation (push, pull, may_act)
#                                    granting a scope that one of these patterns covers
#                                    ("deploy:production*"), with the approvers, quorum and
#                                    expiry of mandate_config
package mandate.delegation

import data.mandate.lib

# ---------------------------------------------------------------------------
# Deny by default
# ---------------------------------------------------------------------------

default decision := {
	"allow": false,
	"approval": null,
	"reasons": ["denied by default: no policy rule allowed this delegation"],
	"redact": [],
}

# ---------------------------------------------------------------------------
# The decision: allowed unless some rule below adds a reason to deny
# ---------------------------------------------------------------------------

decision := {"allow": false, "approval": null, "reasons": reasons, "redact": []} if {
	count(deny_reasons) > 0
	reasons := sort([reason | some reason in deny_reasons])
} else := {
	"allow": false,
	"approval": {
		"approvers": lib.approvers,
		"quorum": lib.quorum,
		"reason": approval_reason,
		"expires_in": lib.setting("approval_expires_in", 3600),
	},
	"reasons": [approval_reason],
	"redact": [],
} if {
	input.action.kind == "delegation"
	count(approval_scopes_granted) > 0
} else := {"allow": true, "approval": null, "reasons": ["delegation allowed"], "redact": []} if {
	input.action.kind == "delegation"
}

# ---------------------------------------------------------------------------
# Approval: a mandate granting a scope an approval_scopes pattern covers waits for a human
# ---------------------------------------------------------------------------

approval_scopes := object.get(lib.delegation_config, "approval_scopes", [])

# Handing a scope to another principal, not a principal's own mandate (mode "self").
approval_scopes_granted contains scope if {
	input.action.mode != "self"
	some scope in input.scopes
	some pattern in approval_scopes
	lib.scope_covers(pattern, scope)
}

approval_reason := sprintf("a mandate for %s granting %s needs approval", [
	input.action.to,
	concat(" ", sort([s | some s in approval_scopes_granted])),
])

# ---------------------------------------------------------------------------
# Rule 0: this query only judges delegations
# ---------------------------------------------------------------------------

deny_reasons contains "action is not a delegation (expected action kind \"delegation\")" if {
	not input.action.kind == "delegation"
}

# ---------------------------------------------------------------------------
# Rule 1: maximum delegation depth (off when max_depth is null)
# ---------------------------------------------------------------------------

max_depth := lib.delegation_setting("max_depth")

deny_reasons contains msg if {
	max_depth != null
	input.mandate.depth > max_depth
	msg := sprintf("delegation depth %v exceeds the configured maximum of %v", [input.mandate.depth, max_depth])
}

# Fail closed: with a limit configured, a request whose depth is unknown is denied.
depth_known if is_number(input.mandate.depth)

# A setting that is switched on but not usable denies (a mistyped limit must not switch its
# rule off).
deny_reasons contains "mandate_config.delegation.max_depth must be a number or null" if {
	max_depth != null
	not is_number(max_depth)
}

deny_reasons contains "mandate_config.delegation.forbidden must be a list of {\"from\": pattern, \"to\": pattern} with string patterns" if {
	rules := lib.delegation_setting("forbidden")
	rules != null
	not forbidden_usable
}

forbidden_usable if {
	rules := lib.delegation_setting("forbidden")
	is_array(rules)
	every rule in rules {
		is_string(rule.from)
		is_string(rule.to)
	}
}

deny_reasons contains "mandate_config.delegation.max_ttl_outside_hours_seconds must be a number or null" if {
	max_ttl_outside_hours != null
	not is_number(max_ttl_outside_hours)
}

deny_reasons contains msg if {
	max_depth != null
	not depth_known
	msg := sprintf("delegation depth is unknown, so the configured maximum of %v cannot be checked", [max_depth])
}

# ---------------------------------------------------------------------------
# Rule 2: forbidden delegation pairs
# ---------------------------------------------------------------------------

# Each entry is {"from": pattern, "to": pattern}. A pattern is a principal
# ("agent:coder"), a prefix ending in "*" ("agent:support-*"), or "*" for anyone.
forbidden := rules if {
	rules := lib.delegation_setting("forbidden")
	is_array(rules)
} else := []

deny_reasons contains msg if {
	some rule in forbidden
	lib.pattern_matches(rule.from, input.action.from)
	lib.pattern_matches(rule.to, input.action.to)
	msg := sprintf("delegation from %s to %s is forbidden by policy (rule: from %s to %s)", [
		input.action.from, input.action.to, rule.from, rule.to,
	])
}

# A pull passes the holder's mandate on too: a rule forbidding the holder to delegate to the
# puller applies as well, although the holder made no request.
deny_reasons contains msg if {
	input.action.mode == "pull"
	holder := input.action.holder
	some rule in forbidden
	lib.pattern_matches(rule.from, holder)
	lib.pattern_matches(rule.to, input.action.to)
	msg := sprintf("a pull of %s's mandate by %s is forbidden by policy (rule: from %s to %s)", [
		holder, input.action.to, rule.from, rule.to,
	])
}

# ---------------------------------------------------------------------------
# Rule 3: long-lived mandates only during working hours (off when null)
# ---------------------------------------------------------------------------

max_ttl_outside_hours := lib.delegation_setting("max_ttl_outside_hours_seconds")

hours := lib.working_hours

weekend := {"Saturday", "Sunday"}

# context.time_ns read in the configured time zone as [ns, tz].
local_time := [input.context.time_ns, hours.timezone]

# The working day check: any day, or Monday to Friday when weekdays_only is true.
working_day if not hours.weekdays_only == true

working_day if {
	hours.weekdays_only == true
	day := time.weekday(local_time)
	not day in weekend
}

# start <= hour < end on a working day. A missing time counts as outside (fail safe).
within_working_hours if {
	clock := time.clock(local_time)
	clock[0] >= hours.start
	clock[0] < hours.end
	working_day
}

working_hours_text := sprintf("%v:00-%v:00 %s%s", [
	hours.start, hours.end, hours.timezone,
	weekdays_suffix,
])

weekdays_suffix := ", Monday to Friday" if {
	hours.weekdays_only == true
} else := ""

deny_reasons contains msg if {
	max_ttl_outside_hours != null
	not within_working_hours
	input.action.ttl_seconds > max_ttl_outside_hours
	msg := sprintf("a mandate of %v seconds exceeds the %v seconds allowed outside working hours (%s)", [
		input.action.ttl_seconds, max_ttl_outside_hours, working_hours_text,
	])
}

# Fail closed: with a limit configured, a request whose lifetime is unknown is denied
# outside working hours.
ttl_known if is_number(input.action.ttl_seconds)

deny_reasons contains msg if {
	max_ttl_outside_hours != null
	not within_working_hours
	not ttl_known
	msg := "the requested mandate lifetime is unknown, so the limit outside working hours cannot be checked"
}
