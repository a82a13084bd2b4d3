# Shared helpers for the default Mandate policy pack.
#
# Everything configurable is read from data.mandate_config (policies/default/data.json).
# Each setting falls back to the built-in default below when it is absent or null,
# so a custom data.json only needs the keys it changes.
package mandate.lib

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

# The whole configuration object, or {} when no data.mandate_config is loaded.
default config := {}

config := data.mandate_config if is_object(data.mandate_config)

# Tool-name fragments that mark a tool as destructive (matched case-insensitively).
default_destructive_verbs := [
	"delete", "deploy", "rotate", "publish", "charge",
	"drop", "transfer", "destroy", "purge", "truncate",
]

# Argument-key fragments whose values are redacted from logs and approval requests.
default_redact_argument_keys := [
	"password", "secret", "token", "api_key", "apikey", "credential", "private_key",
	"authorization", "cookie",
]

# Working hours used by the delegation rule on long-lived mandates.
default_working_hours := {"start": 8, "end": 18, "timezone": "UTC", "weekdays_only": true}

# setting(key, fallback) is config[key], or fallback when the key is absent or null.
setting(key, fallback) := value if {
	value := config[key]
	value != null
} else := fallback

destructive_verbs := setting("destructive_verbs", default_destructive_verbs)

redact_argument_keys := setting("redact_argument_keys", default_redact_argument_keys)

approvers := setting("approvers", ["role:approver"])

quorum := setting("quorum", 1)

production_environments := setting("production_environments", ["production", "prod"])

# The delegation section, or {} when it is absent, null or not an object.
delegation_config := setting_object(config, "delegation")

# delegation_setting(key) is delegation_config[key], or null when absent (null = rule off).
delegation_setting(key) := object.get(delegation_config, key, null)

# Configured working hours, with missing fields taken from the defaults.
working_hours := object.union(default_working_hours, setting_object(delegation_config, "working_hours"))

# setting_object(obj, key) is obj[key] when that is an object, else {}.
setting_object(obj, key) := value if {
	value := obj[key]
	is_object(value)
} else := {}

# ---------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------

# scope_covers(held, wanted): a held scope covers a wanted one when they are equal,
# or when held ends with "*" and wanted starts with held minus the "*"
# ("github:*" covers every github tool, "*" covers everything).
scope_covers(held, wanted) if held == wanted

scope_covers(held, wanted) if {
	endswith(held, "*")
	startswith(wanted, trim_suffix(held, "*"))
}

# pattern_matches(pattern, value): the same rule for principals in delegation rules:
# "agent:coder" matches only itself, "agent:support-*" matches every agent whose
# name starts with "support-", and "*" matches everyone.
pattern_matches(pattern, value) if scope_covers(pattern, value)

# json_pointer_token(key) escapes an object key for use in a JSON pointer (RFC 6901).
json_pointer_token(key) := replace(replace(key, "~", "~0"), "/", "~1")
