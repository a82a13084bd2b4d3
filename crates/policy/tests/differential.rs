//! Differential test: regorus (through Mandate's `Policy` wrapper) against real OPA.
//!
//! Every case in `differential/cases.json` was confirmed against OPA 1.20.2 by
//! `interop/rego_differential.py`. Each case is loaded with `Policy::from_modules` and its query
//! evaluated with `Policy::eval` (regorus's interpreter) and, when the query names a rule, also
//! with regorus's VM (what answers decisions in production); both must equal the expectation.
//!
//! Builtin errors: Mandate runs regorus as `opa eval` runs by default (a builtin runtime error
//! makes the expression undefined), so `expected` is compared; `expected_strict` records what
//! `opa eval --strict-builtin-errors` would say and is not used here.
//!
//! Comparison rules:
//! - `{"undefined": true}` expects `Ok(None)`; `{"error": true}` expects an evaluation error or a
//!   load error (a policy rejected by our load-time checks is reported as `error`, with the load
//!   error's text, so a case that only fails our stricter checks shows up clearly as a mismatch).
//! - `"set": true` compares arrays as sets (both sides sorted by canonical form).
//! - Numbers compare by value, so `1` and `1.0` are equal; booleans never equal numbers.
//! - `note` and `known_regorus_difference` are notes only: the expectation must still match.
//! - `eval` (`"query"` / `"rule"`) is informational: `Policy::eval` itself picks `eval_rule` for
//!   paths that name a rule and `eval_query` otherwise.

use mandate_policy::policy::Evaluator;
use mandate_policy::Policy;
use serde_json::Value;

const CASES: &str = include_str!("differential/cases.json");

/// What a case produced.
enum Outcome {
    Value(Value),
    Undefined,
    Error(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Value(v) => write!(f, "{v}"),
            Outcome::Undefined => write!(f, "<undefined>"),
            Outcome::Error(e) => write!(f, "<error: {e}>"),
        }
    }
}

fn run(case: &Value, evaluator: Evaluator) -> Option<Outcome> {
    let policy_text = case["policy"].as_str().expect("policy is a string");
    let query = case["query"].as_str().expect("query is a string");
    let policy = match Policy::from_modules(&[("case.rego", policy_text)], case.get("data")) {
        Ok(p) => p,
        Err(e) => return Some(Outcome::Error(format!("load error: {e}"))),
    };
    let input = case.get("input").cloned();
    let out = match evaluator {
        Evaluator::Interpreter => policy.eval(query, input),
        // The VM evaluates rules (decisions are rules), not arbitrary documents.
        Evaluator::Vm if policy.has_rule(query) => policy.eval_with(Evaluator::Vm, query, input),
        Evaluator::Vm => return None,
    };
    if let Err(e) = &out {
        // Production leaves such policies to the interpreter (see vm_safety and compile errors).
        let m = e.to_string();
        if m.contains("not run on the VM") || m.contains("cannot compile for the VM") {
            return None;
        }
    }
    Some(match out {
        Ok(Some(v)) => Outcome::Value(v),
        Ok(None) => Outcome::Undefined,
        Err(e) => Outcome::Error(format!("eval error: {e}")),
    })
}

/// A canonical string form: object keys sorted, integral numbers written without a fraction,
/// and (for `set`) nothing else changed — sets are sorted by the caller.
fn canon(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                format!("n:{}", f as i64)
            }
            Some(f) if n.is_f64() => format!("n:{f:?}"),
            _ => format!("n:{n}"),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(",")),
        Value::Object(o) => {
            let mut kv: Vec<_> = o
                .iter()
                .map(|(k, x)| format!("{}:{}", Value::String(k.clone()), canon(x)))
                .collect();
            kv.sort();
            format!("{{{}}}", kv.join(","))
        }
        other => other.to_string(),
    }
}

fn same(expected: &Value, got: &Value, as_set: bool) -> bool {
    if as_set {
        let (Value::Array(e), Value::Array(g)) = (expected, got) else {
            return false;
        };
        let mut e: Vec<_> = e.iter().map(canon).collect();
        let mut g: Vec<_> = g.iter().map(canon).collect();
        e.sort();
        g.sort();
        return e == g;
    }
    canon(expected) == canon(got)
}

fn is_marker(v: &Value, key: &str) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get(key) == Some(&Value::Bool(true)))
}

#[test]
fn regorus_agrees_with_opa_on_every_differential_case() {
    let cases: Vec<Value> = serde_json::from_str(CASES).expect("cases.json is a JSON array");
    assert!(
        cases.len() >= 30,
        "expected at least 30 differential cases, found {}",
        cases.len()
    );

    let mut mismatches = vec![];
    let mut vm_cases = 0;
    for case in &cases {
        let name = case["name"].as_str().expect("name is a string");
        let expected = case
            .get("expected")
            .unwrap_or_else(|| panic!("case {name} has no expectation"));
        let as_set = case.get("set").and_then(Value::as_bool).unwrap_or(false);
        for evaluator in [Evaluator::Interpreter, Evaluator::Vm] {
            let Some(got) = run(case, evaluator) else {
                continue;
            };
            if evaluator == Evaluator::Vm {
                vm_cases += 1;
            }
            let ok = if is_marker(expected, "undefined") {
                matches!(got, Outcome::Undefined)
            } else if is_marker(expected, "error") {
                matches!(got, Outcome::Error(_))
            } else {
                matches!(&got, Outcome::Value(v) if same(expected, v, as_set))
            };
            if !ok {
                mismatches.push(format!(
                    "  {name} ({evaluator:?}): expected {expected}, got {got}"
                ));
            }
        }
    }

    assert!(
        mismatches.is_empty(),
        "{} of {} differential cases disagree with OPA:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    assert!(vm_cases >= 30, "only {vm_cases} cases ran on the VM");
    eprintln!(
        "differential: {} cases agree with OPA ({vm_cases} also on the VM)",
        cases.len()
    );
}
