# Default Mandate policy for tool calls (MCP tools and HTTP API routes).
#
# Query: data.mandate.authz.decision
# Result: {"allow": bool, "approval": null | {...}, "reasons": [string], "redact": [string]}
#
# The decision is one `else` chain, so the first step that applies decides and nothing after it
# is evaluated:
#   1. action.kind is not "mcp" or "http"            -> deny
#   2. the call does not name a server and a tool    -> deny
#   3. no held scope covers "<server>:<tool>"        -> deny (reason names the scope needed)
#   3b. an argument rule (mandate_config.argument_rules) refuses the call's arguments -> deny
#   4. the tool is destructive                       -> hold for approval
#   5. a write to a production upstream              -> hold for approval
#   6. a read-only call                              -> allow
#   7. any other write                               -> allow
# Anything else (including evaluation surprises) falls through to the default: deny.
#
# This policy runs on every tool call, so it is written to be cheap: configuration is read once
# per decision, names are lower-cased once, and loops run over the few things they must.
package mandate.authz

import data.mandate.lib

# ---------------------------------------------------------------------------
# Deny by default
# ---------------------------------------------------------------------------

default decision := {
	"allow": false,
	"approval": null,
	"reasons": ["denied by default: no policy rule allowed this tool call"],
	"redact": [],
}

decision := deny(sprintf("action kind %s is not a tool call (expected \"mcp\" or \"http\")", [kind_text])) if {
	not is_tool_call
} else := deny("tool call does not name both a server and a tool") if {
	not is_named
} else := deny(sprintf("needs scope %s (held: %s)", [needed_text, held_text])) if {
	in_scope == false
} else := deny(concat("; ", sort(argument_violations))) if {
	count(argument_violations) > 0
} else := hold(destructive_reason) if {
	destructive
} else := hold(production_reason) if {
	not read_only
	production
} else := permit(sprintf("%s on %s is read-only and within the mandate's scopes", [tool, server])) if {
	read_only
	destructive_scan == false
} else := permit(sprintf("%s on %s is within the mandate's scopes", [tool, server])) if {
	destructive_scan == false
	is_array(production_environments)
} else := deny(concat(" ", [
	"cannot tell whether the tool is destructive or the upstream is production:",
	"mandate_config.destructive_verbs and production_environments must be lists of plain lower-case words",
]))

# ---------------------------------------------------------------------------
# Configuration (data.mandate_config; each falls back to the built-in default when absent or null)
# ---------------------------------------------------------------------------

destructive_verbs := v if {
	v := data.mandate_config.destructive_verbs
	v != null
} else := lib.default_destructive_verbs

redact_argument_keys := v if {
	v := data.mandate_config.redact_argument_keys
	v != null
} else := lib.default_redact_argument_keys

approvers := v if {
	v := data.mandate_config.approvers
	v != null
} else := ["role:approver"]

quorum := v if {
	v := data.mandate_config.quorum
	v != null
} else := 1

# Seconds an approval request waits for its quorum before it expires.
approval_expires_in := v if {
	v := data.mandate_config.approval_expires_in
	v != null
} else := 3600

production_environments := v if {
	v := data.mandate_config.production_environments
	v != null
} else := ["production", "prod"]

# ---------------------------------------------------------------------------
# Argument rules (data.mandate_config.argument_rules): where a principal's calls may point.
#
# Each rule: {"principals": ["agent:coder"], "server": "fs", "tools": ["write_file"],
#             "argument": "path", "prefixes": ["/repo/src"]}
# A call by one of the principals ("*" for anyone) of one of the tools on the server must have the
# argument as a string path equal to a prefix or continuing it with "/", with no ".." segment and
# nothing an upstream might read as one after the policy has looked: a backslash, a ";" (path
# parameters, "..;"), a "%" (decoded again: "%2e%2e", "%c0%ae"), a control character (NUL) or a
# dot look-alike that Unicode normalisation turns into "." (fullwidth, one-dot leader...);
# anything else (missing, not a string, elsewhere, climbing out) is refused.
# ---------------------------------------------------------------------------

argument_rules := v if {
	v := data.mandate_config.argument_rules
	is_array(v)
} else := []

argument_violations contains msg if {
	some rule in argument_rules
	rule_names_this_call(rule)
	not within_prefixes(object.get(input.action, ["arguments", rule.argument], null), rule.prefixes)
	msg := sprintf("%s may call %s on %s only with %s under %s", [
		input.principal.id, tool, server, rule.argument, concat(", ", rule.prefixes),
	])
}

rule_names_this_call(rule) if {
	rule.server == server
	tool in rule.tools
	some p in rule.principals
	p in {"*", input.principal.id}
}

within_prefixes(value, prefixes) if {
	is_string(value)
	not climbs(value)
	some prefix in prefixes
	path_under(value, prefix)
}

climbs(value) if {
	some segment in split(value, "/")
	segment == ".."
}

climbs(value) if regex.match(`[\\;%\x00-\x1f\x7f]`, value)

# U+2024 ONE DOT LEADER, U+2025, U+2026, U+FE52 SMALL FULL STOP, U+FF0E FULLWIDTH FULL STOP.
climbs(value) if regex.match(`[\x{2024}-\x{2026}\x{FE52}\x{FF0E}]`, value)

path_under(value, prefix) if value == trim_suffix(prefix, "/")

path_under(value, prefix) if startswith(value, concat("", [trim_suffix(prefix, "/"), "/"]))

# ---------------------------------------------------------------------------
# Facts about the call
# ---------------------------------------------------------------------------

# Only MCP tool calls and HTTP routes are judged by this policy.
is_tool_call if input.action.kind in {"mcp", "http"}

# The call names the upstream server and the tool (or route action).
is_named if {
	is_string(input.action.server)
	input.action.server != ""
	is_string(input.action.tool)
	input.action.tool != ""
}

server := input.action.server

tool := input.action.tool

tool_lower := lower(tool)

# The scope a call needs: the one the gateway says (an upstream can map tools to other scopes),
# else "<server>:<tool>" (e.g. "github:delete_repo").
wanted_scope := input.action.scope if {
	is_string(input.action.scope)
	input.action.scope != ""
} else := concat(":", [server, tool])

# Read-only calls are also covered by "<server>:read".
read_scope := concat(":", [server, "read"])

# Read-only: MCP annotation readOnlyHint, or an HTTP method that does not write.
read_only if input.action.annotations.readOnlyHint == true

read_only if upper(input.action.http.method) in {"GET", "HEAD", "OPTIONS"}

# The mandate's scopes (non-strings ignored; a missing or malformed list holds nothing).
held_scopes := [s | some s in input.scopes; is_string(s)] if is_array(input.scopes)

else := []

# in_scope: some held scope covers the wanted one (equal, or a "prefix*" wildcard), or, for a
# read-only call, covers "<server>:read". Written as one `else` chain so that the cheap exact
# matches are tried first and the rest is not evaluated once one holds.
default in_scope := false

in_scope := true if {
	wanted_scope in held_scopes
} else := true if {
	read_only
	read_scope in held_scopes
} else := true if {
	strings.any_prefix_match(wanted_scope, wildcard_prefixes)
} else := true if {
	read_only
	strings.any_prefix_match(read_scope, wildcard_prefixes)
}

# "github:*" -> "github:", "*" -> "" (which every scope starts with).
wildcard_prefixes := [trim_suffix(held, "*") | some held in held_scopes; endswith(held, "*")]

# Destructive: annotated so, or the lower-cased name contains one of the configured verbs (one
# regular expression built from the list; regorus caches it). A destructive name wins over a
# readOnlyHint: a tool called delete_x needs approval whatever it says about itself.
destructive if input.action.annotations.destructiveHint == true

destructive if destructive_scan == true

# One regular expression built from the list (regorus caches it). If the setting is not usable
# the scan is undefined, and the decision denies instead of treating the tool as harmless.
destructive_scan := regex.match(concat("|", destructive_verbs), tool_lower)

# Why, for the approval reason (only evaluated when the call is destructive).
destructive_why contains "annotated destructiveHint" if {
	input.action.annotations.destructiveHint == true
}

destructive_why contains sprintf("name contains \"%s\"", [verb]) if {
	some verb in regex.find_n(concat("|", destructive_verbs), tool_lower, -1)
}

# The upstream's environment labels.
upstream_environments contains env if {
	env := input.action.upstream.environment
	is_string(env)
}

upstream_environments contains env if {
	env := input.action.upstream.labels.environment
	is_string(env)
}

# Which of them count as production (case-insensitive; configured names are lower-case).
production_env contains env if {
	some env in upstream_environments
	lower(env) in production_environments
}

production if count(production_env) > 0

# ---------------------------------------------------------------------------
# Redaction: arguments whose key looks secret never reach logs or approvers.
# ---------------------------------------------------------------------------

# Argument keys, at any depth (inside nested objects and arrays), that contain
# (case-insensitively) one of the configured fragments, as JSON pointers (RFC 6901: "~" is
# written "~0" and "/" is written "~1"; array positions are numbers).
secret_pattern := concat("|", redact_argument_keys)

# Top level: one match over all keys first (most calls carry no secret-looking key at all), then
# the keys one by one.
secret_scan := regex.match(secret_pattern, lower(concat("/", object.keys(input.action.arguments))))

redact_paths contains path if {
	secret_scan == true
	some key in object.keys(input.action.arguments)
	regex.match(secret_pattern, lower(key))
	path := pointer([key])
}

# Below the top level, only when an argument holds an object or an array, and its JSON text
# mentions a fragment: the members level by level, as [path, value], down to six levels (Rego has
# no recursion, and regorus's VM has no `walk` loop).
nested_scan if {
	some v in input.action.arguments
	is_collection(v)
	regex.match(secret_pattern, lower(json.marshal(input.action.arguments)))
}

args_level2 contains [[k1, k2], v] if {
	nested_scan
	some k1, v1 in input.action.arguments
	is_collection(v1)
	some k2, v in v1
}

args_level3 contains [array.concat(m[0], [k]), v] if {
	some m in args_level2
	is_collection(m[1])
	some k, v in m[1]
}

args_level4 contains [array.concat(m[0], [k]), v] if {
	some m in args_level3
	is_collection(m[1])
	some k, v in m[1]
}

args_level5 contains [array.concat(m[0], [k]), v] if {
	some m in args_level4
	is_collection(m[1])
	some k, v in m[1]
}

args_level6 contains [array.concat(m[0], [k]), v] if {
	some m in args_level5
	is_collection(m[1])
	some k, v in m[1]
}

args_nested := (((args_level2 | args_level3) | args_level4) | args_level5) | args_level6

is_collection(x) if is_object(x)

is_collection(x) if is_array(x)

redact_paths contains pointer(m[0]) if {
	nested_scan
	some m in args_nested
	key := m[0][count(m[0]) - 1]
	is_string(key)
	regex.match(secret_pattern, lower(key))
}

# Fail closed below the sixth level: what nests deeper is redacted whole.
redact_paths contains pointer(m[0]) if {
	nested_scan
	some m in args_level6
	is_collection(m[1])
	count(m[1]) > 0
}

pointer(segments) := concat("", ["/action/arguments", concat("", [pointer_segment(seg) | some seg in segments])])

pointer_segment(seg) := concat("", ["/", replace(replace(seg, "~", "~0"), "/", "~1")]) if {
	is_string(seg)
} else := sprintf("/%v", [seg])

# If the keys cannot be scanned (an unusable redact_argument_keys), all arguments are redacted.
redact := sort([path | some path in redact_paths]) if {
	is_boolean(secret_scan)
} else := ["/action/arguments"] if {
	is_object(input.action.arguments)
} else := []

# ---------------------------------------------------------------------------
# Texts for reasons (evaluated only for the step that decides)
# ---------------------------------------------------------------------------

held_text := concat(", ", sort(held_scopes)) if {
	count(held_scopes) > 0
} else := "none"

needed_text := sprintf("%s or %s", [wanted_scope, read_scope]) if {
	read_only
} else := wanted_scope

kind_text := json.marshal(input.action.kind) if {
	input.action.kind != null
} else := "(missing)"

destructive_reason := sprintf("%s on %s is destructive (%s)", [
	tool, server,
	concat("; ", sort([why | some why in destructive_why])),
])

production_reason := sprintf("%s on %s is a production write (upstream environment %s)", [
	tool, server,
	concat(", ", sort([env | some env in production_env])),
])

# ---------------------------------------------------------------------------
# Decision shapes
# ---------------------------------------------------------------------------

deny(reason) := {"allow": false, "approval": null, "reasons": [reason], "redact": redact}

permit(reason) := {"allow": true, "approval": null, "reasons": [reason], "redact": redact}

hold(reason) := {
	"allow": false,
	"approval": {"approvers": approvers, "quorum": quorum, "reason": reason, "expires_in": approval_expires_in},
	"reasons": [reason],
	"redact": redact,
}
