//! The policy parsers: Rego modules (regorus's parser plus Mandate's load-time checks), decision
//! documents and AuthZEN requests.
//!
//! The first byte picks the parser. Besides "no panic": a decision document allows only when it
//! says `allow: true` without an approval, and a Rego module that loads answers a decision (a
//! value or a deny, never a panic, within the time limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_fuzz::text;
use mandate_policy::decision::{Decision, Outcome, Query};
use mandate_policy::{authzen, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = text(rest);
    let input = input.as_ref();
    match mode % 3 {
        0 => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(input) {
                let d = Decision::from_result(Query::Authz, Some(&v), "fuzz");
                if d.outcome() == Outcome::Allow {
                    assert_eq!(v["allow"], serde_json::Value::Bool(true));
                    assert!(v.get("approval").is_none_or(serde_json::Value::is_null));
                }
            }
        }
        1 => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(input) {
                if let Ok(i) = authzen::input_from_request(&v) {
                    // What is accepted is bounded, and its names are printable.
                    let chain = i["chain"].as_array().expect("a chain");
                    assert!(chain.len() <= authzen::MAX_CHAIN);
                    for k in ["scopes", "audience"] {
                        assert!(i[k].as_array().expect("a list").len() <= authzen::MAX_LIST);
                    }
                    for name in chain
                        .iter()
                        .chain([&i["principal"]["id"], &i["action"]["tool"], &i["action"]["server"]])
                        .filter_map(serde_json::Value::as_str)
                    {
                        assert!(name.len() <= 2 * authzen::MAX_ID + 1, "{name:?}");
                        assert!(!name.chars().any(char::is_control), "{name:?}");
                    }
                }
                let _ = authzen::decision_from_response(&v, "fuzz");
            }
        }
        _ => {
            let module = format!("package mandate.authz\n{input}");
            if let Ok(p) = Policy::from_modules(&[("fuzz.rego", module.as_str())], None) {
                let _ = p.decide(Query::Authz, serde_json::json!({"action": {"tool": "x"}}));
            }
        }
    }
});
