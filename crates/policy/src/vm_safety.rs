//! Whether regorus's VM may answer decisions for a policy.
//!
//! The VM is about five times faster than the interpreter, but it does not report every runtime
//! conflict OPA reports: two definitions of a complete rule (or function) producing different
//! values, or an object comprehension producing one key twice, are errors in OPA (and in the
//! interpreter) and silently undefined in the VM, where `not conflicting_rule` could then let a
//! request through. The differential test (`tests/differential.rs`) pins these cases. So a policy
//! is answered by the VM only when it has none of the constructs that can conflict:
//!
//! - a rule or function with more than one non-`default` definition that assigns a value
//!   (`x := 1 if a` and `x := 2 if b`); `else` chains are one definition, and rules that only
//!   ever produce `true` (`allow if ...`) or add to a set (`contains`) cannot conflict;
//! - a `default` function (not supported by the VM);
//! - an object comprehension or an object-valued partial rule (`x[k] := v`);
//!
//! - rules that may depend on themselves (`recursion.rs`): the interpreter reports recursion as an
//!   error, the VM overflows its stack.
//!
//! Anything the VM compiler rejects (for example `with`) is also left to the interpreter.

use std::collections::HashMap;

/// Why the VM must not answer for these modules, or `None` when it may.
pub fn vm_unsafe_reason(modules: &[(String, String)]) -> Option<String> {
    if let Some(cycle) = crate::recursion::find_cycle(modules) {
        return Some(format!("rules that may depend on themselves: {cycle}"));
    }
    let mut valued: HashMap<(String, String), u32> = HashMap::new();
    for (file, text) in modules {
        let mut package = String::new();
        for (n, line) in crate::scan::statements(text) {
            let at = || format!("{file}:{n}");
            if let Some(p) = line.strip_prefix("package ") {
                package = p.trim().to_string();
                continue;
            }
            let Some(crate::scan::Head {
                default: is_default,
                name,
                rest,
            }) = crate::scan::head(line)
            else {
                continue;
            };
            let mut after = rest;
            if after.starts_with('(') {
                if is_default {
                    return Some(format!("{}: default function {name}", at()));
                }
                after = skip_balanced(after).trim_start();
            } else if after.starts_with('[') || after.starts_with('.') {
                if head_assigns(after) {
                    return Some(format!("{}: object-valued rule {name}[...]", at()));
                }
                continue;
            }
            if is_default {
                continue;
            }
            if after.starts_with(":=") || (after.starts_with('=') && !after.starts_with("==")) {
                let count = valued
                    .entry((package.clone(), name.to_string()))
                    .or_default();
                *count += 1;
                if *count > 1 {
                    return Some(format!(
                        "{}: {name} has several definitions that assign values",
                        at()
                    ));
                }
            }
        }
        if let Some(line) = object_comprehension_line(text) {
            return Some(format!("{file}:{line}: object comprehension"));
        }
    }
    None
}

/// `s` starts with `(`: what follows the matching `)`.
fn skip_balanced(s: &str) -> &str {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[i + 1..];
                }
            }
            _ => {}
        }
    }
    ""
}

/// Whether a ref head (`[k] := v`, `.a.b := v`) assigns a value.
fn head_assigns(after: &str) -> bool {
    let head = after.split(" if").next().unwrap_or(after);
    head.contains(":=") || head.contains(" = ")
}

/// The line of the first `{ key: value | ... }` outside strings and comments.
fn object_comprehension_line(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    // For each open brace: (saw a top-level ':' in it, nesting of ( and [ inside it).
    let mut braces: Vec<(bool, i32)> = vec![];
    let (mut i, mut line) = (0usize, 1u32);
    while i < b.len() {
        if let Some(next) = crate::scan::skip_literal(b, i, &mut line) {
            i = next;
            continue;
        }
        match b[i] {
            b'\n' => line += 1,
            b'{' => braces.push((false, 0)),
            b'}' => {
                braces.pop();
            }
            b'(' | b'[' => {
                if let Some(top) = braces.last_mut() {
                    top.1 += 1;
                }
            }
            b')' | b']' => {
                if let Some(top) = braces.last_mut() {
                    top.1 -= 1;
                }
            }
            b':' if b.get(i + 1) != Some(&b'=') => {
                if let Some(top) = braces.last_mut() {
                    if top.1 == 0 {
                        top.0 = true;
                    }
                }
            }
            b'|' if braces.last().is_some_and(|t| t.0 && t.1 == 0) => return Some(line),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Option<String> {
        vm_unsafe_reason(&[("p.rego".into(), text.into())])
    }

    #[test]
    fn constructs_that_cannot_conflict_are_vm_safe() {
        assert_eq!(
            check(
                r#"package p
default allow := false
allow if input.a
allow if input.b
s contains x if some x in input.xs
v := 1 if input.a else := 2
f(x) := y if { y := x + 1 }
g(x) if x > 1
g(x) if x < 0
o := {"a": 1, "b": [1 | some i in input.xs]}
t := {x | some x in input.xs}
"#
            ),
            None
        );
    }

    #[test]
    fn constructs_that_can_conflict_are_not() {
        for (text, needle) in [
            (
                "package p\nx := 1 if input.a\nx := 2 if input.b\n",
                "p.rego:3: x has several",
            ),
            (
                "package p\nf(x) := 1 if x\nf(x) := 2 if x\n",
                "f has several",
            ),
            (
                "package p\ndefault f(_) := 0\nf(x) := x\n",
                "default function f",
            ),
            (
                "package p\no := {k: v | some k, v in input}\n",
                "p.rego:2: object comprehension",
            ),
            (
                "package p\nm[k] := v if some k, v in input\n",
                "object-valued rule m",
            ),
        ] {
            let r = check(text).unwrap_or_else(|| panic!("{text} passed"));
            assert!(r.contains(needle), "{r}");
        }
    }
}
