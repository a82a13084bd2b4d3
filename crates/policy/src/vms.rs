//! The VMs that run a compiled decision rule, kept per thread.
//!
//! regorus values are reference counted (`Arc` with its `arc` feature), and a VM clones them as
//! it runs: every literal it loads, every rule it calls and every lookup into `data` bumps a count
//! shared by every VM of the policy. Two threads deciding at once then fight over the same cache
//! lines, and each decision took about twice as long as on one thread (BENCHMARKS.md). So each
//! thread gets its own idle VM, and the first [`MAX_UNSHARED_THREADS`] threads also their own copy
//! of the program's literals and rules and of `data`, which share no count with any other
//! thread's. A policy whose data holds more than [`MAX_UNSHARED_NODES`] values is not copied:
//! memory matters more than the contention then.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value as RValue;
use thread_local::ThreadLocal;

/// Threads that get their own copy of program and data (the async workers, and a few of the
/// blocking pool's); the others share the policy's.
pub(crate) const MAX_UNSHARED_THREADS: usize = 16;

/// Largest `data` (counted in values) copied per thread.
pub(crate) const MAX_UNSHARED_NODES: usize = 100_000;

/// Most idle VMs kept by one thread.
const MAX_IDLE_PER_THREAD: usize = 2;

/// A decision rule compiled for the VM, with each thread's idle VM.
pub(crate) struct Compiled {
    program: Arc<Program>,
    /// Whether threads may get their own copies (the data is small enough).
    unshare: bool,
    /// Threads given their own copies so far.
    unshared_threads: AtomicUsize,
    local: ThreadLocal<RefCell<Local>>,
}

/// One thread's VMs for one compiled rule.
struct Local {
    /// This thread's own program and data, when it has them.
    own: Option<(Arc<Program>, RValue)>,
    /// Idle VMs (one, unless a decision ran inside another on this thread).
    idle: Vec<RegoVM>,
}

impl Compiled {
    /// `data` is the policy's data document, only measured here.
    pub(crate) fn new(program: Arc<Program>, data: &RValue) -> Self {
        Compiled {
            program,
            unshare: nodes_within(data, MAX_UNSHARED_NODES),
            unshared_threads: AtomicUsize::new(0),
            local: ThreadLocal::new(),
        }
    }

    /// Runs the rule for `input` on this thread's idle VM (made on first use).
    pub(crate) fn run(
        &self,
        data: &RValue,
        timer: ExecutionTimerConfig,
        input: RValue,
    ) -> Result<RValue, String> {
        let local = self.local.get_or(|| {
            let own = (self.unshare
                && self.unshared_threads.fetch_add(1, Ordering::Relaxed) < MAX_UNSHARED_THREADS)
                .then(|| (Arc::new(unshared_program(&self.program)), unshared(data)));
            RefCell::new(Local { own, idle: vec![] })
        });
        // The borrow ends before the VM runs, so a decision inside a decision is still safe.
        let idle = local.borrow_mut().idle.pop();
        let mut vm = match idle {
            Some(vm) => vm,
            None => {
                let own = local.borrow().own.clone();
                let (program, data) = own.unwrap_or_else(|| (self.program.clone(), data.clone()));
                let mut vm = RegoVM::new();
                vm.load_program(program);
                vm.set_data(data).map_err(|e| crate::error::one_line(&e))?;
                // Same semantics as the interpreter (OPA's default).
                vm.set_strict_builtin_errors(false);
                vm.set_execution_timer_config(Some(timer));
                // The VM's own cap (25,000 instructions by default) would deny policies the
                // interpreter answers; the time limit is what bounds an evaluation, as for the
                // interpreter.
                vm.set_max_instructions(usize::MAX);
                vm
            }
        };
        vm.set_input(input);
        let out = vm.execute().map_err(|e| crate::error::one_line(&e));
        if out.is_ok() {
            // An idle VM keeps no caller's input alive; a VM whose run failed is dropped rather
            // than reused.
            vm.set_input(RValue::Undefined);
            let mut l = local.borrow_mut();
            if l.idle.len() < MAX_IDLE_PER_THREAD {
                l.idle.push(vm);
            }
        }
        out
    }
}

/// `program` with literals, rule tree and rule definitions that share no reference count with
/// it (the VM clones a rule's definitions every time it calls the rule).
fn unshared_program(program: &Program) -> Program {
    let mut p = program.clone();
    p.literals = p.literals.iter().map(unshared).collect();
    p.rule_tree = unshared(&p.rule_tree);
    for r in &mut p.rule_infos {
        r.definitions = regorus::Rc::new(r.definitions.as_ref().clone());
    }
    p
}

/// A deep copy of `v`: equal, and sharing no reference-counted node with it. Recursion is bounded
/// by the depth of policy data and literals (the JSON and Rego parsers' nesting limits).
pub(crate) fn unshared(v: &RValue) -> RValue {
    match v {
        RValue::String(s) => RValue::from(s.as_ref()),
        RValue::Array(a) => RValue::from(a.iter().map(unshared).collect::<Vec<_>>()),
        RValue::Set(s) => RValue::from(s.iter().map(unshared).collect::<BTreeSet<_>>()),
        RValue::Object(o) => RValue::from(
            o.iter()
                .map(|(k, v)| (unshared(k), unshared(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// Whether `v` holds at most `max` values (stops counting past it).
fn nodes_within(v: &RValue, max: usize) -> bool {
    fn count(v: &RValue, left: &mut usize) -> bool {
        if *left == 0 {
            return false;
        }
        *left -= 1;
        match v {
            RValue::Array(a) => a.iter().all(|x| count(x, left)),
            RValue::Set(s) => s.iter().all(|x| count(x, left)),
            RValue::Object(o) => o.iter().all(|(k, x)| count(k, left) && count(x, left)),
            _ => true,
        }
    }
    let mut left = max;
    count(v, &mut left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares_a_node(a: &RValue, b: &RValue) -> bool {
        match (a, b) {
            (RValue::String(x), RValue::String(y)) => Arc::ptr_eq(x, y),
            (RValue::Array(x), RValue::Array(y)) => {
                Arc::ptr_eq(x, y) || x.iter().zip(y.iter()).any(|(p, q)| shares_a_node(p, q))
            }
            (RValue::Set(x), RValue::Set(y)) => {
                Arc::ptr_eq(x, y) || x.iter().zip(y.iter()).any(|(p, q)| shares_a_node(p, q))
            }
            (RValue::Object(x), RValue::Object(y)) => {
                Arc::ptr_eq(x, y)
                    || x.iter()
                        .zip(y.iter())
                        .any(|((k1, v1), (k2, v2))| shares_a_node(k1, k2) || shares_a_node(v1, v2))
            }
            _ => false,
        }
    }

    fn sample() -> RValue {
        let v: RValue = RValue::from_json_str(
            r#"{"a": [1, "two", {"three": [true, null, 4.5]}], "b": {"c": "d"}, "e": []}"#,
        )
        .unwrap();
        let mut set = BTreeSet::new();
        set.insert(RValue::from("x"));
        set.insert(v.clone());
        RValue::from(vec![v, RValue::from(set)])
    }

    #[test]
    fn an_unshared_copy_is_equal_and_shares_no_node() {
        let v = sample();
        let copy = unshared(&v);
        assert_eq!(copy, v);
        assert!(!shares_a_node(&copy, &v));
        // The check itself sees sharing (a plain clone shares every node).
        assert!(shares_a_node(&v.clone(), &v));
    }

    #[test]
    fn decisions_on_more_threads_than_get_copies_agree_with_one_thread() {
        use crate::decision::Query;
        let rego = r#"package mandate.authz
decision := {"allow": true, "reasons": ["listed"]} if input.action.tool in data.allowed
default decision := {"allow": false, "reasons": ["not listed"]}
"#;
        let data = serde_json::json!({"allowed": ["get", "list"]});
        let p = crate::policy::Policy::from_modules(&[("a.rego", rego)], Some(&data)).unwrap();
        let input = |tool: &str| serde_json::json!({"action": {"tool": tool}});
        let expected: Vec<bool> = ["get", "put", "list"]
            .iter()
            .map(|t| p.decide(Query::Authz, &input(t)).is_allow())
            .collect();
        assert_eq!(expected, [true, false, true]);
        std::thread::scope(|s| {
            for _ in 0..MAX_UNSHARED_THREADS + 4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let got: Vec<bool> = ["get", "put", "list"]
                            .iter()
                            .map(|t| p.decide(Query::Authz, &input(t)).is_allow())
                            .collect();
                        assert_eq!(got, expected);
                    }
                });
            }
        });
    }

    #[test]
    fn data_is_measured_up_to_the_bound() {
        let v = sample();
        assert!(nodes_within(&v, 1_000));
        assert!(!nodes_within(&v, 3));
        assert!(nodes_within(&RValue::Null, 1));
        assert!(!nodes_within(&RValue::Null, 0));
    }
}
