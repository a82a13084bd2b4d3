//! Scanning Rego source text for the load-time checks (`calls.rs`, `recursion.rs`,
//! `vm_safety.rs`, rule names in `policy.rs`): the one place that knows how to step over
//! strings, raw strings and comments, find top-level statements (by bracket depth, so
//! indentation does not matter), read a rule head and list dotted identifiers.

/// Where the string, raw string or comment starting at `b[i]` ends: the index after its closing
/// quote (a comment, or a string left open at the end of its line, ends at the newline, which is
/// not consumed). Newlines inside a raw string are counted in `line`. `None` when `b[i]` starts
/// none of them.
pub fn skip_literal(b: &[u8], i: usize, line: &mut u32) -> Option<usize> {
    let mut j = i + 1;
    match b[i] {
        b'#' => {
            while j < b.len() && b[j] != b'\n' {
                j += 1;
            }
            Some(j)
        }
        b'"' => {
            while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            Some(if j < b.len() && b[j] == b'"' {
                j + 1
            } else {
                j.min(b.len())
            })
        }
        b'`' => {
            while j < b.len() && b[j] != b'`' {
                if b[j] == b'\n' {
                    *line += 1;
                }
                j += 1;
            }
            Some((j + 1).min(b.len()))
        }
        _ => None,
    }
}

/// `(line number, the line from its first non-blank character)` of each line that starts at
/// depth 0.
pub fn statements(text: &str) -> Vec<(u32, &str)> {
    let b = text.as_bytes();
    let mut out = vec![];
    let mut depth: i32 = 0;
    let mut line: u32 = 1;
    let mut at_line_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if at_line_start {
            if c == b' ' || c == b'\t' || c == b'\r' {
                i += 1;
                continue;
            }
            at_line_start = false;
            if depth <= 0 && c != b'\n' && c != b'#' {
                let end = text[i..].find('\n').map_or(text.len(), |e| i + e);
                out.push((line, text[i..end].trim_end()));
            }
        }
        if let Some(next) = skip_literal(b, i, &mut line) {
            i = next;
            continue;
        }
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
            }
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    out
}

/// A rule (or function) head: `[default] name rest`.
pub struct Head<'a> {
    /// Whether it is a `default` definition.
    pub default: bool,
    /// The rule's name (the first identifier).
    pub name: &'a str,
    /// What follows the name, without leading blanks (`:= 1`, `(x) := ...`, `[k] := v`, `if ...`).
    pub rest: &'a str,
}

/// The head of a top-level statement, or `None` for `package`, `import`, `else` and anything
/// that does not start with an identifier.
pub fn head(stmt: &str) -> Option<Head<'_>> {
    let (default, s) = match stmt.strip_prefix("default ") {
        Some(r) => (true, r.trim_start()),
        None => (false, stmt),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || matches!(name, "package" | "import" | "else" | "default")
    {
        return None;
    }
    Some(Head {
        default,
        name,
        rest: s[end..].trim_start(),
    })
}

/// Dotted identifiers outside strings and comments (`a`, `lib.f`, `data.p.r`; a trailing dot
/// dropped), with their line and whether a `(` follows (a call). Parts after a dot are not
/// listed on their own.
pub fn identifiers(text: &str) -> Vec<(&str, u32, bool)> {
    let b = text.as_bytes();
    let mut out = vec![];
    let (mut i, mut line) = (0usize, 1u32);
    while i < b.len() {
        if let Some(next) = skip_literal(b, i, &mut line) {
            i = next;
            continue;
        }
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            if !(start > 0 && b[start - 1] == b'.') {
                let call = i < b.len() && b[i] == b'(';
                out.push((text[start..i].trim_end_matches('.'), line, call));
            }
            continue;
        }
        if c == b'\n' {
            line += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indented_rules_count_and_bodies_do_not() {
        let text = "package p\n\n  allow if {\n    x := 1\n    y := {\"a\": 1}\n  }\n    deny := true if {\n  z := 2\n} else := false\nmsg := \"{ not a brace\" # {\nlast := `raw\n{` \nend := 1\n";
        let s: Vec<&str> = statements(text).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            s,
            [
                "package p",
                "allow if {",
                "deny := true if {",
                "msg := \"{ not a brace\" # {",
                "last := `raw",
                "end := 1"
            ]
        );
    }

    #[test]
    fn heads_and_identifiers_skip_what_is_not_code() {
        let h = head("default  f(x) := 0").unwrap();
        assert!(h.default && h.name == "f" && h.rest == "(x) := 0");
        assert!(head("else := 1").is_none() && head("import data.x").is_none());
        let ids = identifiers("a := lib.f(1) # b(\nc := \"d(\" + `e\n(` + data.p.r.\n");
        assert_eq!(
            ids,
            [
                ("a", 1, false),
                ("lib.f", 1, true),
                ("c", 2, false),
                ("data.p.r", 3, false)
            ]
        );
    }
}
