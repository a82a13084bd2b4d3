//! The parsers of the policy crate take input from policy authors, enforcement points and
//! external PDPs. Whatever they are given, they answer (a value or an error), never panic, and a
//! decision document allows only when it literally says `allow: true` with no approval.

use mandate_policy::decision::{Decision, Outcome, Query};
use mandate_policy::{authzen, Policy};
use proptest::prelude::*;
use serde_json::{json, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_:/*\"\\\\]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("allow"),
            Just("approval"),
            Just("reasons"),
            Just("redact"),
            Just("approvers"),
            Just("quorum")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("allow".to_string()),
                    Just("approval".to_string()),
                    Just("reasons".to_string()),
                    Just("redact".to_string()),
                    Just("approvers".to_string()),
                    Just("quorum".to_string()),
                    Just("reason".to_string()),
                    Just("subject".to_string()),
                    Just("resource".to_string()),
                    Just("action".to_string()),
                    Just("context".to_string()),
                    Just("type".to_string()),
                    Just("id".to_string()),
                    Just("properties".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn a_decision_allows_only_when_it_says_allow_true_without_approval(v in any_json()) {
        let d = Decision::from_result(Query::Authz, Some(&v), "v");
        if d.outcome() == Outcome::Allow {
            prop_assert_eq!(&v["allow"], &Value::Bool(true));
            prop_assert!(v.get("approval").is_none_or(Value::is_null));
        }
    }

    #[test]
    fn authzen_requests_map_or_are_refused_with_a_reason(v in any_json()) {
        match authzen::input_from_request(&v) {
            Ok(input) => prop_assert!(input["principal"]["id"].is_string()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        let back = authzen::decision_from_response(&v, "x");
        if back.outcome() == Outcome::Allow {
            prop_assert_eq!(&v["decision"], &Value::Bool(true));
        }
    }

    #[test]
    fn any_text_loads_or_is_refused_with_file_and_reason(text in "(package p\n)?[a-z_ :=(){}\\[\\]\"|.,0-9\n]{0,80}") {
        if let Err(e) = Policy::from_modules(&[("p.rego", text.as_str())], None) {
            prop_assert!(!e.file.is_empty());
            prop_assert!(!e.message.is_empty());
        }
    }
}
