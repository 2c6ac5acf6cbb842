//! Golden body-hash vectors from the real SDK (tests/fixtures/wire/golden.json), and
//! property tests: header/body parsing and hashing never panic on arbitrary input.

use std::sync::Arc;

use neuron::net::{FieldType, PromptingSynapse, Synapse, SynapseSchema, float_repr};
use proptest::prelude::*;
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("../fixtures/wire/golden.json")).unwrap()
}

#[test]
fn prompting_body_hashes_match_sdk() {
    let schema = Arc::new(PromptingSynapse::schema());
    for v in golden()["prompting_messages"].as_array().unwrap() {
        let mut s = Synapse::new(schema.clone());
        s.set("messages", v["messages"].clone()).unwrap();
        assert_eq!(
            s.body_hash(),
            v["body_hash"].as_str().unwrap(),
            "{}",
            v["messages"]
        );
    }
}

#[test]
fn dummy_and_empty_hashes_match_sdk() {
    let g = golden();
    let d = &g["dummy"];
    let schema = Arc::new(
        SynapseSchema::new("Dummy")
            .field("prompt", FieldType::Str, true)
            .field("values", FieldType::List(Box::new(FieldType::Float)), true)
            .hash(&["prompt", "values"]),
    );
    let mut s = Synapse::new(schema);
    for (k, v) in d["fields"].as_object().unwrap() {
        s.set(k, v.clone()).unwrap();
    }
    assert_eq!(s.body_hash(), d["body_hash"].as_str().unwrap());
    // A JSON integer in a float field hashes as Python's float: 1 -> "1.0".
    s.set("values", serde_json::json!([1, 0.5])).unwrap();
    assert_eq!(s.body_hash(), d["body_hash"].as_str().unwrap());
    let empty = Synapse::new(Arc::new(neuron::net::base_schema()));
    assert_eq!(empty.body_hash(), g["empty"].as_str().unwrap());
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn body_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..256), json in any_json()) {
        let schema = Arc::new(PromptingSynapse::schema());
        let _ = Synapse::from_json(schema.clone(), &body);
        let wrapped = serde_json::json!({"roles": json.clone(), "messages": json.clone(), "dendrite": json});
        if let Ok(s) = Synapse::from_json(schema, wrapped.to_string().as_bytes()) {
            let _ = s.body_hash();
            let _ = s.to_headers();
        }
    }

    #[test]
    fn header_parsing_never_panics(pairs in prop::collection::vec(("(bt_header_(axon|dendrite|input_obj)_)?[a-z_]{0,12}", ".{0,40}"), 0..12)) {
        let schema = Arc::new(PromptingSynapse::schema());
        let _ = Synapse::from_headers(schema, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    #[test]
    fn any_field_hashes_without_panic(v in any_json()) {
        let schema = Arc::new(SynapseSchema::new("X").field("f", FieldType::Any, true).hash(&["f"]));
        let mut s = Synapse::new(schema);
        s.set("f", v).unwrap();
        prop_assert_eq!(s.body_hash().len(), 64);
    }

    #[test]
    fn float_repr_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = float_repr(f);
        prop_assert_eq!(text.parse::<f64>().unwrap(), f);
        prop_assert!(text.contains('.') || text.contains('e'));
    }
}
