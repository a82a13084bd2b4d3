# Default Mandate policy for tool calls (MCP tools and HTTP API routes).
#
# Query: data.mandate.authz.decision
# Result: {"allow": bool, "approval": null | {...}, "reasons": [string], "redact": [string]}
#
# Outline (the first matching rule decides; the rules are mutually exclusive):
#   1. action.kind is not "mcp" or "http"            -> deny
#   2. the call does not name a server and a tool    -> deny
#   3. no held scope covers "<server>:<tool>"        -> deny (reason names the scope needed)
#   4. the tool is destructive                       -> hold for approval
#   5. a write to a production upstream              -> hold for approval
#   6. a read-only call                              -> allow
#   7. any other write                               -> allow
# Anything else (including evaluation surprises) falls through to the default: deny.
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

# ---------------------------------------------------------------------------
# Facts about the call
# ---------------------------------------------------------------------------

# Only MCP tool calls and HTTP routes are judged by this policy.
tool_call_kinds := {"mcp", "http"}

is_tool_call if input.action.kind in tool_call_kinds

# The call names the upstream server and the tool (or route action).
is_named if {
	is_string(input.action.server)
	input.action.server != ""
	is_string(input.action.tool)
	input.action.tool != ""
}

# Both checks passed: the remaining rules may look at server and tool.
valid_call if {
	is_tool_call
	is_named
}

server := input.action.server

tool := input.action.tool

# The scope this call needs, e.g. "github:delete_repo".
wanted_scope := concat(":", [server, tool])

# Read-only tools may also be covered by "<server>:read".
read_scope := concat(":", [server, "read"])

# Read-only: the MCP annotation says so, or the HTTP method is safe.
read_only_methods := {"GET", "HEAD", "OPTIONS"}

read_only if input.action.annotations.readOnlyHint == true

read_only if {
	is_string(input.action.http.method)
	upper(input.action.http.method) in read_only_methods
}

# The mandate's scopes (only strings count; a malformed list counts as none).
held_scopes := [s | some s in input.scopes; is_string(s)] if {
	is_array(input.scopes)
} else := []

# In scope: some held scope covers "<server>:<tool>" ...
in_scope if {
	some held in held_scopes
	lib.scope_covers(held, wanted_scope)
}

# ... or the call is read-only and some held scope covers "<server>:read".
in_scope if {
	read_only
	some held in held_scopes
	lib.scope_covers(held, read_scope)
}

# Why the call counts as destructive (empty when it does not).
# The readOnlyHint never cancels these: a tool named "delete_x" that claims to be
# read-only still needs approval (fail safe).
destructive_why contains "annotated destructiveHint" if {
	input.action.annotations.destructiveHint == true
}

destructive_why contains sprintf("name contains \"%s\"", [verb]) if {
	is_string(tool)
	some verb in lib.destructive_verbs
	contains(lower(tool), lower(verb))
}

destructive if count(destructive_why) > 0

# The environment of the upstream: action.upstream.environment, else labels.environment.
upstream_environments contains env if {
	env := input.action.upstream.environment
	is_string(env)
}

upstream_environments contains env if {
	env := input.action.upstream.labels.environment
	is_string(env)
}

production_env contains env if {
	some env in upstream_environments
	some prod in lib.production_environments
	lower(env) == lower(prod)
}

production if count(production_env) > 0

# ---------------------------------------------------------------------------
# Redaction: JSON pointers to top-level arguments that look like secrets
# ---------------------------------------------------------------------------

redact_paths contains path if {
	is_object(input.action.arguments)
	some key, _ in input.action.arguments
	some fragment in lib.redact_argument_keys
	contains(lower(key), lower(fragment))
	path := concat("/", ["/action/arguments", lib.json_pointer_token(key)])
}

# As a sorted array, so decisions are stable.
redact := sort([path | some path in redact_paths])

# ---------------------------------------------------------------------------
# Reason sentences
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
# Decision builders
# ---------------------------------------------------------------------------

deny(reason) := {"allow": false, "approval": null, "reasons": [reason], "redact": redact}

permit(reason) := {"allow": true, "approval": null, "reasons": [reason], "redact": redact}

# Held for approval: allow stays false so a PEP that only reads "allow" fails closed.
hold(reason) := {
	"allow": false,
	"approval": {"approvers": lib.approvers, "quorum": lib.quorum, "reason": reason},
	"reasons": [reason],
	"redact": redact,
}

# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------

# 1. Not a tool call at all.
decision := deny(sprintf("action kind %s is not a tool call (expected \"mcp\" or \"http\")", [kind_text])) if {
	not is_tool_call
}

# 2. A tool call that does not say which server and tool it targets.
decision := deny("tool call does not name both a server and a tool") if {
	is_tool_call
	not is_named
}

# 3. Outside the mandate's scopes.
decision := deny(sprintf("needs scope %s (held: %s)", [needed_text, held_text])) if {
	valid_call
	not in_scope
}

# 4. Destructive: always held for approval, whatever the other hints say.
decision := hold(destructive_reason) if {
	valid_call
	in_scope
	destructive
}

# 5. A write to a production upstream: held for approval.
decision := hold(production_reason) if {
	valid_call
	in_scope
	not destructive
	not read_only
	production
}

# 6. Read-only and within scope: allowed.
decision := permit(sprintf("%s on %s is read-only and within the mandate's scopes", [tool, server])) if {
	valid_call
	in_scope
	not destructive
	read_only
}

# 7. Any other write within scope: allowed.
decision := permit(sprintf("%s on %s is within the mandate's scopes", [tool, server])) if {
	valid_call
	in_scope
	not destructive
	not read_only
	not production
}
