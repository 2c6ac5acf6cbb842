//! Golden body-hash vectors from the real SDK (tests/fixtures/wire/golden.json), and
//! property tests: header/body parsing and hashing never panic on arbitrary input, and
//! what parses round-trips.

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

/// A header value as a peer may send one: visible ASCII, numbers of every shape
/// (huge, tiny, signed), `NaN`/`inf`, base64-like text. Shared with `hostile::peers`.
pub(crate) fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~\t]{0,64}",
        "-?[0-9]{1,30}(\\.[0-9]{0,20})?(e-?[0-9]{1,4})?",
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-1".to_string()),
        "[A-Za-z0-9+/=]{0,80}",
    ]
}

/// A header name the synapse parser looks at, or any other.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("timeout".to_string()),
        Just("computed_body_hash".to_string()),
        Just("total_size".to_string()),
        "bt_header_(axon|dendrite)_(status_code|process_time|port|version|nonce|uuid|hotkey|ip|[a-z_]{0,12})",
        "bt_header_input_obj_(roles|messages|completion|[a-z_]{0,12})",
        "[a-z_]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes, or any JSON in the fields, parse or fail cleanly; what parses hashes to
    /// a 64-digit hex digest that survives a JSON round trip.
    #[test]
    fn body_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..256), json in any_json()) {
        let schema = Arc::new(PromptingSynapse::schema());
        let _ = Synapse::from_json(schema.clone(), &body);
        let wrapped = serde_json::json!({"roles": json.clone(), "messages": json.clone(), "dendrite": json});
        if let Ok(s) = Synapse::from_json(schema.clone(), wrapped.to_string().as_bytes()) {
            let hash = s.body_hash();
            prop_assert_eq!(hash.len(), 64);
            prop_assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
            let _ = s.to_headers();
            let again = serde_json::to_vec(&s.to_json()).unwrap();
            let back = Synapse::from_json(schema, &again).unwrap();
            prop_assert_eq!(back.body_hash(), hash);
        }
    }

    /// A valid header set with any headers replaced or added parses or fails cleanly;
    /// what parses has a finite timeout and re-serialises to headers that parse again
    /// with the same body hash.
    #[test]
    fn header_parsing_never_panics(edits in prop::collection::vec((header_name(), header_value()), 0..12)) {
        let schema = Arc::new(PromptingSynapse::schema());
        let mut headers = PromptingSynapse::default().to_synapse(schema.clone()).unwrap().to_headers();
        for (name, value) in edits {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        let parsed = Synapse::from_headers(schema.clone(), headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Ok(s) = parsed {
            prop_assert!(s.timeout.is_finite());
            let again = s.to_headers();
            let back = Synapse::from_headers(schema, again.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(back.unwrap().body_hash(), s.body_hash());
        }
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
