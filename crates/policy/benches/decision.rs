//! Decision latency of the shipped default pack: Mandate's whole decision path beside a raw
//! regorus evaluation of the same policy and input, interleaved in one run.
//!
//! - raw regorus: the same policy and data compiled with regorus for its VM (`RegoVM`, the
//!   fastest way regorus offers), one VM reused, `set_input` with an already converted input,
//!   `execute()`; regorus's interpreter (`Engine::eval_rule`) is printed beside it for reference;
//! - mandate: `LivePolicy::current().decide(Query::Authz, input)` from a `serde_json::Value`:
//!   snapshot, engine clone, input conversion, evaluation, strict decision parsing, decision id.
//!
//! Run: `cargo bench -p mandate-policy --bench decision` (prints p50/p99 per input and the ratio).
//! Per-call times are measured one call at a time (Instant around each call), which adds the
//! clock's own cost (~20-40 ns) to both sides equally.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use mandate_policy::{LivePolicy, Query, Sources};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value as RValue};

const ROUNDS: usize = 20_000;
const WARMUP: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn raw_engine(s: &Sources) -> Engine {
    let mut e = Engine::new();
    for (name, text) in &s.modules {
        e.add_policy(name.clone(), text.clone()).expect("policy");
    }
    for d in &s.data {
        e.add_data(RValue::from_json_str(&d.text).expect("data"))
            .expect("data merges");
    }
    e
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
    let sources = Sources::read_dir(&root).expect("default pack");
    let live = LivePolicy::load(&root, mandate_policy::policy::DEFAULT_TIMEOUT).expect("loads");
    let mut raw = raw_engine(&sources);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    println!(
        "decision latency, default pack {} ({} rounds each, interleaved)",
        sources.version(),
        ROUNDS
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "input", "raw p50", "raw p99", "ours p50", "ours p99", "ratio"
    );
    for name in [
        "policy-input-mcp-read.json",
        "policy-input-mcp-destructive.json",
        "policy-input-http-production-write.json",
    ] {
        let text = std::fs::read_to_string(examples.join(name)).expect("example");
        let input: serde_json::Value = serde_json::from_str(&text).expect("json");
        let prepared = RValue::from_json_str(&text).expect("regorus value");
        // Same answer on both sides, or the comparison means nothing.
        raw.set_input(prepared.clone());
        let r = raw
            .eval_rule(Query::Authz.path().to_string())
            .expect("raw eval");
        let d = live.current().decide(Query::Authz, &input);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["allow"],
            serde_json::Value::Bool(d.is_allow())
        );
        assert!(d.error().is_none(), "{d:?}");

        // Where the time goes (not part of the comparison).
        let mut conv = vec![];
        let mut tojson = vec![];
        let out = raw.eval_rule(Query::Authz.path().to_string()).unwrap();
        for _ in 0..2000 {
            let owned = input.clone();
            let t = Instant::now();
            black_box(mandate_policy::policy::to_regorus(&owned));
            conv.push(t.elapsed());
            let t = Instant::now();
            black_box(serde_json::to_value(&out).unwrap());
            tojson.push(t.elapsed());
        }
        conv.sort();
        tojson.sort();
        println!(
            "  input serde_json -> regorus p50 {:?}; result -> serde_json p50 {:?}",
            conv[1000], tojson[1000]
        );
        let compiled = raw
            .compile_with_entrypoint(&regorus::Rc::from(Query::Authz.path()))
            .unwrap();
        let program = Compiler::compile_from_policy(&compiled, &[Query::Authz.path()]).unwrap();
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_data(raw.get_data()).unwrap();
        vm.set_input(prepared.clone());
        assert_eq!(vm.execute().unwrap(), r, "VM and interpreter agree");
        let mut interp_t = Vec::with_capacity(ROUNDS / 10);
        for _ in 0..ROUNDS / 10 {
            let t = Instant::now();
            raw.set_input(prepared.clone());
            black_box(raw.eval_rule(Query::Authz.path().to_string()).unwrap());
            interp_t.push(t.elapsed());
        }
        interp_t.sort();
        let mut raw_t = Vec::with_capacity(ROUNDS);
        let mut ours_t = Vec::with_capacity(ROUNDS);
        for i in 0..(ROUNDS + WARMUP) {
            let t = Instant::now();
            vm.set_input(prepared.clone());
            black_box(vm.execute().unwrap());
            let a = t.elapsed();
            let t = Instant::now();
            black_box(live.current().decide(Query::Authz, &input));
            let b = t.elapsed();
            if i >= WARMUP {
                raw_t.push(a);
                ours_t.push(b);
            }
        }
        raw_t.sort();
        ours_t.sort();
        let (r50, r99) = (percentile(&raw_t, 0.5), percentile(&raw_t, 0.99));
        let (o50, o99) = (percentile(&ours_t, 0.5), percentile(&ours_t, 0.99));
        println!(
            "{:<34} {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>6.2}x   (interpreter p50 {:.1}µs)",
            name.trim_start_matches("policy-input-")
                .trim_end_matches(".json"),
            r50.as_secs_f64() * 1e6,
            r99.as_secs_f64() * 1e6,
            o50.as_secs_f64() * 1e6,
            o99.as_secs_f64() * 1e6,
            o50.as_secs_f64() / r50.as_secs_f64(),
            percentile(&interp_t, 0.5).as_secs_f64() * 1e6,
        );
    }
}
