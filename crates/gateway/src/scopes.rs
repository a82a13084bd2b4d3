//! Which scope a tool needs. By default a tool `T` on upstream `U` needs `U:T`; an upstream can
//! map tools, by exact name or glob (`*` any run of characters, `?` one), to other scopes, first
//! match wins. A tool whose default scope would not be a valid scope (characters outside RFC 6749
//! scope tokens) and that no rule maps needs a scope nobody can hold: it is refused, never
//! guessed.

use mandate_core::{Scope, ScopeSet};

/// One mapping rule: tools matching `pattern` need `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    /// An exact tool name or a glob.
    pub pattern: String,
    /// The scope those tools need.
    pub scope: Scope,
}

/// The scopes of one upstream's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolScopes {
    upstream: String,
    rules: Vec<ToolRule>,
}

/// Why a tool cannot be called by anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Both names are quoted and escaped: a tool name is the caller's, and may hold line breaks or
// terminal escapes that must not reach a client's screen or a log as they are.
#[error("tool {tool:?} of {upstream} has no valid default scope ({:?}); map it to a scope in the upstream's configuration", format!("{}:{}", .upstream, .tool))]
pub struct NoScope {
    /// The upstream.
    pub upstream: String,
    /// The tool.
    pub tool: String,
}

impl ToolScopes {
    /// The scopes of `upstream`'s tools under `rules` (in order).
    pub fn new(upstream: &str, rules: Vec<ToolRule>) -> Self {
        ToolScopes {
            upstream: upstream.to_string(),
            rules,
        }
    }

    /// The scope `tool` needs.
    pub fn required(&self, tool: &str) -> Result<Scope, NoScope> {
        if let Some(r) = self.rules.iter().find(|r| glob(&r.pattern, tool)) {
            return Ok(r.scope.clone());
        }
        Scope::parse(&format!("{}:{tool}", self.upstream))
            .ok()
            .filter(|s| !s.is_reserved())
            .ok_or_else(|| NoScope {
                upstream: self.upstream.clone(),
                tool: tool.to_string(),
            })
    }

    /// Whether a caller holding `held` may use `tool` (so may see it listed).
    pub fn allows(&self, held: &ScopeSet, tool: &str) -> bool {
        self.required(tool).is_ok_and(|s| held.covers(&s))
    }
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character, the rest literal).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn a_tool_needs_upstream_colon_tool_unless_a_rule_maps_it() {
        let t = ToolScopes::new(
            "fs",
            vec![
                ToolRule {
                    pattern: "read_*".into(),
                    scope: Scope::parse("fs:read").unwrap(),
                },
                ToolRule {
                    pattern: "list_directory".into(),
                    scope: Scope::parse("fs:read").unwrap(),
                },
            ],
        );
        assert_eq!(t.required("read_file").unwrap().as_str(), "fs:read");
        assert_eq!(t.required("list_directory").unwrap().as_str(), "fs:read");
        assert_eq!(t.required("write_file").unwrap().as_str(), "fs:write_file");
        assert!(t.allows(&scopes("fs:read"), "read_text_file"));
        assert!(!t.allows(&scopes("fs:read"), "write_file"));
        assert!(t.allows(&scopes("fs:*"), "write_file"));
    }

    #[test]
    fn a_tool_without_a_valid_scope_is_allowed_to_nobody() {
        let t = ToolScopes::new("fs", vec![]);
        assert!(t.required("has space").is_err());
        assert!(!t.allows(&scopes("*"), "has space"));
        // An upstream named `mandate` does not make tools need Mandate's own privileges.
        let m = ToolScopes::new("mandate", vec![]);
        assert!(m.required("admin").is_err());
    }

    #[test]
    fn why_a_tool_has_no_scope_is_one_line_whatever_its_name_holds() {
        let t = ToolScopes::new("fs", vec![]);
        let e = t
            .required("echo\n2026 INFO fake line\u{1b}[31m\0")
            .unwrap_err();
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains(r#"("fs:echo\n2026 INFO fake line"#), "{text}");
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(glob("*", ""));
        assert!(glob("read_*", "read_file"));
        assert!(glob("*_file", "write_file"));
        assert!(glob("a?c", "abc"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("read_*", "write_file"));
        assert!(!glob("abc", "abcd"));
    }

    proptest! {
        #[test]
        fn a_literal_pattern_matches_only_itself(a in "[a-z_]{0,12}", b in "[a-z_]{0,12}") {
            prop_assert_eq!(glob(&a, &b), a == b);
        }

        #[test]
        fn a_star_suffix_is_a_prefix_test(p in "[a-z_]{0,6}", n in "[a-z_]{0,12}") {
            prop_assert_eq!(glob(&format!("{p}*"), &n), n.starts_with(&p));
        }
    }
}
