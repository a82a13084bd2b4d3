//! Property tests of the event bound: whatever a request puts into an event (reasons, chains,
//! details of any shape and size), the bounded event is at most `MAX_EVENT_BYTES` of canonical
//! JSON, still parses back, and keeps what was small.

use mandate_audit::event::{canonical_json, Asserted, Event, MAX_EVENT_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        (1usize..20_000).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_bounded_event_fits_and_reads_back(
        reasons in prop::collection::vec("\\PC{0,800}", 0..40),
        chain in prop::collection::vec("[a-z:]{1,300}", 0..80),
        details in prop::collection::btree_map("[a-z]{1,10}", arb_value(), 0..12),
        asserted_chain in prop::collection::vec("[a-z:]{1,300}", 0..80),
        small in "[a-z]{0,20}",
    ) {
        let mut e = Event {
            id: "evt_1".into(),
            time: "2026-12-02T00:00:00.000Z".into(),
            kind: "policy.decision".into(),
            principal: "agent:pep".into(),
            chain,
            action: "pdp.evaluation".into(),
            result: "ok".into(),
            reasons,
            asserted: Some(Asserted { by: "agent:pep".into(), chain: asserted_chain, ..Asserted::default() }),
            ..Event::default()
        };
        e.details = details.into_iter().collect();
        e.details.insert("zz_small".into(), json!(small));
        let was_small = e.canonical().len() <= MAX_EVENT_BYTES;
        let before = e.clone();
        let cut = e.bound(b"key");
        let c = e.canonical();
        prop_assert!(c.len() <= MAX_EVENT_BYTES, "{} bytes", c.len());
        prop_assert_eq!(Event::parse(&c).unwrap(), e.clone());
        prop_assert_eq!(canonical_json(&serde_json::from_str(&c).unwrap()), c);
        if was_small && before.reasons.iter().all(|r| r.chars().count() <= 500)
            && before.reasons.len() <= 16 && before.chain.len() <= 32
            && before.asserted.as_ref().unwrap().chain.len() <= 32
            && before.chain.iter().chain(&before.asserted.as_ref().unwrap().chain).all(|p| p.len() <= 200)
        {
            prop_assert!(!cut);
            prop_assert_eq!(e, before);
        }
    }
}
