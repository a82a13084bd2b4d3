//! Finds rules that may depend on themselves.
//!
//! OPA refuses recursive rules at compile time. regorus's interpreter finds recursion when it
//! evaluates it (an error, so a deny), but its VM recurses until the thread's stack overflows,
//! which aborts the process (found by the `policy` fuzz target with `decision := decision`). So a
//! policy where a rule may reach itself is decided by the interpreter, never by the VM.
//!
//! The graph is read from the text: each top-level rule's body is the text up to the next
//! top-level statement, and every identifier in it that names a rule (bare in the same package,
//! through an import alias, or as `data.pkg.rule`) is an edge. A local variable that shadows a
//! rule name adds an edge that is not there: the cost is only speed (the interpreter decides).

use std::collections::{BTreeMap, BTreeSet};

type Node = (String, String);

/// A cycle of rules (`pkg.a -> pkg.b -> pkg.a`), if the modules may contain one.
pub fn find_cycle(modules: &[(String, String)]) -> Option<String> {
    // Rules per package, and each rule's referenced identifiers (with the module's imports).
    let mut rules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bodies: Vec<(Node, Vec<String>, BTreeMap<String, String>)> = vec![];
    for (_, text) in modules {
        let statements = crate::scan::statements(text);
        let lines: Vec<&str> = text.lines().collect();
        let mut package = String::new();
        let mut imports: BTreeMap<String, String> = BTreeMap::new();
        for (i, (line_no, stmt)) in statements.iter().enumerate() {
            if let Some(p) = stmt.strip_prefix("package ") {
                package = p.trim().to_string();
                continue;
            }
            if let Some(imp) = stmt.strip_prefix("import ") {
                let imp = imp.trim();
                let (path, alias) = match imp.split_once(" as ") {
                    Some((p, a)) => (p.trim(), a.trim().to_string()),
                    None => (imp, imp.rsplit('.').next().unwrap_or(imp).to_string()),
                };
                if let Some(p) = path.strip_prefix("data.") {
                    imports.insert(alias, p.to_string());
                }
                continue;
            }
            let Some(head) = crate::scan::head(stmt) else {
                continue;
            };
            let name = head.name;
            rules
                .entry(package.clone())
                .or_default()
                .insert(name.to_string());
            // The body: what follows the name, to the next top-level statement.
            let first = *line_no as usize - 1;
            let last = statements
                .get(i + 1)
                .map(|(n, _)| *n as usize - 1)
                .unwrap_or(lines.len());
            let mut text = head.rest.to_string();
            for l in &lines[first + 1..last] {
                text.push('\n');
                text.push_str(l);
            }
            bodies.push((
                (package.clone(), name.to_string()),
                crate::scan::identifiers(&text)
                    .into_iter()
                    .map(|(id, _, _)| id.to_string())
                    .collect(),
                imports.clone(),
            ));
        }
    }
    let mut edges: BTreeMap<Node, BTreeSet<Node>> = BTreeMap::new();
    for ((pkg, name), idents, imports) in &bodies {
        let out = edges.entry((pkg.clone(), name.clone())).or_default();
        for id in idents {
            if let Some(target) = resolve(id, pkg, imports, &rules) {
                out.insert(target);
            }
        }
    }
    // Depth-first search for a back edge.
    let mut state: BTreeMap<&Node, u8> = BTreeMap::new();
    for start in edges.keys() {
        let mut path = vec![];
        if let Some(c) = dfs(start, &edges, &mut state, &mut path) {
            return Some(c);
        }
    }
    None
}

fn dfs<'a>(
    n: &'a Node,
    edges: &'a BTreeMap<Node, BTreeSet<Node>>,
    state: &mut BTreeMap<&'a Node, u8>,
    path: &mut Vec<&'a Node>,
) -> Option<String> {
    match state.get(n) {
        Some(2) => return None,
        Some(1) => {
            let from = path.iter().position(|p| *p == n).unwrap_or(0);
            let mut names: Vec<String> = path[from..]
                .iter()
                .map(|(p, r)| format!("{p}.{r}"))
                .collect();
            names.push(format!("{}.{}", n.0, n.1));
            return Some(names.join(" -> "));
        }
        _ => {}
    }
    state.insert(n, 1);
    path.push(n);
    if let Some(next) = edges.get(n) {
        for m in next {
            if let Some((k, _)) = edges.get_key_value(m) {
                if let Some(c) = dfs(k, edges, state, path) {
                    return Some(c);
                }
            }
        }
    }
    path.pop();
    state.insert(n, 2);
    None
}

fn resolve(
    id: &str,
    pkg: &str,
    imports: &BTreeMap<String, String>,
    rules: &BTreeMap<String, BTreeSet<String>>,
) -> Option<Node> {
    let parts: Vec<&str> = id.split('.').collect();
    let known = |p: &str, r: &str| {
        rules
            .get(p)
            .is_some_and(|s| s.contains(r))
            .then(|| (p.to_string(), r.to_string()))
    };
    if parts[0] == "data" {
        // The longest package prefix that names a package with that rule.
        for split in (1..parts.len()).rev() {
            let p = parts[1..split].join(".");
            if let Some(n) = known(&p, parts[split]) {
                return Some(n);
            }
        }
        return None;
    }
    if let Some(target) = imports.get(parts[0]) {
        if parts.len() > 1 {
            let mut p = target.clone();
            for (k, part) in parts[1..].iter().enumerate() {
                if let Some(n) = known(&p, part) {
                    return Some(n);
                }
                if k + 2 < parts.len() + 1 {
                    p = format!("{p}.{part}");
                }
            }
        }
        return None;
    }
    known(pkg, parts[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(text: &str) -> Option<String> {
        find_cycle(&[("p.rego".into(), text.into())])
    }

    #[test]
    fn self_and_mutual_recursion_are_found() {
        assert_eq!(
            cycle("package p\ndecision := decision if input.x\n").as_deref(),
            Some("p.decision -> p.decision")
        );
        let c = cycle("package p\nx := y\ny := z\nz := x\n").unwrap();
        assert!(c.contains("p.x") && c.contains("p.z"), "{c}");
        let c = find_cycle(&[
            (
                "a.rego".into(),
                "package a\nimport data.b\nx := b.y\n".into(),
            ),
            ("b.rego".into(), "package b\ny := data.a.x\n".into()),
        ])
        .unwrap();
        assert!(c.contains("a.x") && c.contains("b.y"), "{c}");
    }

    #[test]
    fn ordinary_policies_have_no_cycle() {
        assert_eq!(
            cycle("package p\nimport data.lib\ndefault allow := false\nallow if { x; lib.f(1) }\nx := \"allow\" if input.a\nf(v) := v\n"),
            None
        );
    }
}
