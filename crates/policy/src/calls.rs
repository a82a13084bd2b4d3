//! A load-time check that every function a policy calls exists.
//!
//! regorus resolves function calls when they are first evaluated, so a typo in a rarely taken
//! branch (`startwith(...)`) would otherwise surface as a deny in production instead of an error
//! at load. This scanner finds call sites (`name(`, `pkg.name(`) outside strings and comments and
//! checks each against regorus's builtins and the functions the policy defines.

use crate::error::LoadError;

const KEYWORDS: &[&str] = &[
    "if", "not", "some", "every", "with", "as", "else", "contains", "in", "default", "package",
    "import",
];

/// Call sites in `text`: (dotted name, line).
fn call_sites(text: &str) -> Vec<(String, u32)> {
    crate::scan::identifiers(text)
        .into_iter()
        .filter(|(name, _, call)| *call && !KEYWORDS.contains(name))
        .map(|(name, line, _)| (name.to_string(), line))
        .collect()
}

/// Functions a module defines (top-level heads followed by `(`).
fn defined(text: &str) -> impl Iterator<Item = &str> {
    crate::scan::statements(text)
        .into_iter()
        .filter_map(|(_, l)| crate::scan::head(l))
        .filter(|h| h.rest.starts_with('('))
        .map(|h| h.name)
}

/// Deepest nesting of `{`, `[` and `(` (together) accepted in a module. regorus's parser takes
/// time exponential in that depth (found by the `policy` fuzz target: 16 levels of `{` took
/// seconds, 20 levels of `{"a": {...}}` more than a minute, 19 levels of `[` over 10 s), so deeper
/// nesting is refused before it is parsed.
pub const MAX_BRACE_DEPTH: u32 = 14;

/// Refuses a module whose brackets nest deeper than [`MAX_BRACE_DEPTH`].
pub fn check_nesting(file: &str, text: &str) -> Result<(), LoadError> {
    let b = text.as_bytes();
    let (mut i, mut line, mut depth) = (0usize, 1u32, 0u32);
    while i < b.len() {
        if let Some(next) = crate::scan::skip_literal(b, i, &mut line) {
            i = next;
            continue;
        }
        match b[i] {
            b'\n' => line += 1,
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_BRACE_DEPTH {
                    return Err(LoadError {
                        file: file.to_string(),
                        line: Some((line, 1)),
                        message: format!(
                            "brackets nest more than {MAX_BRACE_DEPTH} deep: move deeply nested documents to a data file (.json/.yaml) or flatten them"
                        ),
                    });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The first call to a function that neither regorus nor the policy defines.
pub fn check(modules: &[(String, String)]) -> Result<(), LoadError> {
    let own: std::collections::HashSet<&str> =
        modules.iter().flat_map(|(_, t)| defined(t)).collect();
    for (file, text) in modules {
        for (name, line) in call_sites(text) {
            let last = name.rsplit('.').next().unwrap_or(&name);
            let known = name == "print"
                || name == "set"
                || regorus::unstable::BUILTINS.contains_key(name.as_str())
                || own.contains(last);
            if !known {
                return Err(LoadError {
                    file: file.clone(),
                    line: Some((line, 1)),
                    message: format!(
                        "unknown function {name}: not a Rego builtin regorus provides nor a function this policy defines"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<(), LoadError> {
        check(&[("p.rego".into(), text.into())])
    }

    #[test]
    fn builtins_own_functions_strings_and_comments_pass() {
        run(r#"package p
# frobnicate(1) in a comment
f(x) := y if { y := x + 1 }
allow if { startswith(input.a, "b"); f(1) == 2; object.get(input, "x", 1); msg := "nope(1)"; print(msg) }
r := data.p.f(2)
s := `raw frob(`
"#)
        .unwrap();
    }

    #[test]
    fn deep_bracket_nesting_is_refused_before_parsing() {
        let nested = |n: usize| {
            format!(
                "package p\nx := {}1{}\n# {{{{{{{{{{{{{{{{{{{{\n",
                "{\"a\": ".repeat(n),
                "}".repeat(n)
            )
        };
        let e = check_nesting("p.rego", &nested(15)).unwrap_err();
        assert_eq!(e.line, Some((2, 1)));
        check_nesting("p.rego", &nested(14)).unwrap();
        let brackets = format!("package p\nx := {}1{}\n", "[".repeat(15), "]".repeat(15));
        assert!(check_nesting("p.rego", &brackets).is_err());
    }

    #[test]
    fn an_unknown_function_is_reported_with_its_line() {
        let e = run("package p\n\nallow if {\n  startwith(input.a, \"b\")\n}\n").unwrap_err();
        assert_eq!(e.line, Some((4, 1)));
        assert!(e.message.contains("startwith"), "{e}");
    }
}
