//! The top-level statements of a Rego module (package, imports, rule heads), found by tracking
//! bracket depth outside strings and comments, so that indentation does not matter: a line is a
//! statement when it starts at depth 0. Used by the load-time checks that need rule names.

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
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
            }
            b'#' => {
                while i + 1 < b.len() && b[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth -= 1,
            _ => {}
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
}
