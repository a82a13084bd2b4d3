//! One loaded, validated policy: Rego modules and data in a regorus engine, plus its version.
//! Immutable once built; every evaluation works on a cheap clone of the engine, so a `Policy` is
//! shared by any number of threads.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value as RValue};
use serde_json::Value;

use crate::decision::{Decision, Query};
use crate::error::{one_line, EvalError, LoadError};
use crate::sources::{DataFormat, Sources};
use crate::vms::Compiled;

/// Longest query `eval_path` hands regorus (which refuses much longer ones).
const MAX_QUERY_LEN: usize = 512;

/// Default limit on one evaluation; past it the evaluation fails (and the decision denies).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// How a rule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluator {
    /// regorus's tree-walking interpreter (everything: tests, `with`, whole packages).
    Interpreter,
    /// regorus's register VM: the two decision rules are compiled to it at load, and it is what
    /// answers decisions (about five times faster); a rule it cannot compile is interpreted.
    Vm,
}

/// A loaded policy.
pub struct Policy {
    engine: Engine,
    /// The decision rules compiled for the VM, by path.
    compiled: BTreeMap<&'static str, Compiled>,
    /// Why the VM may not answer for this policy (see `vm_safety`), if it may not.
    vm_unsafe: Option<String>,
    /// The data document, for the VM.
    data: RValue,
    timer: ExecutionTimerConfig,
    version: String,
    /// Package (`data.mandate.authz`) -> rule names defined in it, in source order.
    rules: BTreeMap<String, Vec<String>>,
    /// Package -> `test_` rule names.
    tests: BTreeMap<String, Vec<String>>,
    files: usize,
}

/// The result of one `test_` rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// `data.pkg.test_name`.
    pub name: String,
    /// Whether it evaluated to `true`.
    pub passed: bool,
    /// What it evaluated to otherwise (`undefined`, `false`, or an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// How long it took, in microseconds.
    pub micros: u64,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.version)
            .field("packages", &self.rules.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Policy {
    /// Loads and validates every policy and data file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, LoadError> {
        Self::build(&Sources::read_dir(dir)?, DEFAULT_TIMEOUT)
    }

    /// Builds a policy from modules and a data document (tests, embedded policies).
    pub fn from_modules(modules: &[(&str, &str)], data: Option<&Value>) -> Result<Self, LoadError> {
        let mut s = Sources {
            modules: modules
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            data: vec![],
        };
        if let Some(d) = data {
            s.data.push(crate::sources::DataFile {
                name: "data.json".into(),
                prefix: vec![],
                format: DataFormat::Json,
                text: d.to_string(),
            });
        }
        Self::build(&s, DEFAULT_TIMEOUT)
    }

    /// Builds and validates a policy; `timeout` bounds each evaluation.
    pub fn build(s: &Sources, timeout: Duration) -> Result<Self, LoadError> {
        let mut engine = Engine::new();
        let timer = ExecutionTimerConfig {
            limit: timeout,
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        };
        engine.set_execution_timer_config(timer);
        // OPA's default semantics: a builtin's runtime error makes its expression undefined (as
        // `opa eval` without --strict-builtin-errors). The VM behaves the same way, so the two
        // evaluators agree; fail-closed holds at the decision level, where anything but an
        // explicit `allow: true` denies.
        engine.set_strict_builtin_errors(false);
        let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut tests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, text) in &s.modules {
            crate::calls::check_nesting(name, text)?;
            let pkg = engine
                .add_policy(name.clone(), text.clone())
                .map_err(|e| LoadError::from_regorus(name, &e))?;
            for rule in rule_names(text) {
                let list = if rule.starts_with("test_") {
                    tests.entry(pkg.clone()).or_default()
                } else {
                    rules.entry(pkg.clone()).or_default()
                };
                if !list.contains(&rule) {
                    list.push(rule);
                }
            }
        }
        crate::calls::check(&s.modules)?;
        for d in &s.data {
            let mut v = match d.format {
                DataFormat::Json => RValue::from_json_str(&d.text),
                DataFormat::Yaml => RValue::from_yaml_str(&d.text),
            }
            .map_err(|e| {
                LoadError::file(
                    &d.name,
                    format!("is not valid {:?}: {}", d.format, one_line(&e)),
                )
            })?;
            if d.prefix.is_empty() && v.as_object().is_err() {
                return Err(LoadError::file(
                    &d.name,
                    "a data file at the top of the policy directory must hold an object (its members become data.<member>)",
                ));
            }
            for key in d.prefix.iter().rev() {
                let mut o = RValue::new_object();
                o.as_object_mut()
                    .expect("new object")
                    .insert(RValue::from(key.as_str()), v);
                v = o;
            }
            engine.add_data(v).map_err(|e| {
                LoadError::file(
                    &d.name,
                    format!("cannot be merged into data: {}", one_line(&e)),
                )
            })?;
        }
        // Resolve every module once now, so that unknown functions, unsafe variables and
        // conflicting definitions are reported at load instead of at the first decision.
        engine
            .eval_query("true".into(), false)
            .map_err(|e| LoadError::from_regorus("policy", &e))?;
        let data = engine.get_data();
        let mut compiled = BTreeMap::new();
        let vm_unsafe = crate::vm_safety::vm_unsafe_reason(&s.modules);
        if let Some(why) = &vm_unsafe {
            tracing::debug!(reason = %why, "decisions by the interpreter: the policy has a construct the VM does not check for conflicts");
        }
        for q in [Query::Authz, Query::Delegation] {
            if vm_unsafe.is_some() {
                break;
            }
            let defined = rules
                .get(q.package())
                .is_some_and(|r| r.iter().any(|x| x == "decision"));
            if !defined {
                continue;
            }
            match compile(&mut engine, q.path()) {
                Ok(program) => {
                    compiled.insert(q.path(), Compiled::new(program, &data));
                }
                // Still decided, by the interpreter: slower, never wrong.
                Err(e) => tracing::warn!(query = q.path(), error = %e,
                    "decision rule not compiled for the VM; the interpreter will evaluate it"),
            }
        }
        Ok(Policy {
            engine,
            vm_unsafe,
            compiled,
            data,
            timer,
            version: s.version(),
            rules,
            tests,
            files: s.modules.len() + s.data.len(),
        })
    }

    /// The content hash of the policy files (`sha256:` + 16 hex digits).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many files the policy was built from.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Packages and their (non-test) rules.
    pub fn packages(&self) -> &BTreeMap<String, Vec<String>> {
        &self.rules
    }

    /// Whether `path` (`data.pkg.rule`) names a rule defined by the policy.
    pub fn has_rule(&self, path: &str) -> bool {
        path.rsplit_once('.').is_some_and(|(pkg, rule)| {
            self.rules
                .get(pkg)
                .is_some_and(|r| r.iter().any(|x| x == rule))
        })
    }

    /// Decides `query` for `input`. Never fails: an undefined result, a malformed decision, an
    /// evaluation error or the time limit all give a deny that says why.
    pub fn decide(&self, query: Query, input: &Value) -> Decision {
        self.decide_value(query, to_regorus(input))
    }

    /// [`Policy::decide`] with the input already converted.
    pub fn decide_value(&self, query: Query, input: RValue) -> Decision {
        // A compiled decision exists, so the rule does: the hot path skips the lookup.
        let result = match self.compiled.get(query.path()) {
            Some(c) => self.run_vm(query.path(), c, input),
            None if self.has_rule(query.path()) => self.eval_rule(query.path(), Some(input)),
            None => {
                return Decision::failed(
                    format!(
                        "no policy defines {}: add `package {}` with a `decision` rule",
                        query.path(),
                        &query.package()["data.".len()..]
                    ),
                    &self.version,
                )
            }
        };
        match result {
            Ok(v) => Decision::from_result(query, v.as_ref(), &self.version),
            Err(e) => Decision::failed(e.to_string(), &self.version),
        }
    }

    /// Evaluates a rule path with the chosen evaluator (the VM compiles it on the spot when it
    /// is not one of the precompiled decisions). For tests that hold both evaluators to the same
    /// answers.
    pub fn eval_with(
        &self,
        evaluator: Evaluator,
        path: &str,
        input: Option<Value>,
    ) -> Result<Option<Value>, EvalError> {
        check_reference(path)?;
        let input = input.as_ref().map(to_regorus);
        match evaluator {
            Evaluator::Interpreter => self.eval_rule(path, input),
            Evaluator::Vm => {
                if let Some(why) = &self.vm_unsafe {
                    return Err(EvalError::Failed {
                        query: path.into(),
                        message: format!("not run on the VM: {why}"),
                    });
                }
                let fresh;
                let c = match self.compiled.get(path) {
                    Some(c) => c,
                    None => {
                        let mut e = self.engine.clone();
                        let program = compile(&mut e, path).map_err(|err| EvalError::Failed {
                            query: path.into(),
                            message: format!("cannot compile for the VM: {err}"),
                        })?;
                        fresh = Compiled::new(program, &self.data);
                        &fresh
                    }
                };
                self.run_vm(path, c, input.unwrap_or(RValue::Undefined))
            }
        }
    }

    /// Why decisions of this policy are left to the interpreter, when they are.
    pub fn vm_unsafe_reason(&self) -> Option<&str> {
        self.vm_unsafe.as_deref()
    }

    /// Whether `path` is answered by the VM.
    pub fn evaluator_for(&self, path: &str) -> Evaluator {
        if self.compiled.contains_key(path) {
            Evaluator::Vm
        } else {
            Evaluator::Interpreter
        }
    }

    fn run_vm(&self, path: &str, c: &Compiled, input: RValue) -> Result<Option<Value>, EvalError> {
        let out = c
            .run(&self.data, self.timer, input)
            .map_err(|message| EvalError::Failed {
                query: path.into(),
                message,
            })?;
        to_json(path, &out)
    }

    /// Evaluates a reference (`data.pkg.rule`, `data.pkg`, `data`) for `input`; `Ok(None)` when
    /// undefined.
    pub fn eval(&self, query: &str, input: Option<Value>) -> Result<Option<Value>, EvalError> {
        check_reference(query)?;
        self.eval_ref(query, input)
    }

    /// Evaluates the document at a path of segments under `data`, as the OPA data API addresses
    /// it (`mandate/authz/decision`, `mandate_config/destructive_verbs/0`). Segments that are not
    /// identifiers become quoted (or numeric) index terms, so a path can never carry Rego.
    pub fn eval_path(
        &self,
        segments: &[&str],
        input: Option<Value>,
    ) -> Result<Option<Value>, EvalError> {
        let mut query = String::from("data");
        let mut used = 0;
        for seg in segments {
            let ident = seg
                .chars()
                .next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let part = if ident {
                format!(".{seg}")
            } else if !seg.is_empty() && seg.len() <= 18 && seg.bytes().all(|b| b.is_ascii_digit())
            {
                format!("[{seg}]")
            } else {
                let quoted = serde_json::to_string(seg).expect("strings serialise");
                format!("[{quoted}]")
            };
            // regorus refuses long queries: past this length the rest of the path is walked in
            // the document the prefix evaluates to (the same value, as a path only selects).
            if used > 0 && query.len() + part.len() > MAX_QUERY_LEN {
                break;
            }
            query.push_str(&part);
            used += 1;
        }
        if query == "data" {
            return Err(EvalError::BadQuery(
                "data (the whole document): query a package or a rule, e.g. data.mandate.authz.decision".into(),
            ));
        }
        let mut value = self.eval_ref(&query, input)?;
        for seg in &segments[used..] {
            value = value.and_then(|v| match v {
                Value::Object(mut o) => o.remove(*seg),
                Value::Array(mut a) => seg
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < a.len())
                    .map(|i| a.swap_remove(i)),
                _ => None,
            });
        }
        Ok(value)
    }

    fn eval_ref(&self, query: &str, input: Option<Value>) -> Result<Option<Value>, EvalError> {
        let input = input.as_ref().map(to_regorus);
        if self.has_rule(query) {
            return self.eval_rule(query, input);
        }
        let mut e = self.engine.clone();
        if let Some(i) = input {
            e.set_input(i);
        }
        let r = e
            .eval_query(query.to_string(), false)
            .map_err(|err| EvalError::Failed {
                query: query.into(),
                message: one_line(&err),
            })?;
        match r.result.first().and_then(|r| r.expressions.first()) {
            Some(x) => to_json(query, &x.value),
            None => Ok(None),
        }
    }

    fn eval_rule(&self, path: &str, input: Option<RValue>) -> Result<Option<Value>, EvalError> {
        let mut e = self.engine.clone();
        if let Some(i) = input {
            e.set_input(i);
        }
        let v = e
            .eval_rule(path.to_string())
            .map_err(|err| EvalError::Failed {
                query: path.into(),
                message: one_line(&err),
            })?;
        to_json(path, &v)
    }

    /// Rules of `package` that this input made produce something: a value other than `false` or
    /// an empty collection, and other than what the rule gives for an empty input (so constants
    /// and defaults are not listed).
    pub fn fired(&self, package: &str, input: &Value) -> Vec<(String, Value)> {
        let Some(rules) = self.rules.get(package) else {
            return vec![];
        };
        let empty = Value::Object(Default::default());
        rules
            .iter()
            .filter_map(|r| {
                let path = format!("{package}.{r}");
                let v = self.eval_rule(&path, Some(to_regorus(input))).ok()??;
                let quiet = match &v {
                    Value::Bool(false) | Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                let baseline = self
                    .eval_rule(&path, Some(RValue::from(empty.clone())))
                    .ok()
                    .flatten();
                (!quiet && baseline.as_ref() != Some(&v)).then_some((path, v))
            })
            .collect()
    }

    /// Runs every `test_` rule (opa test style: a test passes when it evaluates to `true`).
    pub fn run_tests(&self) -> Vec<TestResult> {
        let mut out = vec![];
        for (pkg, names) in &self.tests {
            for n in names {
                let name = format!("{pkg}.{n}");
                let start = Instant::now();
                let r = self.eval_rule(&name, None);
                let micros = start.elapsed().as_micros() as u64;
                let failure = match r {
                    Ok(Some(Value::Bool(true))) => None,
                    Ok(Some(other)) => Some(format!("evaluated to {other}")),
                    Ok(None) => Some("undefined (a condition in its body did not hold)".into()),
                    Err(e) => Some(e.to_string()),
                };
                out.push(TestResult {
                    passed: failure.is_none(),
                    name,
                    failure,
                    micros,
                });
            }
        }
        out
    }
}

/// Converts a JSON document into a regorus value directly (regorus's own `From` goes through
/// serde's deserializer and is several times slower on the decision path). A number that is not an
/// exact integer becomes a float, as in regorus's JSON reader.
pub fn to_regorus(v: &Value) -> RValue {
    match v {
        Value::Null => RValue::Null,
        Value::Bool(b) => RValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                RValue::from(i)
            } else if let Some(u) = n.as_u64() {
                RValue::from(u)
            } else {
                RValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => RValue::from(s.as_str()),
        Value::Array(a) => RValue::from(a.iter().map(to_regorus).collect::<Vec<_>>()),
        Value::Object(o) => RValue::from(
            o.iter()
                .map(|(k, v)| (RValue::from(k.as_str()), to_regorus(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Compiles one rule for the VM.
fn compile(engine: &mut Engine, path: &str) -> Result<Arc<Program>, String> {
    let compiled = engine
        .compile_with_entrypoint(&regorus::Rc::from(path))
        .map_err(|e| one_line(&e))?;
    Compiler::compile_from_policy(&compiled, &[path]).map_err(|e| one_line(&e))
}

fn to_json(query: &str, v: &RValue) -> Result<Option<Value>, EvalError> {
    if matches!(v, RValue::Undefined) {
        return Ok(None);
    }
    serde_json::to_value(v)
        .map(Some)
        .map_err(|e| EvalError::Failed {
            query: query.into(),
            message: format!("the result cannot be written as JSON: {e}"),
        })
}

/// Accepts `data` and dotted identifiers under it (what the OPA data API and our commands take).
pub fn check_reference(query: &str) -> Result<(), EvalError> {
    let mut parts = query.split('.');
    let ok = parts.next() == Some("data")
        && parts.all(|p| {
            let mut c = p.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(EvalError::BadQuery(query.into()))
    }
}

/// Names of the rules a module defines, read from its top-level statements. Functions (a name followed by `(`) are left out: they cannot be evaluated alone.
fn rule_names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for (_, line) in crate::scan::statements(text) {
        let Some(h) = crate::scan::head(line) else {
            continue;
        };
        // Functions cannot be evaluated alone; a ref head (`a.b.c := 1`) defines data.pkg.a.b.c,
        // whose prefix `a` is not a rule (it is queried as a document instead).
        if h.rest.starts_with(['(', '.', '[']) {
            continue;
        }
        if !out.iter().any(|x| x == h.name) {
            out.push(h.name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Outcome;
    use serde_json::json;

    const AUTHZ: &str = r#"package mandate.authz

default decision := {"allow": false, "reasons": ["nothing matched"]}

decision := {"allow": true, "reasons": ["read"]} if input.action.tool == "get"

helper(x) := x + 1

test_get_allowed if decision.allow with input as {"action": {"tool": "get"}}
test_fails if decision.allow
"#;

    fn policy() -> Policy {
        Policy::from_modules(&[("authz.rego", AUTHZ)], None).unwrap()
    }

    #[test]
    fn long_paths_within_the_data_api_bounds_are_undefined_not_errors() {
        let p = policy();
        let long = "a".repeat(128);
        for n in [1, 5, 10, 29] {
            let mut segs = vec!["mandate", "authz", "decision"];
            segs.extend(std::iter::repeat_n(long.as_str(), n));
            assert_eq!(p.eval_path(&segs, None).unwrap(), None, "{n} segments");
        }
        let quoted = "a b".repeat(40);
        let segs = ["mandate", "authz", quoted.as_str()];
        assert_eq!(p.eval_path(&segs, None).unwrap(), None);
    }

    #[test]
    fn decides_allow_and_deny_with_the_policy_reasons() {
        let p = policy();
        let d = p.decide(Query::Authz, &json!({"action": {"tool": "get"}}));
        assert_eq!(d.outcome(), Outcome::Allow);
        assert_eq!(d.policy_version(), p.version());
        let d = p.decide(Query::Authz, &json!({"action": {"tool": "put"}}));
        assert_eq!(d.outcome(), Outcome::Deny);
        assert_eq!(d.reasons(), ["nothing matched"]);
    }

    #[test]
    fn a_missing_decision_rule_denies_and_names_the_package_to_write() {
        let d = policy().decide(Query::Delegation, &json!({}));
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(d.error().unwrap().contains("package mandate.delegation"));
    }

    #[test]
    fn a_runtime_error_denies() {
        let p = Policy::from_modules(
            &[(
                "a.rego",
                "package mandate.authz\ndecision := {\"allow\": true} if { input.x }\ndecision := {\"allow\": false} if { input.y }\n",
            )],
            None,
        )
        .unwrap();
        let d = p.decide(Query::Authz, &json!({"x": true, "y": true}));
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(d.error().is_some());
    }

    #[test]
    fn a_policy_that_runs_too_long_is_stopped_and_denies() {
        let rego = "package mandate.authz\ndecision := {\"allow\": true} if {\n  count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000)]) > 0\n}\n";
        let mut s = Sources::default();
        s.modules.push(("slow.rego".into(), rego.into()));
        let p = Policy::build(&s, Duration::from_millis(20)).unwrap();
        let start = Instant::now();
        let d = p.decide(Query::Authz, &json!({}));
        assert_eq!(d.outcome(), Outcome::Deny, "{d:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e = Policy::from_modules(
            &[("bad.rego", "package x\n\nallow if {\n  input.x ==\n}\n")],
            None,
        )
        .unwrap_err();
        assert_eq!(e.file, "bad.rego");
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("bad.rego:"), "{e}");
    }

    #[test]
    fn unknown_functions_are_refused_at_load() {
        let e = Policy::from_modules(&[("f.rego", "package x\n\nallow if frobnicate(1)\n")], None)
            .unwrap_err();
        assert!(e.to_string().contains("f.rego:3"), "{e}");
    }

    #[test]
    fn data_is_reachable_and_packages_evaluate_whole() {
        let p = Policy::from_modules(
            &[("a.rego", "package a\nx := data.cfg.n + 1\n")],
            Some(&json!({"cfg": {"n": 41, "l": ["a", "b"]}})),
        )
        .unwrap();
        assert_eq!(p.eval("data.a.x", None).unwrap(), Some(json!(42)));
        assert_eq!(p.eval("data.a", None).unwrap(), Some(json!({"x": 42})));
        assert_eq!(p.eval("data.a.nope", None).unwrap(), None);
        assert!(matches!(
            p.eval("data.a[0]", None),
            Err(EvalError::BadQuery(_))
        ));
        assert_eq!(p.eval_path(&["a", "x"], None).unwrap(), Some(json!(42)));
        assert_eq!(p.eval_path(&["cfg", "n"], None).unwrap(), Some(json!(41)));
        assert_eq!(
            p.eval_path(&["cfg", "l", "1"], None).unwrap(),
            Some(json!("b"))
        );
        assert_eq!(p.eval_path(&["a-b", "x y"], None).unwrap(), None);
        assert_eq!(p.eval_path(&["q\"uote"], None).unwrap(), None);
        assert!(p.eval_path(&[], None).is_err());
    }

    #[test]
    fn tests_run_opa_style() {
        let r = policy().run_tests();
        assert_eq!(r.len(), 2);
        assert!(r
            .iter()
            .any(|t| t.name == "data.mandate.authz.test_get_allowed" && t.passed));
        assert!(r
            .iter()
            .any(|t| t.name == "data.mandate.authz.test_fails" && !t.passed));
    }

    #[test]
    fn fired_lists_rules_that_produced_something() {
        let f = policy().fired("data.mandate.authz", &json!({"action": {"tool": "get"}}));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "data.mandate.authz.decision");
    }

    #[test]
    fn a_recursive_policy_is_decided_by_the_interpreter_and_denies() {
        // Found by the `policy` fuzz target: on regorus's VM this overflowed the stack and
        // aborted the process.
        let p = Policy::from_modules(
            &[(
                "fuzz.rego",
                "package mandate.authz\ndefault decision := {\"allow\": false}\ndecision := decision if input.action.tool == \"x\"\n",
            )],
            None,
        )
        .unwrap();
        assert!(p
            .vm_unsafe_reason()
            .unwrap()
            .contains("mandate.authz.decision"));
        let d = p.decide(Query::Authz, &json!({"action": {"tool": "x"}}));
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(d.error().unwrap().contains("recursion"));
    }

    #[test]
    fn direct_conversion_matches_regorus_own() {
        for v in [
            json!(null),
            json!({"a": [1, -2, 3.5, 1e300, 18446744073709551615u64, "é", true, null, {}, []]}),
            json!({"nested": {"deep": {"x": [{"y": 0.1}]}}, "": ""}),
            json!(i64::MIN),
        ] {
            assert_eq!(to_regorus(&v), RValue::from(v.clone()), "{v}");
        }
    }

    #[test]
    fn rule_names_skip_functions_keywords_and_indented_lines() {
        assert_eq!(
            rule_names(AUTHZ),
            ["decision", "test_get_allowed", "test_fails"]
        );
    }
}
